"""`bench --cold`: start-up of an engine that compiles in the background, measured in fresh processes.

    python -m worldengine bench --preset cpu-small --dtype bfloat16 --quant int8 --compile --cold

Two child processes (`python -m worldengine.cli.startup`), one after the other, share an inductor
cache folder (TORCHINDUCTOR_CACHE_DIR) that starts empty: the first is the cold start, the second a
warm restart. Each builds the preset with random weights, then plays frames at once (eager while the
worker compiles, `worldengine.compile.BackgroundForward`) and reports, timed from the end of the load:

- ``first_frame_s``: until the first generated latent frame is out;
- ``compiled_speed_s``: until the first frame made by the compiled step is out (None: never switched,
  see ``compile_status``);
- ``eager_p99_ms`` of the eager frames, ``switch_max_ms`` (the slowest frame up to and including the
  first compiled one) and ``slower_than_eager_p99`` (how many frames after the first exceeded the eager
  p99: about 1 % of the eager frames do by definition);
- ``switch_over_eager_p99`` of ``switch_frames``: the frames around the switch, i.e. the
  `SWITCH_LEAD` eager frames before the compiled step was ready (the parent loads and checks it
  during those) and every compiled frame, counted when slower than the eager p99 (the hitch, if any);
- ``p50_after_ms``: median of the compiled frames after the switch.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

RESULT_PREFIX = "[startup-json] "
SWITCH_LEAD = 3   # eager frames before "ready" that count as the switch window


def resolve_speed_flags(args, optimized: dict) -> None:
    """bench's speed flags: none given (and no --compare) -> quant and compile auto; --compare without
    speed flags -> `optimized`; otherwise what is not given is off (quant None, compile False)."""
    explicit = args.quant is not None or args.compile is not None
    args.quant = None if args.quant == "none" else args.quant
    if args.compare and args.dtype is None and args.quant is None and not args.compile:
        args.dtype, args.quant, args.compile = (optimized[k] for k in ("dtype", "quant", "compile"))
    elif not explicit and not args.compare:
        args.quant, args.compile = "auto", "auto"
    args.compile = args.compile or False


def _controls(n_buttons: int):
    from worldengine.controls import Controls
    keys = [frozenset(), frozenset({87}), frozenset({87, 16}), frozenset({68})]
    return [Controls(buttons=frozenset(k for k in ks if k < n_buttons), mouse=(0.05 * (i % 3 - 1), 0.0),
                     scroll=i % 2) for i, ks in enumerate(keys)]


def measure(preset: str, device: str, dtype: str, quant, compile, frames: int, seed: int = 0,
            timeout_s: float = 900.0) -> dict:
    """In this process: load, then step until `frames` compiled frames ran (or `timeout_s`)."""
    import torch

    from worldengine.checkpoint import to_inference_layout
    from worldengine.engine import WorldEngine, apply_speed_options, build_model
    from worldengine.quant.dtype import resolve_dtype
    from worldengine.synthetic import random_canonical_state
    from worldengine.synthetic.presets import preset_config

    config = preset_config(preset)
    state = to_inference_layout(random_canonical_state(config, seed), config)
    start = time.perf_counter()
    engine = WorldEngine(config, build_model(config, state, torch.device(device), resolve_dtype(dtype, device, config)))
    apply_speed_options(engine, quant=quant, compile=compile, background=True)
    loaded = time.perf_counter()
    session, controls = engine.new_session(), _controls(config.n_buttons)
    generator = torch.Generator().manual_seed(seed)
    session.append_latent(torch.randn(config.latent_shape, generator=generator))
    ends, kinds, ready = [], [], None
    while len([k for k in kinds if k]) < frames and time.perf_counter() - loaded < timeout_s:
        kinds.append(bool(getattr(engine.forward, "_use_compiled", engine.compile_status == "compiled")))
        session.step(controls[len(ends) % len(controls)], generator=generator)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
        if ready is None and engine.compile_status == "compiled":
            ready = len(ends)   # frames before this index ran while the step was not ready yet
        if "compiling" not in engine.compile_status and not any(kinds) and engine.compile_status != "compiled":
            break   # compile failed or refused: eager for good
    return _figures(ends, kinds, loaded, start, engine, ready)


def _figures(ends: list[float], kinds: list[bool], loaded: float, start: float, engine, ready) -> dict:
    durations = [b - a for a, b in zip([loaded] + ends[:-1], ends)]
    eager = sorted(d for d, k in zip(durations, kinds) if not k)
    compiled = sorted(d for d, k in zip(durations, kinds) if k)
    first = kinds.index(True) if True in kinds else None
    eager_p99 = eager[min(len(eager) - 1, round(0.99 * (len(eager) - 1)))] if eager else None
    upto = durations[: (first + 1) if first is not None else len(durations)]
    return {"load_s": round(loaded - start, 3), "first_frame_s": round(ends[0] - loaded, 3) if ends else None,
            "compiled_speed_s": round(ends[first] - loaded, 3) if first is not None else None,
            "eager_frames": len(eager), "compiled_frames": len(compiled),
            "eager_p50_ms": round(eager[len(eager) // 2] * 1e3, 2) if eager else None,
            "eager_p99_ms": round(eager_p99 * 1e3, 2) if eager_p99 else None,
            "switch_max_ms": round(max(upto[1:] or upto) * 1e3, 2) if upto else None,
            "slower_than_eager_p99": sum(d > eager_p99 for d in durations[1:]) if eager_p99 else None,
            **_switch_window(durations, kinds, ready, eager_p99),
            "p50_after_ms": round(compiled[len(compiled) // 2] * 1e3, 2) if compiled else None,
            "compile_status": engine.compile_status, "options": engine.options}


def _switch_window(durations: list[float], kinds: list[bool], ready, eager_p99) -> dict:
    if ready is None or eager_p99 is None:
        return {"switch_frames": 0, "switch_over_eager_p99": None}
    window = [d for i, (d, k) in enumerate(zip(durations, kinds)) if k or ready - SWITCH_LEAD <= i < ready]
    return {"switch_frames": len(window), "switch_over_eager_p99": sum(d > eager_p99 for d in window)}


def run_cold(args, argv) -> int:
    """bench --cold: the cold child, then the warm child, on one fresh inductor cache folder."""
    cache = tempfile.mkdtemp(prefix="waypoint-inductor-")
    child = [sys.executable, "-m", "worldengine.cli.startup", "--preset", args.preset, "--device", args.device,
             "--dtype", args.dtype, "--quant", str(args.quant or "none"), "--compile", _compile_text(args.compile),
             "--frames", str(max(3, args.frames))] + (["--threads", str(args.threads)] if args.threads else [])
    report = {"format": "waypoint-bench-startup/1", "preset": args.preset, "inductor_cache": cache,
              "command": "python -m worldengine bench " + " ".join(argv or [])}
    for case in ("cold", "warm"):
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
        done = subprocess.run(child, check=False, env=env, capture_output=True, text=True, timeout=1800)
        lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
        if done.returncode or not lines:
            print(done.stdout[-2000:] + done.stderr[-4000:], file=sys.stderr)
            return done.returncode or 1
        report[case] = json.loads(lines[-1][len(RESULT_PREFIX):])
        print(describe(case, report[case]))
    report.update({k: report["cold"][k] for k in ("first_frame_s", "compiled_speed_s")})
    report["warm_compiled_speed_s"] = report["warm"]["compiled_speed_s"]
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)
        print(f"[bench] wrote {args.json}")
    return 0


def _compile_text(value) -> str:
    return {True: "on", False: "off"}.get(value, str(value))


def describe(case: str, r: dict) -> str:
    return (f"{case:5s} load {r['load_s']:.1f} s | first frame after {r['first_frame_s']} s | compiled speed after "
            f"{r['compiled_speed_s']} s ({r['compile_status']}) | eager p50 {r['eager_p50_ms']} ms p99 "
            f"{r['eager_p99_ms']} ms | slowest frame until the switch {r['switch_max_ms']} ms, "
            f"{r['slower_than_eager_p99']} frame(s) over the eager p99, {r['switch_over_eager_p99']} of the "
            f"{r['switch_frames']} around the switch | compiled p50 {r['p50_after_ms']} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldengine.cli.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for flag, default in (("--preset", "cpu-small"), ("--device", "cpu"), ("--dtype", "float32"),
                          ("--quant", "auto"), ("--compile", "on")):
        parser.add_argument(flag, default=default)
    parser.add_argument("--frames", type=int, default=5, help="compiled frames to time after the switch")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=900.0, help="give up waiting for the compile after this")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    figures = measure(args.preset, args.device, args.dtype, args.quant, args.compile, args.frames,
                      timeout_s=args.timeout)
    print(RESULT_PREFIX + json.dumps(figures, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
