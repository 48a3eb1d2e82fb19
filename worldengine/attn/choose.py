"""The ring self-attention kernel, chosen at load by measuring the candidates at the model's own shapes.

For each ring kind (dilation, buckets) of the model, the candidates of `worldengine.attn.candidates` run
on the folded GQA queries [Hk, G*T, dh] against the ring's keys [Hk, (buckets+1)*T, dh] in the compute
dtype, with the key mask a steady-state query sees. A candidate competes only when its per-call error
against the reference SDPA is within `error_bound`; the fastest by best-of-N time wins (via
`worldengine.quant.select.fastest`: one thread, cached per process and shape class), and the reference
is kept unless a candidate beats it by `MARGIN` (never slower than plain SDPA, and no change on noise).

The choice is stored on each `SelfAttention` as `attn_kernel` (None = the reference call inline, so the
float path stays bit-identical); `choices()` lists this process's choices for `bench`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from worldengine.attn import REFERENCE, candidates, error_bound
from worldengine.kv_cache import RingKVCache
from worldengine.quant import select

# A candidate must take at most this fraction of the reference's time to replace it: timing noise on a
# shared 2-core machine is a few percent, and a switch that gains less is not worth the numerics change.
MARGIN = 0.95
_choices: dict[str, dict] = {}


def _steady_masks(config) -> dict[tuple[int, int], torch.Tensor]:
    """(dilation, buckets) → the [N] bool key mask of a query at a steady-state frame (every ring slot
    written; on a write frame the slot about to be overwritten hidden), as `RingKVCache.prepare_masks`."""
    frame, tokens = 2 * config.global_window + 3, config.tokens_per_frame
    masks = {}
    for kind in sorted({config.ring(i) for i in range(config.n_layers)}):
        slot, is_write = RingKVCache.slot_of(frame, *kind)
        visible = torch.ones(kind[1] + 1, dtype=torch.bool)
        visible[slot] = not is_write
        masks[kind] = visible.repeat_interleave(tokens)
    return masks


def _inputs(config, n_keys: int, dtype: torch.dtype, seed: int = 0):
    """Folded q [Hk, G*T, dh] and ring k/v [Hk, N, dh] in `dtype`, q/k RMS-normed (as after the QK norm)."""
    gen = torch.Generator().manual_seed(seed)
    hk, dh, group = config.n_kv_heads, config.d_head, config.n_heads // config.n_kv_heads

    def normed(*shape):
        return F.rms_norm(torch.randn(*shape, generator=gen), (dh,)).to(dtype)

    return (normed(hk, group * config.tokens_per_frame, dh), normed(hk, n_keys, dh),
            torch.randn(hk, n_keys, dh, generator=gen).to(dtype))


def _allowed(name: str, dtype: torch.dtype, int8: bool) -> bool:
    if name.startswith("int8"):
        return int8
    if name == "sdpa-fp32":
        return dtype != torch.float32   # the same call as the reference in fp32
    return name != "sdpa-runs"          # host-side run list: a sync per call and no static shapes (compile)


def choose_kind(config, kind: tuple[int, int], mask: torch.Tensor, dtype: torch.dtype, int8: bool) -> dict:
    """Measure one ring kind; returns {"choice", "times_ms", "errors"} (choice REFERENCE unless beaten)."""
    tokens, group = config.tokens_per_frame, config.n_heads // config.n_kv_heads
    found = {name: fn for name, fn in candidates(tokens, group, kind[0], mask.numel()).items()
             if name == REFERENCE or _allowed(name, dtype, int8)}
    q, k, v = _inputs(config, mask.numel(), dtype)
    with torch.inference_mode():
        ref = found[REFERENCE](q, k, v, mask).double()
        errors = {name: ((fn(q, k, v, mask).double() - ref).norm() / ref.norm()).item() for name, fn in found.items()}
    accurate = [name for name in found if errors[name] <= error_bound(name)]
    key = ("attention", kind[0], kind[1], *q.shape, mask.numel(), str(dtype).removeprefix("torch."))
    best = select.fastest(key, lambda: {name: (lambda fn=fn: fn(q, k, v, mask)) for name, fn in found.items()},
                          among=accurate)
    times = select.times_ms(key)
    if times[best] > MARGIN * times[REFERENCE]:
        best = REFERENCE
    return {"choice": best, "times_ms": times, "errors": {n: float(f"{e:.3g}") for n, e in errors.items()}}


def choose_attention(engine, int8: bool) -> dict[str, str]:
    """Measure and set every self-attention layer's kernel of a CPU `engine` (compute dtype as loaded);
    int8: whether the INT8 attention candidates may compete (only under quant int8). Returns
    {"dilation x buckets": choice}. A CUDA engine keeps the reference (these candidates are CPU ones)."""
    config, dtype = engine.config, engine.dtype
    if torch.device(engine.device).type != "cpu":
        return {}
    picked = {}
    for kind, mask in _steady_masks(config).items():
        result = choose_kind(config, kind, mask, dtype, int8)
        label = f"{kind[0]}x{kind[1]}"
        _choices[f"{label} {dtype}"] = result
        picked[label] = result["choice"]
    apply_attention(engine, picked)
    return picked


def apply_attention(engine, picked: dict[str, str]) -> None:
    """Set every self-attention layer's kernel from {"dilation x buckets": candidate name} (what
    `choose_attention` returned; e.g. the compile child rebuilding its parent's engine)."""
    config = engine.config
    group = config.n_heads // config.n_kv_heads
    for kind, mask in _steady_masks(config).items():
        name = picked.get(f"{kind[0]}x{kind[1]}", REFERENCE)
        fn = None if name == REFERENCE else candidates(config.tokens_per_frame, group, kind[0], mask.numel())[name]
        for i, block in enumerate(engine.model.blocks):
            if config.ring(i) == kind:
                block.attn.attn_kernel = fn


def choices() -> dict[str, dict]:
    """This process's attention choices: "dilation x buckets dtype" → {"choice", "times_ms", "errors"}."""
    return {key: dict(value) for key, value in _choices.items()}
