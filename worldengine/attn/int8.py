"""INT8 attention over an INT8 KV representation (SageAttention-style smoothing), on `torch._int_mm`.

Representation (`Int8KV`), made once per frame block when that block is written to the ring:
  k_q     int8 [Hk, N, dh]   keys minus their block's per-channel mean, quantized per key row (token)
  k_scale fp32 [Hk, N]       per-key scale: k - mean ≈ k_q * k_scale
  k_mean  fp32 [Hk, N/B, dh] the per-channel mean of each block of B = tokens-per-frame keys
  v_q     int8 [Hk, N, dh]   values quantized per key row; v ≈ v_q * v_scale
  v_scale fp32 [Hk, N]
Why the mean is kept: the smoothing makes K's int8 grid fine (keys share a large common component),
and q·k = q·(k - mean_b) + q·mean_b restores the exact logits with one small [G*T, N/B] product.
A per-channel scale on V could not be factored out of the sum over keys written at different frames,
so V is scaled per key row and that scale is folded into the probabilities before they are quantized.

`int8_attention` computes, per KV head: S = _int_mm(q_q, k_qᵀ) (int32) → fp32 logits (+ mean term,
mask) → fp32 softmax → P·v_scale quantized per query row to 8 bits → _int_mm(P_q, v_q) → fp32 → q.dtype.
P is quantized on the full unsigned grid 0..255 and shifted to int8 by -128; the shift is undone exactly
with the column sums of v_q (integer arithmetic, no overflow: 255*127*N < 2^31 for N < 66000).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from worldengine.errors import WaypointError


@dataclass
class Int8KV:
    k_q: torch.Tensor
    k_scale: torch.Tensor
    k_mean: torch.Tensor
    v_q: torch.Tensor
    v_scale: torch.Tensor
    v_colsum: torch.Tensor   # int32 [Hk, dh]: sum of v_q over all N rows (undoes P's -128 shift)

    @property
    def block(self) -> int:
        return self.k_q.shape[1] // self.k_mean.shape[1]


def _per_row(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per last-dim row: (int8 values, fp32 scale without the last dim)."""
    scale = x.abs().amax(-1).clamp_min(1e-12) / 127.0
    return torch.round(x / scale[..., None]).clamp_(-127, 127).to(torch.int8), scale


def quantize_kv(k: torch.Tensor, v: torch.Tensor, block: int) -> Int8KV:
    """k, v [Hk, N, dh] (any float dtype) → Int8KV, smoothing each block of `block` rows by its own mean
    (a block is one frame, i.e. one ring slot: quantizing a whole ring equals quantizing each slot when
    it is written)."""
    if k.shape != v.shape or k.dim() != 3 or k.shape[1] % block:
        raise WaypointError(f"int8 KV: k {list(k.shape)} and v {list(v.shape)} must be equal [Hk, N, dh] "
                            f"with N a multiple of the block size {block}")
    hk, n, dh = k.shape
    blocks = k.float().view(hk, n // block, block, dh)
    mean = blocks.mean(2)
    k_q, k_scale = _per_row((blocks - mean[:, :, None]).view(hk, n, dh))
    v_q, v_scale = _per_row(v.float())
    return Int8KV(k_q, k_scale, mean, v_q, v_scale, v_q.sum(1, dtype=torch.int32))


def _head(q_q, q_scale, q_f, kv: Int8KV, h: int, visible, scale: float) -> torch.Tensor:
    """One KV head: [M, dh] int8 queries → [M, dh] fp32 attention output."""
    m, n = q_q.shape[0], kv.k_q.shape[1]
    logits = torch._int_mm(q_q, kv.k_q[h].t()).float()
    logits.mul_(q_scale[:, None] * scale).mul_(kv.k_scale[h][None])
    mean_term = (q_f @ kv.k_mean[h].t()) * scale                       # [M, N/B]
    logits.view(m, -1, kv.block).add_(mean_term[:, :, None])
    logits.masked_fill_(~visible, float("-inf"))
    logits.sub_(logits.amax(-1, keepdim=True)).exp_()                  # unnormalised P in [0, 1]
    total = logits.sum(-1)
    logits.mul_(kv.v_scale[h][None])
    p_scale = logits.amax(-1).clamp_min(1e-30) / 255.0
    p_q = torch.round(logits / p_scale[:, None]).sub_(128).to(torch.int8)
    acc = torch._int_mm(p_q, kv.v_q[h]) + 128 * kv.v_colsum[h][None]
    return acc.float() * (p_scale / total)[:, None]


def int8_attention(q: torch.Tensor, kv: Int8KV, key_mask: torch.Tensor) -> torch.Tensor:
    """q [Hk, G*T, dh] (folded GQA, any float dtype), kv an Int8KV over N keys, key_mask [N] bool →
    [Hk, G*T, dh] in q's dtype; softmax scale 1/sqrt(dh) as SDPA. Loops over KV heads so each head's
    [G*T, N] fp32 logits stay cache-sized."""
    if q.dim() != 3 or q.shape[0] != kv.k_q.shape[0] or q.shape[2] != kv.k_q.shape[2]:
        raise WaypointError(f"int8 attention: q {list(q.shape)} does not match keys {list(kv.k_q.shape)}")
    q_f = q.float()
    q_q, q_scale = _per_row(q_f)
    scale = q.shape[-1] ** -0.5
    out = [_head(q_q[h], q_scale[h], q_f[h], kv, h, key_mask, scale) for h in range(q.shape[0])]
    return torch.stack(out).to(q.dtype)


def int8_attention_dense(q, k, v, key_mask, block: int):
    """The candidate in the common signature (see `worldengine.attn.sdpa`): quantizes the dense ring
    here, per block, which gives the same numbers as quantizing each slot once at write time; the
    timing of interest is `int8_attention` alone (the bench times both)."""
    return int8_attention(q, quantize_kv(k, v, block), key_mask)
