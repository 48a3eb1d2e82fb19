"""Quality figures of a version-2 toy world model (4 frames per latent) against the game, held-out maps.

    python -m tools.toyworld.evaluate --model _work/toyworld/candidate [--episodes 4] [--strip strip.png]

- next_frame: seed 2 ground-truth latents (8 frames), then generate with the recorded controls; MSE and
  PSNR of decoded frames vs the game at 1, 16, 128 frames after the last seed frame, with the 'repeat
  the last seed frame' baseline and the autoencoder's reconstruction floor.
- response: px per frame, model vs game, for turn left / right (mouse dx -/+0.3; horizontal shift of
  the top rows, + = scene moves right), walk forward / back (W / S; vertical shift of the floor band,
  + = floor moves down) and strafe left / right (A / D; horizontal shift).
- drift: a 1000-frame random-policy rollout; pixel spread (spatial std per frame) and frame-to-frame
  change, first vs last 100 frames, vs the game; distance of the last 100 frames from their mean image.
- continuation: seeded from one held-out game frame (repeated to a latent, as `append_frames` does),
  PSNR at frame 30 against the same world vs against other worlds (is the scene still that scene?).
- reference_next_frame (with --reference, a version-1 folder): that model's next-frame figures on its own
  game, and `acceptance`: every acceptance bar of the toy world issue, pass/fail (acceptance.py).
Frames are [T, 3, H, W] float32 in [0, 1]; latents [N, 16, 9, 16].
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tools.toyworld import acceptance
from tools.toyworld.episodes import FRAMES_PER_LATENT as FPL
from tools.toyworld.episodes import HELD_OUT_SEED0, play, random_actions
from tools.toyworld.game import KEY_A, KEY_D, KEY_S, KEY_W, World
from tools.toyworld.spec import KEYS
from worldengine.ae.toy import ToyTAEDecoderStream, load_toy_ae
from worldengine.controls import Controls


def load(folder: Path):
    from worldengine.engine import load_engine

    return load_engine(folder), load_toy_ae(Path(folder) / "toy_ae.safetensors")


def controls_of(keys_row, mouse_dx: float) -> Controls:
    return Controls(frozenset(code for column, code in enumerate(KEYS) if keys_row[column]), (float(mouse_dx), 0.0))


@torch.no_grad()
def rollout(engine, ae, seed_frames: np.ndarray, seed_controls: list, controls: list, generator_seed: int = 0):
    """Seed frames [4K, 3, H, W] (+ K controls), generate len(controls) latents -> frames [4N, 3, H, W]."""
    session = engine.new_session()
    seed_latents = ae.encode(torch.from_numpy(seed_frames))
    for latent, control in zip(seed_latents, seed_controls):
        session.append_latent(latent, control)
    generator = torch.Generator().manual_seed(generator_seed)
    latents = torch.stack([session.step(control, generator=generator) for control in controls])
    stream = ToyTAEDecoderStream(ae)
    stream.decode(seed_latents)                       # the decoder's state continues from the seed
    return stream.decode(latents).numpy()


def shift(before: np.ndarray, after: np.ndarray, rows: slice, axis: int, max_shift: int = 40) -> int:
    """Integer shift s (px) minimising |after[x + s] - before[x]| along `axis` (2 = x, 1 = y) in `rows`."""
    a, b = before[:, rows], after[:, rows]
    n = a.shape[axis]
    errors = {}
    max_shift = min(max_shift, n // 2)           # keep at least half the band overlapping
    for s in range(-max_shift, max_shift + 1):
        keep_b = slice(s, None) if s >= 0 else slice(None, n + s)
        keep_a = slice(None, n - s) if s >= 0 else slice(-s, None)
        index_a, index_b = [slice(None)] * 3, [slice(None)] * 3
        index_a[axis], index_b[axis] = keep_a, keep_b
        errors[s] = np.mean((b[tuple(index_b)] - a[tuple(index_a)]) ** 2)
    return min(errors, key=errors.get)


RESPONSES = {  # name: (keys, mouse dx, rows measured, axis, frame gap between compared frames)
    "turn_left": ((), -0.3, slice(0, 86), 2, 1), "turn_right": ((), 0.3, slice(0, 86), 2, 1),
    "walk_forward": ((KEY_W,), 0.0, slice(96, 144), 1, 4), "walk_back": ((KEY_S,), 0.0, slice(96, 144), 1, 4),
    "strafe_left": ((KEY_A,), 0.0, slice(0, 86), 2, 4), "strafe_right": ((KEY_D,), 0.0, slice(0, 86), 2, 4),
}


def response(engine, ae, name: str, latents: int = 4, worlds: int = 3) -> dict:
    """Mean px per frame for one RESPONSES entry, model vs game, over a few held-out worlds."""
    keys, dx, rows, axis, gap = RESPONSES[name]
    model, game = [], []
    for w in range(worlds):
        world = World(HELD_OUT_SEED0 + 11 + w)
        world.player.yaw = _open_heading(world)
        seed = play(world, np.zeros((1, 4), np.uint8), np.zeros(1, np.float32))
        truth = play(world, np.array([[code in keys for code in KEYS]] * latents, np.uint8),
                     np.full(latents, dx, np.float32))
        generated = rollout(engine, ae, seed, [Controls()], [Controls(frozenset(keys), (dx, 0.0))] * latents, w)
        for out, frames in ((model, generated), (game, truth)):
            sequence = np.concatenate([seed[-1:], frames])
            out += [shift(a, b, rows, axis) / gap for a, b in zip(sequence[:-gap], sequence[gap:])]
    return {"model_px_per_frame": float(np.mean(model)), "game_px_per_frame": float(np.mean(game))}


def _open_heading(world: World) -> float:
    """The heading (of 16) with the farthest wall straight ahead: responses are measured looking into the map."""
    from tools.toyworld.render import cast_rays

    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False) + 0.01    # never exactly axis-aligned
    rays = np.stack([np.cos(angles), np.sin(angles)], 1)
    return float(angles[np.argmax(cast_rays(world.grid, world.player.x, world.player.y, rays)[0])])


def psnr(mse: float) -> float:
    return float(-10 * np.log10(max(mse, 1e-10)))


def next_frame_errors(engine, ae, episodes: int, context: int = 2, horizons=(1, 16, 128)) -> dict:
    out = {h: {"model": [], "repeat_last": [], "ae_floor": []} for h in horizons}
    latents = context + -(-max(horizons) // FPL)
    for e in range(episodes):
        seed = HELD_OUT_SEED0 + 1 + e
        keys, mouse = random_actions(np.random.default_rng(seed), latents)
        frames = play(World(seed), keys, mouse)
        controls = [controls_of(k, m) for k, m in zip(keys, mouse)]
        generated = rollout(engine, ae, frames[:context * FPL], controls[:context], controls[context:], e)
        with torch.no_grad():
            recon = ae.decode_sequence(ae.encode(torch.from_numpy(frames))).numpy()
        last = context * FPL - 1
        for h in horizons:
            target = frames[last + h]
            out[h]["model"].append(np.mean((generated[h - 1] - target) ** 2))
            out[h]["repeat_last"].append(np.mean((frames[last] - target) ** 2))
            out[h]["ae_floor"].append(np.mean((recon[last + h] - target) ** 2))
    return {f"h{h}": {name: {"mse": float(np.mean(v)), "psnr": psnr(np.mean(v))} for name, v in table.items()}
            for h, table in out.items()}


def drift(engine, ae, frames: int = 1000, window: int = 100) -> dict:
    seed = HELD_OUT_SEED0 + 500
    keys, mouse = random_actions(np.random.default_rng(seed), frames // FPL + 2)
    truth = play(World(seed), keys, mouse)
    controls = [controls_of(k, m) for k, m in zip(keys, mouse)]
    generated = rollout(engine, ae, truth[:2 * FPL], controls[:2], controls[2:])
    def stats(seq):
        return {"spread": float(seq.std(axis=(2, 3)).mean()), "frame_change": float(np.abs(np.diff(seq, axis=0)).mean())}
    return {"model_first": stats(generated[:window]), "model_last": stats(generated[-window:]),
            "game_last": stats(truth[-window:]), "game_all": stats(truth[2 * FPL:]),
            "model_mean_image_distance_last": float(np.abs(generated[-window:] - generated[-window:].mean(0)).mean())}


def continuation(engine, ae, worlds: int = 3, latents: int = 10, strip: Path | None = None) -> dict:
    """Seed from one held-out frame, walk forward turning slightly; PSNR at frame 30 vs same/other worlds."""
    runs = []
    for w in range(worlds):
        world = World(HELD_OUT_SEED0 + 31 + w)
        world.player.yaw = _open_heading(world)
        world.step([KEY_W], 0.0)
        seed = world.render()
        keys = np.array([[1, 0, 0, 0]] * latents, np.uint8)
        mouse = np.full(latents, -0.1, np.float32)
        truth = play(world, keys, mouse)
        generated = rollout(engine, ae, np.repeat(seed[None], FPL, 0), [Controls.from_keys(["W"])],
                            [controls_of(k, m) for k, m in zip(keys, mouse)], w)
        runs.append((seed, truth, generated))
    same = [np.mean((g[29] - t[29]) ** 2) for _, t, g in runs]
    other = [np.mean((g[29] - runs[(i + 1) % worlds][1][29]) ** 2) for i, (_, _, g) in enumerate(runs)]
    if strip is not None:
        write_strip(runs[0], strip)
    return {"psnr_frame30_same_world": psnr(np.mean(same)), "psnr_frame30_other_world": psnr(np.mean(other))}


def write_strip(run, path: Path, picks=(0, 10, 20, 30, 39)) -> None:
    """PNG: game (top row) vs model (bottom row) at the picked frames after the seed frame (left)."""
    from PIL import Image

    seed, truth, generated = run
    top = np.concatenate([seed] + [truth[i] for i in picks], 2)
    bottom = np.concatenate([seed] + [generated[i] for i in picks], 2)
    image = np.concatenate([top, bottom], 1).transpose(1, 2, 0)
    Image.fromarray((image * 255).round().clip(0, 255).astype(np.uint8)).save(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--drift-frames", type=int, default=1000)
    parser.add_argument("--strip", type=Path, help="also write the seed-continuation strip (PNG)")
    parser.add_argument("--skip", default="", help="comma list of sections to skip")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference", type=Path, help="version-1 model folder to compare next-frame PSNR with")
    parser.add_argument("--out", type=Path, help="also write the report as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    engine, ae = load(args.model)
    skip = set(args.skip.split(","))
    report = {"model": str(args.model)}
    sections = {"response": lambda: {name: response(engine, ae, name) for name in RESPONSES},
                "next_frame": lambda: next_frame_errors(engine, ae, args.episodes),
                "drift": lambda: drift(engine, ae, args.drift_frames),
                "continuation": lambda: continuation(engine, ae, strip=args.strip)}
    for name, run in sections.items():
        if name not in skip:
            report[name] = run()
            print(json.dumps({name: report[name]}), flush=True)
    if args.reference is not None:
        report["reference_next_frame"] = acceptance.reference_next_frame(args.reference, args.episodes)
    report["acceptance"] = acceptance.verdict(report)
    print(json.dumps(report))
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
