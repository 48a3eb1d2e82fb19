"""`python -m worldengine bench`: rollout speed of a preset with random weights, against this machine's roofline.

    python -m worldengine bench --preset cpu-small --compare --json out.json

Measures whole latent frames (4 Euler denoise passes + 1 cache pass, what `session.step` does), after
a warm-up that also pays any compilation. Controls change every frame (different buttons, mouse
and scroll), as in play. `--compare` runs the eager float32 baseline and the optimized
configuration in one process and ends with the line `speedup X.XX` (ratio of p50 frame times).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from worldengine.errors import WaypointError
from worldengine.options import Compile, DType, Quant
from worldengine.quant.select import cpu_model
from worldengine.cli.startup import resolve_speed_flags, run_cold
from worldengine.synthetic import random_prompt
from worldengine.synthetic.presets import PRESETS, preset_config
from worldengine.cli.kernel_report import kernel_report
from worldengine.cli.roofline import ROOFLINE_KEYS, frame_flops, gemm_sizes_for, measure_roofline

OPTIMIZED_DEFAULT = {"dtype": "bfloat16", "quant": "int8", "compile": True}
# Roofline result key per configuration kind (a quant mode or a compute dtype name).
ROOFLINE_KEY = {**ROOFLINE_KEYS, "bfloat16": ROOFLINE_KEYS["bf16"], "float32": ROOFLINE_KEYS["fp32"]}

def control_cycle(n_buttons: int):
    """Per-frame controls that vary pressed-button count, mouse and scroll (no two neighbours alike)."""
    from worldengine.controls import Controls

    keys = [frozenset(), frozenset({87}), frozenset({87, 16}), frozenset({65, 32, 1}), frozenset({68})]
    keys = [frozenset(k for k in ks if k < n_buttons) for ks in keys]
    return [Controls(buttons=keys[i % len(keys)], mouse=(0.05 * (i % 3 - 1), 0.02 * (i % 2)),
                     scroll=(i % 3) - 1) for i in range(7)]


def build_engine(config, state: dict, device: str, dtype: str, quant: str | None, compile: bool):
    """A WorldEngine from an inference-layout state dict, with the load-time speed options applied."""
    from worldengine.engine import WorldEngine, apply_speed_options, build_model
    from worldengine.quant.dtype import resolve_dtype

    # build_model consumes the dict it is given; the caller's state serves every configuration.
    model = build_model(config, dict(state), torch.device(device), resolve_dtype(dtype, device, config))
    engine = WorldEngine(config, model)
    apply_speed_options(engine, quant=quant, compile=compile, background=False)
    return engine


def random_state(config, seed: int = 0) -> dict:
    from worldengine.checkpoint import to_inference_layout
    from worldengine.synthetic import random_canonical_state
    return to_inference_layout(random_canonical_state(config, seed), config)


def roofline_kind(dtype: str, quant: str | None) -> str:
    """Which GEMM roofline a configuration is held against: its matmul operand type. Weight-only int8
    multiplies in the activation dtype."""
    return quant if quant in ("int8", "fp8") else dtype


def _sync(device: str):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


class MemoryProbe:
    """Peak memory of one run: CUDA max_memory_allocated, or CPU peak RSS (VmHWM, reset per run
    through /proc/self/clear_refs where the kernel allows it) minus the RSS before the run."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"

    def start(self):
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.peak_reset = _reset_peak_rss()
            self.base = _status_kb("VmRSS")

    def stop(self) -> dict:
        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
            return {"memory_kind": "cuda_max_allocated", "peak_memory_mb": round(peak / 2**20, 1),
                    "memory_delta_mb": round((peak - self.base) / 2**20, 1)}
        peak = _status_kb("VmHWM")
        kind = "cpu_peak_rss" if self.peak_reset else "cpu_process_peak_rss"
        return {"memory_kind": kind, "peak_memory_mb": round(peak / 1024, 1),
                "memory_delta_mb": round((peak - self.base) / 1024, 1) if self.base else None}


def _status_kb(field: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    import resource  # peak only, in KB on Linux

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def run_config(config, state: dict, device: str, dtype: str, quant: str | None, compile: bool,
               frames: int, warmup: int, roofline: dict) -> dict:
    """Build one engine, roll it out, and return the measured figures (JSON-ready dict)."""
    probe = MemoryProbe(device)
    probe.start()
    start = time.perf_counter()
    engine = build_engine(config, state, device, dtype, quant, compile)
    quant, compile = engine.options["quant"].split(" (")[0], engine.options["compile"]   # what auto chose
    dtype = str(engine.dtype).removeprefix("torch.")
    build_s = time.perf_counter() - start
    session = engine.new_session()
    session.set_prompt(random_prompt(config))   # Waypoint-1 is prompt-conditioned; None elsewhere
    generator = torch.Generator().manual_seed(0)
    controls = control_cycle(config.n_buttons)
    session.append_latent(torch.randn(config.latent_shape, generator=generator))
    _sync(device)
    first_frame_s = time.perf_counter() - start
    times, cpu_times = [], []
    for i in range(warmup + frames):
        begin, cpu_begin = time.perf_counter(), time.process_time()
        latent = session.step(controls[i % len(controls)], generator=generator)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - begin)
            cpu_times.append(time.process_time() - cpu_begin)
    if not torch.isfinite(latent).all():
        raise WaypointError(f"benchmark rollout produced non-finite latents ({dtype}, quant={quant})")
    memory = probe.stop()
    # CPU time of the process per frame: on a shared machine it shows the work done, where wall
    # time also shows waiting for other processes (it counts every thread, so it exceeds wall time
    # when several threads are busy).
    cpu_p50 = sorted(cpu_times)[len(cpu_times) // 2]
    kind = roofline_kind(dtype, quant)
    cpu_peak = roofline.get("per_cpu_second", {}).get(ROOFLINE_KEY[kind])
    cpu_fraction = frame_flops(config) / cpu_p50 / 1e9 / cpu_peak if cpu_peak and cpu_p50 > 0 else None
    return summarize(config, times, dtype, quant, compile, device, roofline,
                     {"cpu_ms_per_frame_p50": round(cpu_p50 * 1e3, 2),
                      "roofline_fraction_cpu_time": round(cpu_fraction, 4) if cpu_fraction else None,
                      "build_s": round(build_s, 3),
                      "first_pass_s": round(first_frame_s, 3), **memory})


def summarize(config, times: list[float], dtype, quant, compile, device, roofline: dict, extra: dict) -> dict:
    ordered = sorted(times)
    p50 = _percentile(ordered, 50)
    passes = len(config.scheduler_sigmas)
    flops = frame_flops(config)
    achieved = flops / p50 / 1e9
    kind = roofline_kind(dtype, quant)
    peak = roofline.get(ROOFLINE_KEY[kind])
    return {
        "dtype": dtype, "quant": quant or "none", "compile": bool(compile), "device": device,
        "frames": len(times), "latent_fps": round(1.0 / p50, 3),
        "rendered_fps": round(config.frames_per_latent / p50, 3),
        "frames_per_latent": config.frames_per_latent,
        "ms_per_frame_p50": round(p50 * 1e3, 2), "ms_per_frame_p99": round(_percentile(ordered, 99) * 1e3, 2),
        "ms_per_frame_min": round(ordered[0] * 1e3, 2),
        "ms_per_frame_mean": round(sum(times) / len(times) * 1e3, 2),
        "passes_per_frame": passes, "tokens_per_frame": config.tokens_per_frame,
        "token_passes_per_s": round(passes * config.tokens_per_frame / p50, 1),
        "gflop_per_frame": round(flops / 1e9, 3), "achieved_gflops": round(achieved, 1),
        "roofline_kind": kind, "roofline_fraction": round(achieved / peak, 4) if peak else None,
        "int8_roofline_fraction": round(achieved / roofline["int8_gops"], 4) if roofline.get("int8_gops") else None,
        **extra,
    }


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "cpu_model": _cpu_model()}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    try:
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    return info


def _cpu_model() -> str:
    return cpu_model() or platform.processor() or "unknown"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m worldengine bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default=None, choices=DType.values(),
                        help="compute dtype (default float32; with --compare and no speed flags: bfloat16; "
                             "auto: as the nodes' default, on CPU bfloat16 where it measured faster here)")
    parser.add_argument("--quant", default=None, choices=Quant.values(), help=" ".join(Quant.__doc__.split()))
    parser.add_argument("--compile", nargs="?", const="on", choices=Compile.values(), help="torch.compile: on (bare), off, auto")
    parser.add_argument("--cold", action="store_true", help="start-up figures in fresh processes (worldengine.cli.startup)")
    parser.add_argument("--frames", type=int, default=20, help="timed latent frames")
    parser.add_argument("--warmup", type=int, default=3, help="untimed latent frames first (compile happens here)")
    parser.add_argument("--compare", action="store_true", help="also run the eager float32 baseline; last line is "
                        "'speedup X.XX'. Without speed flags: bfloat16 + int8 + compile (no --compare: quant, compile auto)")
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    parser.add_argument("--seed", type=int, default=0, help="random weight seed")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for this run (default: torch's)")
    parser.add_argument("--sessions", type=int, default=None, help="B players: batched vs one by one (bench_sessions)")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        parser.error("--frames must be >= 1 and --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for but CUDA is not available")
    if args.quant == "fp8":
        from worldengine.quant.fp8 import require_fp8_device
        try:
            require_fp8_device(args.device)   # before the roofline runs, not after it
        except WaypointError as err:
            parser.error(str(err))
    resolve_speed_flags(args, OPTIMIZED_DEFAULT)
    args.dtype = args.dtype or "float32"
    return args


def describe(label: str, r: dict) -> str:
    frac = f"{100 * r['roofline_fraction']:.1f}% of {r['roofline_kind']} roofline" if r["roofline_fraction"] else ""
    return (f"{label:9s} {r['dtype']:8s} quant={r['quant']:4s} compile={str(r['compile']):5s} | "
            f"p50 {r['ms_per_frame_p50']:.1f} ms  p99 {r['ms_per_frame_p99']:.1f} ms  min {r['ms_per_frame_min']:.1f} ms  (cpu {r['cpu_ms_per_frame_p50']:.0f} ms) | "
            f"{r['latent_fps']:.2f} latent FPS  {r['rendered_fps']:.2f} rendered FPS  "
            f"{r['token_passes_per_s']:.0f} token passes/s | {r['achieved_gflops']:.0f} GFLOP/s {frac} | "
            f"peak mem {r['peak_memory_mb']} MB | first pass after {r['first_pass_s']:.1f} s")


def main(argv=None) -> int:
    args = parse_args(argv)
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from worldengine.cli.bench_sessions import run_sessions
        return run_sessions(args) if args.sessions is not None else _run(args, argv)
    finally:
        torch.set_num_threads(threads_before)


def _run(args, argv) -> int:
    if args.cold:
        return run_cold(args, argv)
    config = preset_config(args.preset)
    torch.manual_seed(args.seed)
    state = random_state(config, args.seed)
    d, t = config.d_model, config.tokens_per_frame
    qkv_out = (config.n_heads + 2 * config.n_kv_heads) * config.d_head
    kinds = ("fp32", "bf16", "int8") + (("fp8",) if args.quant == "fp8" else ())
    roofline = measure_roofline(gemm_sizes_for(t, d, config.mlp_hidden, qkv_out), device=args.device, kinds=kinds)
    report = {"format": "waypoint-bench/1", "preset": args.preset, "config": config.to_dict(),
              "machine": machine_info(args.device), "roofline": roofline, "warmup": args.warmup,
              "command": "python -m worldengine bench " + " ".join(argv if argv is not None else [])}
    print(f"[bench] {args.preset}: d_model {d}, {config.n_layers} layers, {t} tokens/frame, "
          f"{frame_flops(config) / 1e9:.2f} GFLOP per latent frame | machine: {report['machine']['cpu_model']}, "
          f"{report['machine']['threads']} threads | roofline fp32 {roofline['fp32_gflops']:.0f} GFLOP/s, "
          f"bf16 {roofline['bf16_gflops']:.0f} GFLOP/s, int8 {roofline['int8_gops']:.0f} GOP/s")
    runs = {}
    if args.compare:
        runs["baseline"] = run_config(config, state, args.device, "float32", None, False,
                                      args.frames, args.warmup, roofline)
        print(describe("baseline", runs["baseline"]))
    label = "optimized" if args.compare else "run"
    runs[label] = run_config(config, state, args.device, args.dtype, args.quant, args.compile,
                             args.frames, args.warmup, roofline)
    print(describe(label, runs[label]) + "\n" + kernel_report())
    report["runs"] = runs
    if args.compare:
        report["speedup"] = round(runs["baseline"]["ms_per_frame_p50"] / runs["optimized"]["ms_per_frame_p50"], 3)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
        print(f"[bench] wrote {args.json}")
    if args.compare:
        print(f"speedup {report['speedup']:.2f}")
    return 0
