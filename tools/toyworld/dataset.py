"""Episodes of the toy world under a random 'sticky' player policy, and their latents.

    python -m tools.toyworld.dataset --episodes 240 --frames 64 --out /work/toyworld_data

writes shards `episodes_<first>.npz` of `--shard` episodes each: latents [E, T, C, h, w] float16, keys
[E, T, 4] uint8 (W, A, S, D), mouse_dx [E, T] float32; plus `toy_ae.safetensors` (the PCA patch AE
fitted on `--ae-episodes` episodes) unless it exists. Episode e uses world seed `seed0 + e`; several
processes with different --seed0 can fill one folder (fit the AE first with --episodes 0).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from tools.toyworld.render import World
from tools.toyworld.spec import AE_CHANNELS, AE_PATCH, KEYS

# (probability, keys held) of one policy segment
KEY_CHOICES = [(0.40, "W"), (0.06, "WA"), (0.06, "WD"), (0.16, ""), (0.12, "S"), (0.10, "A"), (0.10, "D")]


def random_actions(rng: np.random.Generator, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """keys [frames, 4] uint8 and mouse dx [frames] float32: segments of 3-12 frames of held input."""
    keys = np.zeros((frames, 4), np.uint8)
    mouse = np.zeros(frames, np.float32)
    probs = np.array([p for p, _ in KEY_CHOICES])
    f = 0
    while f < frames:
        length = int(rng.integers(3, 13))
        held = KEY_CHOICES[rng.choice(len(KEY_CHOICES), p=probs / probs.sum())][1]
        turn = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.05, 0.6) * rng.choice([-1, 1]))
        for column, name in enumerate("WASD"):
            keys[f:f + length, column] = name in held
        mouse[f:f + length] = turn + (rng.normal(0, 0.03, min(length, frames - f)) if turn else 0)
        f += length
    return keys, mouse


def play_episode(seed: int, keys: np.ndarray, mouse: np.ndarray) -> np.ndarray:
    """frames [T, 3, H, W] float32: frame t rendered after applying input t."""
    world = World(seed)
    frames = []
    for t in range(len(mouse)):
        world.step([code for column, code in enumerate(KEYS) if keys[t, column]], float(mouse[t]))
        frames.append(world.render())
    return np.stack(frames)


def make_episode(seed: int, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 7_777_777)
    keys, mouse = random_actions(rng, frames)
    return play_episode(seed, keys, mouse), keys, mouse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--seed0", type=int, default=0)
    parser.add_argument("--ae-episodes", type=int, default=40, help="episodes used to fit the PCA AE")
    parser.add_argument("--shard", type=int, default=20, help="episodes per output file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from worldengine.ae.toy import ToyPatchAE

    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ae_path = args.out / "toy_ae.safetensors"
    if not ae_path.is_file():
        fit = [make_episode(1_000_000 + e, args.frames)[0] for e in range(args.ae_episodes)]
        ToyPatchAE.fit(torch.from_numpy(np.concatenate(fit)), AE_PATCH, AE_CHANNELS).save(ae_path)
    from worldengine.ae.toy import load_toy_ae
    ae = load_toy_ae(ae_path)
    for first in range(args.seed0, args.seed0 + args.episodes, args.shard):
        latents, keys, mouse = [], [], []
        for seed in range(first, min(first + args.shard, args.seed0 + args.episodes)):
            frames, k, m = make_episode(seed, args.frames)
            with torch.no_grad():
                latents.append(ae.encode(torch.from_numpy(frames)).half().numpy())
            keys.append(k); mouse.append(m)
        np.savez(args.out / f"episodes_{first:06d}.npz", latents=np.stack(latents), keys=np.stack(keys),
                 mouse_dx=np.stack(mouse), first_seed=first)
        print(f"episodes {first}..{seed} written at {time.time() - start:.0f}s", flush=True)


def load_episodes(folder: Path) -> dict[str, np.ndarray]:
    """Every shard in `folder` concatenated: latents, keys, mouse_dx."""
    shards = [np.load(path) for path in sorted(Path(folder).glob("episodes_*.npz"))]
    if not shards:
        raise FileNotFoundError(f"no episodes_*.npz in {folder}")
    return {name: np.concatenate([s[name] for s in shards]) for name in ("latents", "keys", "mouse_dx")}

if __name__ == "__main__":
    main()
