"""Episodes of the version-2 toy world under a random 'sticky' policy, one control set per latent.

A latent covers FRAMES_PER_LATENT = 4 frames; the engine takes one `Controls` per latent, so the
policy holds each input for whole latents. Seeds: training worlds < 900 000, held-out worlds
900 000..999 999 (metrics only), AE fitting 1 000 000+.

    python -m tools.toyworld.episodes --ae _work/toyworld/toy_ae.safetensors --out _work/toyworld/data \
        --episodes 400 --latents 32

writes shards `latents_<first>.npz`: latents [E, N, C, h, w] float16, keys [E, N, 4] uint8 (W, A, S, D),
mouse_dx [E, N] float32; episode e uses world seed e. Existing shards are kept (resumable).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from tools.toyworld.game import World
from tools.toyworld.spec import KEYS

FRAMES_PER_LATENT = 4
HELD_OUT_SEED0, AE_SEED0 = 900_000, 1_000_000
# (probability, keys held) of one policy segment
KEY_CHOICES = [(0.40, "W"), (0.06, "WA"), (0.06, "WD"), (0.16, ""), (0.12, "S"), (0.10, "A"), (0.10, "D")]


def random_actions(rng: np.random.Generator, latents: int) -> tuple[np.ndarray, np.ndarray]:
    """keys [latents, 4] uint8 and mouse dx [latents] float32: segments of 1-4 latents of held input."""
    keys = np.zeros((latents, 4), np.uint8)
    mouse = np.zeros(latents, np.float32)
    probs = np.array([p for p, _ in KEY_CHOICES])
    n = 0
    while n < latents:
        length = int(rng.integers(1, 5))
        held = KEY_CHOICES[rng.choice(len(KEY_CHOICES), p=probs / probs.sum())][1]
        turn = 0.0 if rng.random() < 0.4 else float(rng.uniform(0.05, 0.6) * rng.choice([-1, 1]))
        for column, name in enumerate("WASD"):
            keys[n:n + length, column] = name in held
        mouse[n:n + length] = turn
        n += length
    return keys, mouse


def play(world: World, keys: np.ndarray, mouse: np.ndarray) -> np.ndarray:
    """frames [4N, 3, H, W] float32 in [0, 1]: latent n's input applied before each of its 4 frames."""
    frames = []
    for n in range(len(mouse)):
        buttons = [code for column, code in enumerate(KEYS) if keys[n, column]]
        for _ in range(FRAMES_PER_LATENT):
            world.step(buttons, float(mouse[n]))
            frames.append(world.render())
    return np.stack(frames)


def make_episode(seed: int, latents: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames [4N, 3, H, W] float32, keys [N, 4], mouse_dx [N]) of world `seed`."""
    keys, mouse = random_actions(np.random.default_rng(seed + 7_777_777), latents)
    return play(World(seed), keys, mouse), keys, mouse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ae", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--latents", type=int, default=32, help="latents (x4 frames) per episode")
    parser.add_argument("--shard", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    from worldengine.ae.toy import load_toy_ae

    torch.set_num_threads(args.threads)
    ae = load_toy_ae(args.ae)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    for first in range(0, args.episodes, args.shard):
        path = args.out / f"latents_{first:06d}.npz"
        if path.is_file():
            continue
        latents, keys, mouse = [], [], []
        for seed in range(first, min(first + args.shard, args.episodes)):
            frames, k, m = make_episode(seed, args.latents)
            with torch.no_grad():
                latents.append(ae.encode(torch.from_numpy(frames)).half().numpy())
            keys.append(k)
            mouse.append(m)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, latents=np.stack(latents), keys=np.stack(keys), mouse_dx=np.stack(mouse))
        partial.replace(path)
        print(f"episodes {first}..{seed} written at {time.time() - start:.0f}s", flush=True)


def load_latents(folder: Path) -> dict[str, np.ndarray]:
    """Every shard in `folder` concatenated: latents, keys, mouse_dx."""
    shards = [np.load(path) for path in sorted(Path(folder).glob("latents_*.npz")) if "partial" not in path.name]
    if not shards:
        raise FileNotFoundError(f"no latents_*.npz in {folder}")
    return {name: np.concatenate([s[name] for s in shards]) for name in ("latents", "keys", "mouse_dx")}


if __name__ == "__main__":
    main()
