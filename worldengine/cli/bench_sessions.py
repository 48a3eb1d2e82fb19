"""`python -m worldengine bench --sessions B`: B players on one engine, batched (`engine.step_many`) versus
the same B sessions stepped one by one, in one run.

    python -m worldengine bench --preset cpu-small --sessions 4 --frames 10 --json out.json

Two sets of B sessions (random weights of the preset; session i seeded with 1 + i % 3 latents, so
their frame counters differ) play the same controls and noise. Rounds alternate between the two
modes, so a machine whose load changes during the run slows both alike. A round gives every session
one latent frame; a session's latency is from the start of its round (all players' inputs due) to
its latent being ready, which for one-by-one stepping includes waiting for the players before it.
Aggregate latent FPS = session-frames / wall time of the timed rounds. The last line is
`throughput ratio X.XX` (batched aggregate FPS / one-by-one aggregate FPS).

Memory per session: the session's own KV cache and its share of the batch workspace (allocated
bytes, exact on every device), plus on CUDA the peak allocated memory of each mode divided by B.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from worldengine.errors import WaypointError
from worldengine.synthetic.presets import preset_config

MODES = ("one_by_one", "batched")


def build_engine(config, args):
    """An engine of random weights at the preset's size with the run's dtype / quant / compile."""
    from worldengine.checkpoint import to_inference_layout
    from worldengine.engine import WorldEngine, apply_speed_options, build_model
    from worldengine.quant.dtype import resolve_dtype
    from worldengine.synthetic import random_canonical_state

    state = to_inference_layout(random_canonical_state(config, args.seed), config)
    engine = WorldEngine(config, build_model(config, state, torch.device(args.device),
                                             resolve_dtype(args.dtype, args.device, config)))
    apply_speed_options(engine, quant=args.quant, compile=args.compile)
    return engine


def player_controls(n_buttons: int, player: int, frame: int):
    """Each player presses its own keys and moves its own way, changing every frame."""
    from worldengine.controls import Controls

    keys = [(), (87,), (87, 16), (65, 32), (68,)]
    pressed = frozenset(k for k in keys[(player + frame) % len(keys)] if k < n_buttons)
    return Controls(buttons=pressed, mouse=(0.05 * ((player + frame) % 3 - 1), 0.02 * (frame % 2)),
                    scroll=(player + frame) % 3 - 1)


class Players:
    """B seeded sessions, their generators and their per-round latencies for one stepping mode."""

    def __init__(self, engine, count: int, seed: int):
        shape = engine.config.latent_shape
        seeds = torch.randn(4, *shape, generator=torch.Generator().manual_seed(seed))
        self.engine, self.frame = engine, 0
        self.sessions = [engine.new_session() for _ in range(count)]
        for index, session in enumerate(self.sessions):
            session.append_latents(seeds[: 1 + index % 3])
        self.generators = [torch.Generator().manual_seed(seed + 1 + i) for i in range(count)]
        self.round_s, self.latency_s = [], []

    def play_round(self, mode: str, timed: bool):
        n_buttons = self.engine.config.n_buttons
        requests = [(session, player_controls(n_buttons, i, self.frame), self.generators[i])
                    for i, session in enumerate(self.sessions)]
        start, ready = time.perf_counter(), []
        if mode == "batched":
            latents = self.engine.step_many(requests)
            _sync(self.engine.device)
            ready = [time.perf_counter()] * len(requests)
        else:
            latents = []
            for session, controls, generator in requests:
                latents.append(session.step(controls, generator=generator))
                _sync(self.engine.device)
                ready.append(time.perf_counter())
        if not all(torch.isfinite(latent).all() for latent in latents):
            raise WaypointError(f"bench --sessions: {mode} stepping produced non-finite latents")
        self.frame += 1
        if timed:
            self.round_s.append(ready[-1] - start)
            self.latency_s += [t - start for t in ready]
        return latents


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summarize(players: Players, peak_bytes: int | None) -> dict:
    count, wall = len(players.sessions), sum(players.round_s)
    figures = {"rounds": len(players.round_s), "aggregate_latent_fps": round(count * len(players.round_s) / wall, 3),
               "per_session_latent_fps": round(len(players.round_s) / wall, 3),
               "round_ms_p50": round(_percentile(players.round_s, 50) * 1e3, 2),
               "latency_ms_p50": round(_percentile(players.latency_s, 50) * 1e3, 2),
               "latency_ms_p99": round(_percentile(players.latency_s, 99) * 1e3, 2)}
    if peak_bytes is not None:
        figures["cuda_peak_mb_per_session"] = round(peak_bytes / count / 2**20, 2)
    return figures


def measure(engine, count: int, frames: int, warmup: int, seed: int) -> dict:
    """Alternate rounds of both modes on two session sets; returns the figures per mode."""
    cuda = torch.device(engine.device).type == "cuda"
    players = {mode: Players(engine, count, seed) for mode in MODES}
    peaks = dict.fromkeys(MODES, 0)
    for round_index in range(warmup + frames):
        if round_index == warmup and hasattr(engine.forward, "wait"):
            # A forward compiling in the background switches to its graph after a frame once ready:
            # wait for it and play one more untimed round, so one-by-one rounds are timed compiled too.
            engine.forward.wait()
            for mode in MODES:
                players[mode].play_round(mode, timed=False)
        for mode in MODES:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            players[mode].play_round(mode, timed=round_index >= warmup)
            if cuda:
                peaks[mode] = max(peaks[mode], torch.cuda.max_memory_allocated() - base)
    ref, got = (players[mode].sessions[0].last_latent for mode in MODES)
    from worldengine.batch import stepper_for

    kv_bytes = sum(b.numel() * b.element_size() for b in players["batched"].sessions[0].cache.buffers)
    return {"sessions": count, **{mode: summarize(players[mode], peaks[mode] if cuda else None) for mode in MODES},
            "kv_cache_mb_per_session": round(kv_bytes / 2**20, 3),
            "batch_workspace_mb_per_session": round(stepper_for(engine).nbytes() / count / 2**20, 3),
            "max_abs_diff_batched_vs_one_by_one": float((ref - got).abs().max())}


def run_sessions(args) -> int:
    """The `--sessions` run of `python -m worldengine bench` (args from its parser)."""
    if args.sessions < 1:
        raise WaypointError(f"--sessions must be >= 1, got {args.sessions}")
    from worldengine.cli.roofline import frame_flops

    config = preset_config(args.preset)
    torch.manual_seed(args.seed)
    engine = build_engine(config, args)
    quant, compiled = engine.options["quant"], bool(engine.options["compile"])   # what was applied
    load = _load_average()
    print(f"[bench --sessions {args.sessions}] {args.preset}: {config.tokens_per_frame} tokens/frame, "
          f"{frame_flops(config) / 1e9:.2f} GFLOP per latent frame | {args.dtype} quant={quant} "
          f"compile={compiled} | {torch.get_num_threads()} threads, load average {load}")
    report = {"format": "waypoint-bench-sessions/1", "preset": args.preset, "device": args.device,
              "dtype": args.dtype, "quant": quant, "compile": compiled,
              "threads": torch.get_num_threads(), "load_avg_1m_before": load, "warmup": args.warmup,
              **measure(engine, args.sessions, args.frames, args.warmup, args.seed)}
    report["load_avg_1m_after"] = _load_average()
    report["throughput_ratio"] = round(report["batched"]["aggregate_latent_fps"]
                                       / report["one_by_one"]["aggregate_latent_fps"], 3)
    for mode in MODES:
        r = report[mode]
        print(f"{mode:10s} aggregate {r['aggregate_latent_fps']:.2f} latent FPS ({r['per_session_latent_fps']:.2f} "
              f"per session) | per-session latency p50 {r['latency_ms_p50']:.1f} ms p99 {r['latency_ms_p99']:.1f} ms"
              + (f" | CUDA peak {r['cuda_peak_mb_per_session']} MB/session" if "cuda_peak_mb_per_session" in r else ""))
    print(f"memory per session: KV cache {report['kv_cache_mb_per_session']} MB + batch workspace "
          f"{report['batch_workspace_mb_per_session']} MB | max |batched - one by one| "
          f"{report['max_abs_diff_batched_vs_one_by_one']:.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"[bench] wrote {args.json}")
    print(f"throughput ratio {report['throughput_ratio']:.2f}")
    return 0


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None
