"""Time every attention candidate (`worldengine.attn`) at a preset's real ring-attention shapes.

    python -m worldengine.cli.bench_attention --preset cpu-small [--frame F] [--rounds R] [--threads N]

For each ring kind of the preset (local: dilation 1; global: dilation > 1) the key mask is the one the
engine's `RingKVCache` builds for a query at frame F (default: a steady-state frame). Inputs are random,
RMS-normed like the engine's q/k, in bfloat16. Candidates run interleaved, R rounds; the table gives the
minimum and median ms per call (the minimum is the least disturbed by other load on the machine),
GFLOP/s of the reference call's nominal work (4·Hk·G·T·N·dh), and the relative error against the reference
(bf16 SDPA) and against a float64 computation. The choice per kind is the fastest (by minimum) whose
error vs the reference is within its bound, and never one slower than the reference.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F

from worldengine.attn import REFERENCE, candidates, error_bound, int8_attention, quantize_kv
from worldengine.cli.bench import machine_info
from worldengine.kv_cache import RingKVCache
from worldengine.synthetic.presets import PRESETS, preset_config


def ring_masks(config, frame: int) -> dict[tuple[int, int], torch.Tensor]:
    """(dilation, buckets) → the [N] bool key mask a query at `frame` sees, as the engine builds it."""
    cache = RingKVCache(config, torch.bfloat16, "cpu")
    for f in range(frame):
        cache.prepare_masks(f)
        cache.commit(f)
    cache.prepare_masks(frame)
    return {kind: mask.clone() for kind, mask in cache.mask_buffers.items()}


def attention_inputs(config, n_keys: int, seed: int):
    """Folded q [Hk, G*T, dh], k/v [Hk, N, dh] in bf16: q/k RMS-normed rows (as after the engine's QK norm)."""
    gen = torch.Generator().manual_seed(seed)
    hk, dh = config.n_kv_heads, config.d_head
    group = config.n_heads // hk

    def normed(*shape):
        return F.rms_norm(torch.randn(*shape, generator=gen), (dh,)).bfloat16()

    q = normed(hk, group * config.tokens_per_frame, dh)
    return q, normed(hk, n_keys, dh), torch.randn(hk, n_keys, dh, generator=gen).bfloat16()


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).norm() / ref.double().norm()).item()


def kind_candidates(config, kind, q, k, v, mask) -> dict:
    """The registry's candidates as zero-argument calls, plus the int8 path over a pre-quantized ring
    (what the engine would pay with an int8 cache: quantization happens once per written frame)."""
    dilation, _ = kind
    tokens, group = config.tokens_per_frame, config.n_heads // config.n_kv_heads
    calls = {name: (lambda fn=fn: fn(q, k, v, mask))
             for name, fn in candidates(tokens, group, dilation, k.shape[1]).items()}
    kv8 = quantize_kv(k, v, tokens)
    calls["int8-attn(cached-int8-kv)"] = lambda: int8_attention(q, kv8, mask)
    return calls


def time_calls(calls: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per call, candidates interleaved round by round (after one untimed warm-up call each)."""
    for fn in calls.values():
        fn()
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def choose(rows: list[dict]) -> str:
    """Fastest by minimum time among candidates within their error bound; the reference unless one beats it."""
    ok = [r for r in rows if r["err_vs_ref"] <= error_bound(r["name"])]
    best = min(ok, key=lambda r: r["min_ms"])
    ref = next(r for r in rows if r["name"] == REFERENCE)
    return best["name"] if best["min_ms"] < ref["min_ms"] else REFERENCE


def bench_kind(config, kind, mask, rounds: int, seed: int) -> dict:
    q, k, v = attention_inputs(config, mask.numel(), seed)
    calls = kind_candidates(config, kind, q, k, v, mask)
    exact = F.scaled_dot_product_attention(q.double()[None], k.double()[None], v.double()[None],
                                           attn_mask=mask.view(1, 1, 1, -1))[0]
    ref = calls[REFERENCE]()
    flops = 4 * q.shape[0] * q.shape[1] * k.shape[1] * q.shape[2]
    rows = []
    for name, seconds in time_calls(calls, rounds).items():
        y = calls[name]()
        best, median = min(seconds), statistics.median(seconds)
        rows.append({"name": name, "min_ms": 1e3 * best, "median_ms": 1e3 * median, "gflops": flops / best / 1e9,
                     "err_vs_ref": relative_error(y, ref), "err_vs_fp64": relative_error(y, exact)})
    visible = int(mask.sum())
    return {"kind": {"dilation": kind[0], "buckets": kind[1]}, "keys": mask.numel(), "visible_keys": visible,
            "rows": rows, "choice": choose(rows)}


def describe(result: dict) -> str:
    kind = result["kind"]
    label = "local" if kind["dilation"] == 1 else "global"
    lines = [f"{label} ring (dilation {kind['dilation']}, {kind['buckets']} slots): {result['visible_keys']} of "
             f"{result['keys']} keys visible",
             f"  {'candidate':28s} {'min ms':>8s} {'median':>8s} {'GFLOP/s':>8s} {'err/ref':>9s} {'err/fp64':>9s}"]
    for r in result["rows"]:
        lines.append(f"  {r['name']:28s} {r['min_ms']:8.2f} {r['median_ms']:8.2f} {r['gflops']:8.1f} "
                     f"{r['err_vs_ref']:9.2e} {r['err_vs_fp64']:9.2e}")
    ref = next(r for r in result["rows"] if r["name"] == REFERENCE)
    best = next(r for r in result["rows"] if r["name"] == result["choice"])
    lines.append(f"  choice: {result['choice']} ({ref['min_ms'] / best['min_ms']:.2f}x the reference by min)")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m worldengine.cli.bench_attention", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    parser.add_argument("--frame", type=int, default=None,
                        help="query frame whose key masks are used (default: 2*global_window + 3, steady state)")
    parser.add_argument("--rounds", type=int, default=20, help="timed calls per candidate")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    args = parser.parse_args(argv)
    if args.rounds < 1 or (args.frame is not None and args.frame < 0):
        parser.error("--rounds must be >= 1 and --frame >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    config = preset_config(args.preset)
    frame = 2 * config.global_window + 3 if args.frame is None else args.frame
    info = machine_info("cpu")
    print(f"attention candidates, preset {args.preset}, query frame {frame} | {info['cpu_model']} | "
          f"{info['threads']} threads | load {os.getloadavg()[0]:.2f} (figures are indicative when the "
          f"machine is shared: compare candidates within one run)")
    results = [bench_kind(config, kind, mask, args.rounds, args.seed)
               for kind, mask in ring_masks(config, frame).items()]
    for result in results:
        print(describe(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"preset": args.preset, "frame": frame, "machine": info, "kinds": results}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
