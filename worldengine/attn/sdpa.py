"""SDPA-based candidates for the engine's ring attention (reference, fp32, masked-slot skipping, GQA layouts).

Every candidate takes the engine's exact call, unbatched, with the GQA query heads already folded:
  q        [Hk, G*T, dh]  compute dtype (bf16 or fp32); row g*T + t is query head hk*G + g, token t
  k, v     [Hk, N, dh]    the layer's ring buffer kv[0], kv[1] (N = (buckets+1)*T, tail last), same dtype
  key_mask [N] bool       True where the key row is visible (written ring slots and the tail)
and returns [Hk, G*T, dh] in q's dtype, scaled by 1/sqrt(dh) as `F.scaled_dot_product_attention`.
The tail is always visible, so no query row ever sees only masked keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def sdpa_reference(q, k, v, key_mask):
    """Today's call in `layers.SelfAttention.forward`: one SDPA over all N keys with the bool mask."""
    return F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=key_mask.view(1, 1, 1, -1))[0]


def sdpa_fp32(q, k, v, key_mask):
    """The reference computed in fp32 (inputs upcast per call, output cast back to q's dtype): on CPUs
    without AMX the bf16 kernel has no matrix-unit advantage and converts internally anyway."""
    y = F.scaled_dot_product_attention(q.float()[None], k.float()[None], v.float()[None],
                                       attn_mask=key_mask.view(1, 1, 1, -1))[0]
    return y.to(q.dtype)


def visible_runs(key_mask: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, stop)) index ranges of the contiguous True runs of a [N] bool mask (host-side: a sync)."""
    flags = torch.cat([key_mask.new_zeros(1), key_mask.cpu(), key_mask.new_zeros(1)]).to(torch.int8)
    edges = torch.nonzero(flags[1:] - flags[:-1]).flatten().tolist()
    return list(zip(edges[0::2], edges[1::2]))


def sdpa_runs(q, k, v, key_mask):
    """Masked slots kept out of the work without copying: one mask-free CPU flash call per contiguous
    visible run of keys (views into the ring), merged exactly by their log-sum-exp (fp32). Shapes
    change with the mask, so this is for eager execution (the run list is read on the host)."""
    runs = visible_runs(key_mask)
    if len(runs) == 1 and runs[0] == (0, k.shape[1]):
        return F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
    outs, lses = [], []
    for start, stop in runs:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q[None], k[None, :, start:stop], v[None, :, start:stop], 0.0, False)
        outs.append(out[0].float())
        lses.append(lse[0])                        # [Hk, G*T] fp32
    lse = torch.stack(lses)                         # [R, Hk, G*T]
    weights = torch.softmax(lse, dim=0)[..., None]  # each run's share of the total softmax mass
    return (torch.stack(outs) * weights).sum(0).to(q.dtype)


def gather_count(key_mask_len: int, tokens: int, dilation: int) -> int:
    """Static key count for `sdpa_gather`: local rings (dilation 1) write every frame, so one slot is
    always hidden; global rings have frames where all slots and the tail are visible."""
    return key_mask_len - tokens if dilation == 1 else key_mask_len


def sdpa_gather(q, k, v, key_mask, keys: int):
    """Visible keys first, gathered into `keys` rows (a static shape: compile-friendly; rows past the
    visible count stay masked), then one SDPA. Saves work only where `keys` < N."""
    order = torch.argsort((~key_mask).to(torch.int8), stable=True)[:keys]
    return F.scaled_dot_product_attention(q[None], k.index_select(1, order)[None], v.index_select(1, order)[None],
                                          attn_mask=key_mask[order].view(1, 1, 1, -1))[0]


def sdpa_unfolded(q, k, v, key_mask, group: int):
    """GQA without folding: [Hk, G, T, dh] queries against K/V broadcast over the G query heads by a
    stride-0 expand (no copy), so the kernel blocks over Hk*G heads of T queries instead of Hk of G*T."""
    hk, n, dh = k.shape
    grouped = q.view(hk, group, -1, dh)
    y = F.scaled_dot_product_attention(grouped, k[:, None].expand(hk, group, n, dh),
                                       v[:, None].expand(hk, group, n, dh), attn_mask=key_mask.view(1, 1, 1, -1))
    return y.reshape(q.shape)


def sdpa_per_kv_head(q, k, v, key_mask):
    """One SDPA per KV head (G*T queries each): all threads on one head's keys at a time, so that
    head's K/V stay in cache while its query blocks are processed."""
    mask = key_mask.view(1, 1, 1, -1)
    return torch.cat([F.scaled_dot_product_attention(q[None, h:h + 1], k[None, h:h + 1], v[None, h:h + 1],
                                                     attn_mask=mask)[0] for h in range(k.shape[0])])
