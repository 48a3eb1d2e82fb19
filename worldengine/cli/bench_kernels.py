"""Linear kernels side by side on this machine: ours against torchao's, per layer shape of a preset.

    python -m worldengine bench-kernels --preset cpu-small [--dtype bfloat16] [--compile] [--json out.json]

For each (M, K, N) of one transformer block (M = tokens per frame) it times y = x @ W^T + b with:
float (the dtype's own GEMM), ours int8 W8A8 (`quant.int8.Int8Linear`, whichever kernel it runs here),
ours int8 weight-only, and, when `torchao` is installed, torchao's int8 dynamic-activation/int8-weight and
int8 weight-only linears. Median of repeated calls after a warm-up; each figure is ms per call and GOP/s.
Ratios are comparable only within one run (same machine, same load).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from torch import nn

from worldengine.cli.roofline import gemm_sizes_for
from worldengine.options import torch_dtype
from worldengine.synthetic.presets import PRESETS, preset_config

TARGET_SECONDS = 0.3      # timing budget per kernel and shape (a slow kernel gets fewer repeats)


def _ours(linear: nn.Linear, mode: str, rows: int, int_mm: bool = False) -> nn.Module:
    """Our quantized layer as loading makes it; int_mm: undo the CPU prepacking (plain `torch._int_mm`)."""
    from worldengine.quant.int8 import quantize_linears
    holder = nn.Sequential(copy.deepcopy(linear))
    quantize_linears(holder, skip=(), min_features=1, mode=mode, rows_hint=rows)
    layer = holder[0]
    if int_mm and getattr(layer, "weight_packed", None) is not None:
        layer.weight_q, layer.weight_packed = layer.stored_weight().contiguous(), None
    return holder


def _torchao(linear: nn.Linear, config_name: str) -> nn.Module:
    import torchao.quantization as tq
    holder = nn.Sequential(copy.deepcopy(linear))
    tq.quantize_(holder, getattr(tq, config_name)())
    return holder


def candidates(linear: nn.Linear, rows: int) -> dict:
    """name -> module computing the same linear (float reference first)."""
    found = {"float": nn.Sequential(linear), "ours int8": _ours(linear, "int8", rows),
             "ours int8 _int_mm": _ours(linear, "int8", rows, int_mm=True),
             "ours int8wo": _ours(linear, "int8wo", rows)}
    try:
        found["torchao int8 dyn-act"] = _torchao(linear, "Int8DynamicActivationInt8WeightConfig")
        found["torchao int8wo"] = _torchao(linear, "Int8WeightOnlyConfig")
    except ImportError:
        pass
    return found


def time_call(fn, x) -> float:
    """Median seconds of fn(x): one warm-up (compiles, when compiled), then repeats within the budget."""
    fn(x)
    start = time.perf_counter()
    fn(x)
    once = time.perf_counter() - start
    samples = []
    for _ in range(max(3, min(50, int(TARGET_SECONDS / max(once, 1e-6))))):
        start = time.perf_counter()
        fn(x)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@torch.inference_mode()
def measure(preset: str, dtype: torch.dtype, compile: bool, seed: int = 0) -> list[dict]:
    config = preset_config(preset)
    qkv_out = (config.n_heads + 2 * config.n_kv_heads) * config.d_head
    rows = []
    torch.manual_seed(seed)
    for m, k, n in gemm_sizes_for(config.tokens_per_frame, config.d_model, config.mlp_hidden, qkv_out):
        linear = nn.Linear(k, n).to(dtype)
        x = torch.randn(m, k, dtype=dtype)
        reference = linear(x).float()
        for name, module in candidates(linear, m).items():
            fn = torch.compile(module, fullgraph=False, dynamic=False) if compile else module
            seconds = time_call(fn, x)
            error = ((fn(x).float() - reference).norm() / reference.norm()).item()
            rows.append({"shape": [m, k, n], "kernel": name, "ms": 1000 * seconds,
                         "gops": 2 * m * k * n / seconds / 1e9, "rel_error": error})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| M×K×N | kernel | ms | GOP/s | vs float | rel. error |", "|---|---|---|---|---|---|"]
    float_ms = None
    for r in rows:
        float_ms = r["ms"] if r["kernel"] == "float" else float_ms    # each shape's rows start with float
        lines.append(f"| {'×'.join(map(str, r['shape']))} | {r['kernel']} | {r['ms']:.3f} | {r['gops']:.0f} | "
                     f"{float_ms / r['ms']:.2f}× | {r['rel_error']:.2e} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldengine bench-kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS), help="default: %(default)s")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"], help="default: %(default)s")
    parser.add_argument("--compile", action="store_true", help="time each kernel under torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args.preset, torch_dtype(args.dtype), args.compile)
    print(f"{args.preset} {args.dtype} compile={args.compile} threads={torch.get_num_threads()}")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)
    return 0
