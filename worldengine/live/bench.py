"""Several live players on one engine, batched versus one by one, measured in one run.

    python -m worldengine.live.bench --sessions 4 --seconds 6            # the toy world (models/toyworld)
    python -m worldengine.live.bench --preset tiny --sessions 4 --json out.json

B `LiveSession`s on one device worker play at once (latent preview, JPEG frames, no fps cap), each
client acknowledging every frame as soon as it arrives, like a local browser that keeps up. The run
alternates rounds of the two worker modes, so a machine whose load changes slows both alike:
`batched` (the worker steps every due session in one `engine.step_many`) and `one_by_one`
(`worker.max_batch = 1`: one session per pass, round-robin, as before batching). Per mode:
aggregate latent FPS (all sessions' frames / wall time), each session's own FPS, and the frame
`latency_ms` (step start to frame handed over) p50 / p99 over all sessions. The last line is
`throughput ratio X.XX` (batched aggregate FPS / one-by-one aggregate FPS).
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import torch

MODES = ("one_by_one", "batched")


def build_engine(args):
    """The toy world's engine, or random weights at a preset's size (float32, CPU by default)."""
    from worldengine.engine import load_engine
    if args.preset is None:
        from worldengine.paths import TOY_MODEL_DIR
        return load_engine(args.model or TOY_MODEL_DIR, device=args.device, dtype=args.dtype, quant=None,
                           compile=False)
    from worldengine.cli.bench import build_engine as build_random
    from worldengine.cli.bench import random_state
    from worldengine.synthetic.presets import preset_config
    config = preset_config(args.preset)
    return build_random(config, random_state(config, seed=1), args.device, args.dtype, None, compile=False)


class Client:
    """One player: acks each frame at once, counts frames and latencies while `counting`."""

    def __init__(self, engine, base, seed: int, index: int):
        from worldengine.live.frames import LatentPreview
        from worldengine.live.session import LiveSession

        self.index, self.counting, self.frames, self.latencies = index, False, 0, []
        self.lock = threading.Lock()
        preview = lambda name: LatentPreview(engine.config.latent_shape[0])
        self.live = LiveSession(engine, base, seed, preview, self.sink, record=False)
        self.live.submit_control({87 if index % 2 else 65}, mouse=(0.1 * index, 0.0))

    def sink(self, frame) -> None:
        with self.lock:
            if self.counting:
                self.frames += 1
                self.latencies.append(frame.latency_ms)
        self.live.ack(frame.ordinal)


def _percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def _round(clients, worker, mode: str, seconds: float) -> tuple[float, list[int], list[float]]:
    """Play `seconds` in `mode` after a short settle: (wall seconds, frames per client, latencies)."""
    worker.max_batch = 1 if mode == "one_by_one" else 8
    time.sleep(min(0.2, seconds / 4))   # the passes of the previous mode end
    for client in clients:
        with client.lock:
            client.counting, client.frames, client.latencies = True, 0, []
    start = time.perf_counter()
    time.sleep(seconds)
    for client in clients:
        with client.lock:
            client.counting = False
    wall = time.perf_counter() - start
    return wall, [c.frames for c in clients], [x for c in clients for x in c.latencies]


def measure(engine, sessions: int, seconds: float, rounds: int = 3) -> dict:
    """Figures of both modes for `sessions` live players on `engine` (see the module docstring)."""
    session = engine.new_session()
    session.append_latent(torch.randn(engine.config.latent_shape, generator=torch.Generator().manual_seed(0)))
    base = session.snapshot()
    clients = [Client(engine, base, seed=10 + i, index=i) for i in range(sessions)]
    worker = clients[0].live.worker
    totals = {mode: {"wall": 0.0, "frames": [0] * sessions, "latencies": []} for mode in MODES}
    try:
        for client in clients:
            client.live.play()
        for _ in range(rounds):
            for mode in MODES:
                wall, frames, latencies = _round(clients, worker, mode, seconds / (2 * rounds))
                total = totals[mode]
                total["wall"] += wall
                total["frames"] = [a + b for a, b in zip(total["frames"], frames)]
                total["latencies"] += latencies
    finally:
        for client in clients:
            client.live.close()
        worker.max_batch = 8
    return {mode: _figures(total) for mode, total in totals.items()}


def _figures(total: dict) -> dict:
    wall = total["wall"]
    return {"aggregate_latent_fps": round(sum(total["frames"]) / wall, 2),
            "per_session_latent_fps": [round(f / wall, 2) for f in total["frames"]],
            "latency_ms_p50": round(_percentile(total["latencies"], 0.5), 2),
            "latency_ms_p99": round(_percentile(total["latencies"], 0.99), 2), "seconds": round(wall, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worldengine.live.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="live players on one engine (1-8)")
    parser.add_argument("--seconds", type=float, default=6.0, help="total timed play, both modes together")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two modes")
    parser.add_argument("--preset", default=None, help="random weights at this preset's size instead of the toy world")
    parser.add_argument("--model", default=None, help="a model folder instead of the toy world")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 8 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--sessions must be 1-8, --seconds > 0, --rounds >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = build_engine(args)
    figures = measure(engine, args.sessions, args.seconds, args.rounds)
    figures["config"] = {"sessions": args.sessions, "model": args.preset or str(args.model or "toyworld"),
                         "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads()}
    for mode in MODES:
        print(f"{mode:>10}: {json.dumps(figures[mode])}")
    ratio = figures["batched"]["aggregate_latent_fps"] / max(figures["one_by_one"]["aggregate_latent_fps"], 1e-9)
    figures["throughput_ratio"] = round(ratio, 2)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(f"throughput ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
