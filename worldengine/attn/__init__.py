"""Candidate kernels for the ring self-attention, chosen by measurement (`python -m worldengine.cli.bench_attention`).

Chosen per ring kind at load by `worldengine.attn.choose` (`SelfAttention.attn_kernel`). Every
candidate has the signature documented in `worldengine.attn.sdpa` (folded GQA queries [Hk, G*T, dh],
ring K/V [Hk, N, dh], key mask [N] bool → [Hk, G*T, dh] in q's dtype).
"""
from __future__ import annotations

from functools import partial

from worldengine.attn.int8 import Int8KV, int8_attention, int8_attention_dense, quantize_kv
from worldengine.attn.sdpa import (gather_count, sdpa_fp32, sdpa_gather, sdpa_per_kv_head, sdpa_reference,
                                   sdpa_runs, sdpa_unfolded)

REFERENCE = "sdpa-bf16"

# Per-call relative error (Frobenius, vs the reference) a candidate may have and still be chosen. SDPA
# variants differ from the reference only by bf16 rounding of inputs/outputs (~2^-8); the int8 path adds
# 8-bit Q/K/P/V rounding. Rollout accuracy (<= 1 % per frame over 100 frames) is tested separately.
SDPA_ERROR_BOUND = 1e-2
INT8_ERROR_BOUND = 3e-2


def error_bound(name: str) -> float:
    return INT8_ERROR_BOUND if name.startswith("int8") else SDPA_ERROR_BOUND

__all__ = ["Int8KV", "REFERENCE", "candidates", "error_bound", "int8_attention", "quantize_kv"]


def candidates(tokens: int, group: int, dilation: int, n_keys: int) -> dict:
    """name → candidate for one layer kind: `tokens` per frame (the KV block), `group` query heads per
    KV head, the ring's `dilation` (1 = local), `n_keys` = (buckets+1)*tokens."""
    return {
        REFERENCE: sdpa_reference,
        "sdpa-fp32": sdpa_fp32,
        "sdpa-runs": sdpa_runs,
        "sdpa-gather": partial(sdpa_gather, keys=gather_count(n_keys, tokens, dilation)),
        "sdpa-unfolded": partial(sdpa_unfolded, group=group),
        "sdpa-per-kv-head": sdpa_per_kv_head,
        "int8-quantize+attn": partial(int8_attention_dense, block=tokens),
    }
