"""Offline rollouts: seed image + control track → video frames; the default-model fallback chain."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import torch

from worldengine.controls import Controls, ControlTrack
from worldengine.errors import WaypointError


def default_track(frames: int, seed: int = 0) -> ControlTrack:
    """Walk forward for the first half, then keep walking while turning left."""
    walk = Controls.from_keys(["W"])
    turn = Controls.from_keys(["W"], mouse=(-0.3, 0.0))
    return ControlTrack(tuple(walk if i < frames // 2 else turn for i in range(frames)), seed)


def seed_frames_from_file(path: str | Path | None, pixel_size: tuple[int, int]) -> torch.Tensor:
    """[1, 3, H, W] float in [0, 1] from an image file, or a synthetic horizon when no file is given."""
    if path is None:
        height, width = pixel_size
        rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
        sky = torch.stack([0.4 + 0.3 * (1 - rows), 0.6 + 0.2 * (1 - rows), 0.9 * torch.ones_like(rows)])
        ground = torch.stack([0.3 * torch.ones_like(rows), 0.5 * rows, 0.2 * torch.ones_like(rows)])
        return torch.where(rows < 0.5, sky, ground)[None]
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path).convert("RGB")
    except (OSError, UnidentifiedImageError) as err:
        raise WaypointError(f"cannot read seed image {path}: {err}") from None
    import numpy as np

    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


def rollout_chunks(engine, seed: torch.Tensor, track: ControlTrack, fit: str = "error",
                   prompt_emb: torch.Tensor | None = None, progress=None) -> Iterator[torch.Tensor]:
    """Seed a fresh world, step it along `track`, and yield each decoded chunk as soon as it exists:
    uint8 frames [t, H, W, 3] (the seed latent's frames first, then `frames_per_latent` per step), so
    a caller can write them out without holding the whole rollout. `progress(done, total)` after each step."""
    from worldengine.images import to_uint8

    session = engine.new_session()
    if engine.config.has_prompt:
        if prompt_emb is None:
            raise WaypointError("this model is text-conditioned: give a prompt embedding")
        session.set_prompt(prompt_emb)
    ae = engine.require_autoencoder()
    codec = ae.codec()
    seed_latents = codec.encode(ae.seed_frames(seed), fit)
    session.append_latents(seed_latents)
    generator = torch.Generator().manual_seed(track.seed)
    yield to_uint8(codec.decode(seed_latents))
    for index, controls in enumerate(track.frames):
        yield to_uint8(codec.decode(session.step(controls, generator=generator)))
        if progress:
            progress(index + 1, len(track))


def rollout_frames(engine, seed: torch.Tensor, track: ControlTrack, fit: str = "error",
                   prompt_emb: torch.Tensor | None = None, progress=None) -> torch.Tensor:
    """The whole rollout of `rollout_chunks` at once: uint8 frames [T, H, W, 3] (seed frames first)."""
    return torch.cat(list(rollout_chunks(engine, seed, track, fit, prompt_emb, progress)))


def playback_fps(engine) -> float:
    """Video frames per second the model was trained at: its latent rate (inference_fps /
    temporal_compression, e.g. 60 / 4 = 15 on Waypoint-1.5) times the frames each latent decodes to."""
    config = engine.config
    return config.inference_fps / config.temporal_compression * engine.require_autoencoder().frames_per_latent


class ProgressBar:
    """A tqdm bar over the latent steps on stderr, shown from the first finished step (so an error
    before that prints alone); call it as `progress(done, total)`, `close()` when done or failed."""

    def __init__(self, total: int, desc: str = "[worldengine] rollout"):
        self.total, self.desc, self._bar = total, desc, None

    def __call__(self, done: int, total: int):
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def close(self):
        if self._bar is not None:
            self._bar.close()
