"""Quality figures of a toy world model against the renderer, on held-out episodes.

    python -m tools.toyworld.metrics [--model models/toyworld] [--episodes 4] [--drift-frames 1000]

- next-frame error: seed K ground-truth frames, then generate with the recorded controls; MSE and
  PSNR of decoded frames vs the renderer at horizons 1, 16, 128 (with the 'repeat the last seed
  frame' baseline and the autoencoder's own reconstruction floor).
- control response: horizontal scene shift in pixels per frame (positive = the scene moves right)
  while turning left / right, generated vs rendered.
- drift: a 1000-frame random-policy rollout; spatial std of frames and frame-to-frame change early vs
  late (a collapse to a mean image drives both to ~0).
- speed: latent frames per second of `session.step` (eager, int8, int8 + compile).
Frames are [3, H, W] float in [0, 1]; latents [C, h, w].

A version-2 model (4 frames per latent, the 256x144 game) is measured by tools/toyworld/evaluate.py
instead (same figures per frame, plus walk/strafe response and seed continuation); this command
hands such a folder over to it.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tools.toyworld.dataset import play_episode, random_actions
from tools.toyworld.render import KEY_W, World
from tools.toyworld.spec import KEYS, MODEL_DIR
from worldengine.controls import Controls

HELD_OUT_SEED0 = 900_000      # training uses seeds < 1 000 000 - 1; AE fit uses 1 000 000+
SHIFT_ROWS = 0.6              # top part of the frame (sky, skyline, walls) used for the shift estimate


def load_toy(folder: str | Path = MODEL_DIR, quant=None, compile=False):
    from worldengine.engine import load_engine
    from worldengine.ae.toy import load_toy_ae

    folder = Path(folder)
    return load_engine(folder, quant=quant, compile=compile), load_toy_ae(folder / "toy_ae.safetensors")


def horizontal_shift(before: np.ndarray, after: np.ndarray, max_shift: int = 16) -> int:
    """Integer shift s (pixels) minimising |after[:, x + s] - before[:, x]| over the top rows."""
    rows = int(before.shape[1] * SHIFT_ROWS)
    a, b = before[:, :rows], after[:, :rows]
    width = a.shape[2]
    errors = {}
    for s in range(-max_shift, max_shift + 1):
        if s >= 0:
            errors[s] = np.mean((b[:, :, s:] - a[:, :, :width - s]) ** 2)
        else:
            errors[s] = np.mean((b[:, :, :width + s] - a[:, :, -s:]) ** 2)
    return min(errors, key=errors.get)


def controls_of(keys_row, mouse_dx: float) -> Controls:
    return Controls(frozenset(code for column, code in enumerate(KEYS) if keys_row[column]), (float(mouse_dx), 0.0))


def rollout(engine, ae, seed_frames: np.ndarray, seed_controls: list, controls: list, generator_seed: int = 0):
    """Seed with frames [K, 3, H, W] (+ their controls), generate len(controls) frames -> [N, 3, H, W]."""
    session = engine.new_session()
    for latent, control in zip(ae.encode(torch.from_numpy(seed_frames)), seed_controls):
        session.append_latent(latent, control)
    generator = torch.Generator().manual_seed(generator_seed)
    latents = [session.step(control, generator=generator) for control in controls]
    return ae.decode(torch.stack(latents)).numpy()


def turn_response(engine, ae, mouse_dx: float, frames: int = 8, world_seed: int = HELD_OUT_SEED0, keys=()) -> dict:
    """Mean shift per frame (px) while holding `keys` and turning with mouse dx, model vs renderer."""
    world = World(world_seed)
    seed = []
    for _ in range(2):
        world.step([KEY_W], 0.0)
        seed.append(world.render())
    truth = []
    for _ in range(frames):
        world.step(list(keys), mouse_dx)
        truth.append(world.render())
    control = Controls(frozenset(keys), (mouse_dx, 0.0))
    generated = rollout(engine, ae, np.stack(seed), [Controls.from_keys(["W"])] * 2, [control] * frames)
    def mean_shift(sequence):
        return float(np.mean([horizontal_shift(a, b) for a, b in zip(sequence[:-1], sequence[1:])]))
    return {"model_px_per_frame": mean_shift([seed[-1], *generated]), "renderer_px_per_frame": mean_shift([seed[-1], *truth])}


def mse_psnr(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    mse = float(np.mean((a - b) ** 2))
    return mse, float(-10 * np.log10(max(mse, 1e-10)))


def next_frame_errors(engine, ae, episodes: int, context: int = 4, horizons=(1, 16, 128)) -> dict:
    """Mean MSE/PSNR at each horizon over held-out episodes, plus baselines."""
    out = {h: {"model": [], "repeat_last": [], "ae_floor": []} for h in horizons}
    length = context + max(horizons)
    for e in range(episodes):
        seed = HELD_OUT_SEED0 + 1 + e
        keys, mouse = random_actions(np.random.default_rng(seed), length)
        frames = play_episode(seed, keys, mouse)
        controls = [controls_of(k, m) for k, m in zip(keys, mouse)]
        generated = rollout(engine, ae, frames[:context], controls[:context], controls[context:], e)
        recon = ae.decode(ae.encode(torch.from_numpy(frames))).numpy()
        for h in horizons:
            target = frames[context + h - 1]
            out[h]["model"].append(mse_psnr(generated[h - 1], target)[0])
            out[h]["repeat_last"].append(mse_psnr(frames[context - 1], target)[0])
            out[h]["ae_floor"].append(mse_psnr(recon[context + h - 1], target)[0])
    return {f"h{h}": {name: {"mse": float(np.mean(v)), "psnr": float(-10 * np.log10(np.mean(v)))}
                      for name, v in table.items()} for h, table in out.items()}


def drift(engine, ae, frames: int = 1000, window: int = 100) -> dict:
    """Random-policy rollout: spatial std and frame-to-frame change, first vs last window, vs renderer."""
    seed = HELD_OUT_SEED0 + 500
    keys, mouse = random_actions(np.random.default_rng(seed), frames + 2)
    truth = play_episode(seed, keys, mouse)
    controls = [controls_of(k, m) for k, m in zip(keys, mouse)]
    generated = rollout(engine, ae, truth[:2], controls[:2], controls[2:])
    def stats(seq):
        return {"spatial_std": float(seq.std(axis=(2, 3)).mean()),
                "frame_change": float(np.abs(np.diff(seq, axis=0)).mean())}
    return {"model_first": stats(generated[:window]), "model_last": stats(generated[-window:]),
            "renderer": stats(truth[2:]), "model_mean_image_distance_last":
            float(np.abs(generated[-window:] - generated[-window:].mean(0)).mean())}


def step_fps(folder, quant=None, compile=False, frames: int = 30) -> float:
    engine, _ = load_toy(folder, quant=quant, compile=compile)
    session = engine.new_session()
    session.append_latent(torch.zeros(engine.config.latent_shape))
    for _ in range(3):
        session.step(Controls.from_keys(["W"]))
    start = time.perf_counter()
    for _ in range(frames):
        session.step(Controls.from_keys(["W"]))
    return frames / (time.perf_counter() - start)


def comparison_video(engine, ae, path: Path, frames: int = 48, scale: int = 3) -> Path:
    """Renderer (top) vs model (bottom) on the README's track: walk forward, then walk + turn left."""
    from worldengine.images import to_uint8
    from worldengine.cli.rollout import default_track
    from worldengine.video import write_frames

    track = default_track(frames)
    world = World(HELD_OUT_SEED0 + 7)
    world.step([KEY_W], 0.0)
    seed = world.render()
    truth = []
    for control in track.frames:
        world.step(control.buttons, control.mouse[0])
        truth.append(world.render())
    generated = rollout(engine, ae, seed[None], [Controls.from_keys(["W"])], list(track.frames))
    pairs = torch.from_numpy(np.concatenate([np.stack(truth), generated], axis=2))   # [T, 3, 2H, W]
    pairs = torch.nn.functional.interpolate(pairs, scale_factor=scale, mode="nearest")
    return write_frames(to_uint8(pairs), path, fps=8)


def is_version_2(folder: Path) -> bool:
    """Whether the folder's toy AE is the version-2 one (4 frames per latent)."""
    from worldengine.ae.toy import load_toy_ae

    return load_toy_ae(Path(folder) / "toy_ae.safetensors").frames_per_latent > 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--drift-frames", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--video", type=Path, help="also write renderer-vs-model frames (.gif/.mp4/folder)")
    args = parser.parse_args(argv)
    if is_version_2(args.model):
        from tools.toyworld import evaluate

        return evaluate.main(["--model", str(args.model), "--episodes", str(args.episodes),
                              "--drift-frames", str(args.drift_frames), "--threads", str(args.threads)])
    torch.set_num_threads(args.threads)
    engine, ae = load_toy(args.model)
    report = {"model": str(args.model), "training": (args.model / "training.txt").read_text().strip().splitlines()
              if (args.model / "training.txt").is_file() else []}
    if args.video:
        print(f"wrote {comparison_video(engine, ae, args.video)}", flush=True)
    report["turn_left"] = turn_response(engine, ae, -0.3)
    report["turn_right"] = turn_response(engine, ae, 0.3)
    report["walk_turn_left"] = turn_response(engine, ae, -0.3, keys=(KEY_W,))
    print(json.dumps(report, indent=1), flush=True)
    report["next_frame"] = next_frame_errors(engine, ae, args.episodes)
    print(json.dumps(report["next_frame"], indent=1), flush=True)
    report["drift"] = drift(engine, ae, args.drift_frames)
    print(json.dumps(report["drift"], indent=1), flush=True)
    if not args.skip_speed:
        report["latent_fps"] = {"eager": step_fps(args.model), "int8": step_fps(args.model, quant="int8")}
        try:
            report["latent_fps"]["int8_compile"] = step_fps(args.model, quant="int8", compile=True)
        except Exception as err:  # compile needs a C compiler; report instead of failing the run
            report["latent_fps"]["int8_compile_error"] = repr(err)[:200]
        print(json.dumps(report["latent_fps"], indent=1), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
