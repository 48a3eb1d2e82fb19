"""Measure this machine's own matmul roofline: the best throughput torch reaches at given GEMM sizes.

The benchmark divides a model's useful FLOPs per second by these figures, so "fraction of roofline"
says how close the engine gets to what plain ``torch.mm`` / ``torch._int_mm`` (or, for int8 on CPU,
oneDNN on a prepacked weight when that is faster) achieve on the same machine, threads and sizes.
Each measurement takes the best of several short timed batches (a roofline is a peak, and background
load only ever slows a batch down).
"""
from __future__ import annotations

import time

import torch

from worldengine.quant import onednn

# Result key of each GEMM kind (integer kinds count operations, float kinds FLOPs).
ROOFLINE_KEYS = {"fp32": "fp32_gflops", "bf16": "bf16_gflops", "int8": "int8_gops", "fp8": "fp8_gflops"}

# (M, K, N) of the large matmuls in one cpu-small frame: 128 tokens, d_model 512, mlp 2048.
DEFAULT_SIZES = ((128, 512, 1024), (128, 512, 512), (128, 512, 2048), (128, 2048, 512))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds_per_call(fn, device: torch.device, budget_s: float, batches: int = 5) -> tuple[float, float]:
    """(best wall seconds, best process CPU seconds) per call over ``batches`` timed batches.

    CPU time counts every thread of the process; on a machine shared with other work it stays close
    to the work itself while wall time also holds the waiting.
    """
    fn()  # warm-up: kernel selection, allocator, oneDNN primitive cache
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    one = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(budget_s / batches / one))
    best_wall = best_cpu = float("inf")
    for _ in range(batches):
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(calls):
            fn()
        _sync(device)
        best_wall = min(best_wall, (time.perf_counter() - start) / calls)
        best_cpu = min(best_cpu, max(time.process_time() - cpu_start, 1e-9) / calls)
    return best_wall, best_cpu


def _operands(kind: str, m: int, k: int, n: int, device: torch.device):
    """Row-major a [M, K] and a transposed view b [K, N] of a row-major [N, K] weight (nn.Linear layout)."""
    gen = torch.Generator().manual_seed(0)
    if kind == "int8":
        a = torch.randint(-127, 128, (m, k), dtype=torch.int8, generator=gen)
        w = torch.randint(-127, 128, (n, k), dtype=torch.int8, generator=gen)
    elif kind == "fp8":
        a = torch.randn(m, k, generator=gen).to(torch.float8_e4m3fn)
        w = torch.randn(n, k, generator=gen).to(torch.float8_e4m3fn)
    else:
        dtype = torch.bfloat16 if kind == "bf16" else torch.float32
        a = torch.randn(m, k, generator=gen).to(dtype)
        w = torch.randn(n, k, generator=gen).to(dtype)
    return a.to(device), w.to(device).t()


def _gemm_calls(kind: str, a: torch.Tensor, b: torch.Tensor) -> list:
    """The kernels torch offers for one GEMM kind: int8 has `_int_mm` and, on CPU, oneDNN on a
    prepacked weight (what `Int8Linear` uses there); fp8 is rowwise-scaled `_scaled_mm` to bf16."""
    m, n = a.shape[0], b.shape[1]
    if kind == "int8":
        calls = [lambda: torch._int_mm(a, b)]
        if a.device.type == "cpu" and onednn.available():
            packed = onednn.pack_weight(b.t(), m)
            scale, zero = torch.ones(n), torch.zeros(n, dtype=torch.int64)
            calls.append(lambda: onednn.int8_mm_packed(a, packed, scale, zero))
        return calls
    if kind == "fp8":
        scale_a = torch.ones(m, 1, device=a.device)
        scale_b = torch.ones(1, n, device=a.device)
        return [lambda: torch._scaled_mm(a, b, scale_a=scale_a, scale_b=scale_b, out_dtype=torch.bfloat16)]
    return [lambda: torch.mm(a, b)]


def measure_gemm(kind: str, m: int, k: int, n: int, device="cpu", budget_s: float = 0.05) -> tuple[float, float]:
    """Throughput of one GEMM in G(FL)OP/s (2*M*K*N per call) per wall second and per process CPU
    second, from the fastest kernel torch offers for it; kind: "fp32", "bf16", "int8" or "fp8"."""
    device = torch.device(device)
    a, b = _operands(kind, m, k, n, device)
    with torch.inference_mode():
        wall, cpu = min(_best_seconds_per_call(fn, device, budget_s) for fn in _gemm_calls(kind, a, b))
    return 2.0 * m * k * n / wall / 1e9, 2.0 * m * k * n / cpu / 1e9


def measure_roofline(sizes=DEFAULT_SIZES, device="cpu", kinds=("fp32", "bf16", "int8"),
                     budget_s: float = 0.05) -> dict:
    """Roofline of this machine at ``sizes`` [(M, K, N), ...].

    Returns {"device", "threads", "sizes", "per_size": {kind: [G/s per size]},
    "fp32_gflops", "bf16_gflops", "int8_gops", "per_cpu_second": {same three keys}} where the
    headline figures are the FLOP-weighted harmonic mean over sizes (time to run one of each at the
    measured speeds), i.e. what a model made of exactly these matmuls could reach; the
    "per_cpu_second" ones divide by process CPU time instead of wall time.
    """
    device = torch.device(device)
    result = {"device": str(device), "threads": torch.get_num_threads(),
              "sizes": [list(s) for s in sizes], "per_size": {}, "per_cpu_second": {}}
    flops = [2.0 * m * k * n for m, k, n in sizes]
    for kind in kinds:
        speeds = [measure_gemm(kind, m, k, n, device, budget_s) for m, k, n in sizes]
        key = ROOFLINE_KEYS[kind]
        result["per_size"][kind] = [round(wall, 1) for wall, _ in speeds]
        result[key] = _harmonic(flops, [wall for wall, _ in speeds])
        result["per_cpu_second"][key] = _harmonic(flops, [cpu for _, cpu in speeds])
    return result


def _harmonic(flops: list[float], speeds: list[float]) -> float:
    total_time = sum(f / (s * 1e9) for f, s in zip(flops, speeds))
    return round(sum(flops) / total_time / 1e9, 1)


def gemm_sizes_for(tokens: int, d_model: int, hidden: int, qkv_out: int) -> tuple:
    """The (M, K, N) of one transformer block's big matmuls for ``tokens`` rows."""
    return ((tokens, d_model, qkv_out), (tokens, d_model, d_model),
            (tokens, d_model, hidden), (tokens, hidden, d_model))


def pass_flops(config, prompt_tokens: int = 512) -> float:
    """Useful FLOPs of one model pass over one frame (2 per multiply-add), at a full KV cache.

    Counts the patchify/unpatchify, every block Linear, attention over the keys a query can actually
    see (a local layer: `local_window` frames; a global layer: its ring buckets, plus the current frame
    on the (d-1)/d of frames that are not write steps), and W1 cross-attention over `prompt_tokens`.
    Sigma/controller conditioning is per frame and negligible; masked-out rows are not useful work.
    """
    t, d, dh = config.tokens_per_frame, config.d_model, config.d_head
    h, hk = config.n_heads, config.n_kv_heads
    c, (ph, pw) = config.channels, config.patch
    macs = 2 * t * d * c * ph * pw                                    # patchify + unpatchify
    for i in range(config.n_layers):
        macs += t * d * (h + 2 * hk) * dh + t * d * d                 # qkv, out_proj
        if config.moe:
            macs += config.moe_top_k * 2 * t * d * int(d * config.mlp_ratio / config.moe_top_k)
        else:
            macs += 2 * t * d * config.mlp_hidden
        if config.gated_attn:
            macs += t * h * h
        if config.has_ctrl_fusion(i):
            macs += 2 * t * d * d + d * d
        if config.has_cross_attn(i):
            p = config.prompt_embedding_dim
            macs += 2 * t * d * p + 2 * prompt_tokens * p * p + 2 * t * prompt_tokens * p
        dilation, buckets = config.ring(i)
        frames_seen = buckets + (dilation - 1) / dilation
        macs += 2 * t * (frames_seen * t) * h * dh                     # q·kᵀ and p·v
    return 2.0 * macs


def frame_flops(config) -> float:
    """Useful FLOPs of one latent frame: one pass per scheduler sigma (Euler steps + the cache pass)."""
    return len(config.scheduler_sigmas) * pass_flops(config)
