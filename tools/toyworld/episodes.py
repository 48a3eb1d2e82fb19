"""Episodes of the version-2 toy world under a random 'sticky' policy, one control set per latent.

A latent covers FRAMES_PER_LATENT = 4 frames; the engine takes one `Controls` per latent, so the
policy holds each input for whole latents. Seeds: training worlds < 900 000, held-out worlds
900 000..999 999 (metrics only), AE fitting 1 000 000+.

    python -m tools.toyworld.episodes --ae _work/toyworld/toy_ae.safetensors --out _work/toyworld/data \
        --episodes 400 --latents 32

writes shards `latents_<first>.npz`: latents [E, N, C, h, w] float16, keys [E, N, 4] uint8 (W, A, S, D),
mouse_dx [E, N] float32; episode e uses world seed e. Existing shards are kept (resumable).
`--first F --policy walk` adds episodes F.. (new worlds) under WALK_CHOICES: walking forward and back
with little turning. Under the default policy a turn (up to 6 px a frame) accompanies 60 % of the
latents and outweighs the floor's 1.2 px a frame of walking in the loss; the third run's model
learned to turn but hardly to walk.
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
WALK_CHOICES = [(0.38, "W"), (0.30, "S"), (0.16, ""), (0.04, "WA"), (0.04, "WD"), (0.04, "A"), (0.04, "D")]
POLICIES = {"mixed": (KEY_CHOICES, 0.4), "walk": (WALK_CHOICES, 0.8)}     # (key segments, P(no turn))


def random_actions(rng: np.random.Generator, latents: int, policy: str = "mixed") -> tuple[np.ndarray, np.ndarray]:
    """keys [latents, 4] uint8 and mouse dx [latents] float32: segments of 1-4 latents of held input."""
    choices, still = POLICIES[policy]
    keys = np.zeros((latents, 4), np.uint8)
    mouse = np.zeros(latents, np.float32)
    probs = np.array([p for p, _ in choices])
    n = 0
    while n < latents:
        length = int(rng.integers(1, 5))
        held = choices[rng.choice(len(choices), p=probs / probs.sum())][1]
        turn = 0.0 if rng.random() < still else float(rng.uniform(0.05, 0.6) * rng.choice([-1, 1]))
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


def make_episode(seed: int, latents: int, policy: str = "mixed") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames [4N, 3, H, W] float32, keys [N, 4], mouse_dx [N]) of world `seed`."""
    keys, mouse = random_actions(np.random.default_rng(seed + 7_777_777), latents, policy)
    return play(World(seed), keys, mouse), keys, mouse


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ae", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--latents", type=int, default=32, help="latents (x4 frames) per episode")
    parser.add_argument("--shard", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--first", type=int, default=0, help="first episode (world seed) to write")
    parser.add_argument("--policy", choices=sorted(POLICIES), default="mixed")
    args = parser.parse_args(argv)
    if not 0 <= args.first < HELD_OUT_SEED0 - args.episodes:
        raise SystemExit(f"--first {args.first}: training worlds must stay below the held-out seeds {HELD_OUT_SEED0}")
    from worldengine.ae.toy import load_toy_ae

    torch.set_num_threads(args.threads)
    ae = load_toy_ae(args.ae)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    end = args.first + args.episodes
    for first in range(args.first, end, args.shard):
        path = args.out / f"latents_{first:06d}.npz"
        if path.is_file():
            continue
        latents, keys, mouse = [], [], []
        for seed in range(first, min(first + args.shard, end)):
            frames, k, m = make_episode(seed, args.latents, args.policy)
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
