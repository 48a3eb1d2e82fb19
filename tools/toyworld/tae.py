"""The toy world's autoencoder, version 2: a tiny temporal conv autoencoder, 4 frames per latent.

Shaped like TAEHV 1.5 at toy size: 4 RGB frames [4, 3, 144, 256] in [0, 1] <-> one latent
[16, 9, 16] (16x spatial, 4x temporal compression). The encoder is causal per latent (a latent sees
only its own 4 frames). The decoder is a stream: latent t is decoded together with latent t-1 (its
state), so frames stay continuous across latent boundaries; the first latent of a stream uses itself
as its predecessor. Latents are divided by one global `scale` (their RMS over training data), so they
have unit variance on average and latent MSE stays proportional to what is visible.

File `toy_ae.safetensors`: the conv weights plus `scale` [1], metadata {"format": "waypoint-toy-ae/2",
"height", "width", "frames_per_latent", "channels", "width_mult"}. ~0.8M parameters (fp16 on disk).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

TOY_TAE_FORMAT = "waypoint-toy-ae/2"
FRAMES, SPATIAL, CHANNELS = 4, 16, 16


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, k // 2)


class Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.a, self.b = _conv(width, width), _conv(width, width)

    def forward(self, x):
        return x + self.b(F.relu(self.a(F.relu(x))))


class ToyTAE(nn.Module):
    """frames [4N, 3, H, W] in [0, 1] <-> latents [N, C, H/16, W/16] (unit RMS)."""

    def __init__(self, pixel_size=(144, 256), channels: int = CHANNELS, width: int = 64):
        super().__init__()
        self.pixel_size = (int(pixel_size[0]), int(pixel_size[1]))
        self.latent_channels, self.frames_per_latent, self.width_mult = channels, FRAMES, width
        self.latent_hw = (self.pixel_size[0] // SPATIAL, self.pixel_size[1] // SPATIAL)
        w = width
        packed = FRAMES * 3 * 16            # 4 frames, pixel-unshuffled by 4
        self.encoder = nn.Sequential(
            _conv(packed, w, 1), nn.ReLU(), _conv(w, 3 * w // 2, 3, 2), Residual(3 * w // 2),
            _conv(3 * w // 2, 2 * w, 3, 2), Residual(2 * w), _conv(2 * w, channels, 1))
        self.dec_in = nn.Sequential(_conv(2 * channels, 2 * w), Residual(2 * w))
        self.dec_mid = nn.Sequential(_conv(2 * w, 3 * w // 2), Residual(3 * w // 2))
        self.dec_out = nn.Sequential(_conv(3 * w // 2, w), nn.ReLU(), _conv(w, w), nn.ReLU(), _conv(w, packed, 1))
        self.register_buffer("scale", torch.ones(1))

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [4N, 3, H, W] in [0, 1] -> latents [N, C, h, w]."""
        t, _, h, w = frames.shape
        if t % FRAMES or (h, w) != self.pixel_size:
            raise ValueError(f"toy AE encodes [4N, 3, {self.pixel_size[0]}, {self.pixel_size[1]}] frames, "
                             f"got {list(frames.shape)}")
        x = F.pixel_unshuffle(frames.to(self.scale.dtype) * 2 - 1, 4)       # [4N, 48, H/4, W/4]
        x = x.view(t // FRAMES, FRAMES * 48, h // 4, w // 4)
        return self.encoder(x) / self.scale

    def decode_pair(self, latent: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """latents [N, C, h, w] with their predecessors [N, C, h, w] -> frames [4N, 3, H, W] in [0, 1]."""
        x = self.dec_in(torch.cat([latent, previous], 1) * self.scale)
        x = self.dec_mid(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.dec_out(F.interpolate(x, scale_factor=2.0, mode="nearest"))   # [N, 4*48, H/4, W/4]
        n, _, h4, w4 = x.shape
        frames = F.pixel_shuffle(x.view(n * FRAMES, 48, h4, w4), 4)
        return torch.sigmoid(frames)

    def decode_sequence(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [N, C, h, w] of one stream from its start -> frames [4N, 3, H, W]."""
        return self.decode_pair(latents, torch.cat([latents[:1], latents[:-1]]))


class ToyTAEDecoderStream:
    """latent [C, h, w] or [N, C, h, w] -> 4 frames per latent; state: the last latent decoded."""

    def __init__(self, model: ToyTAE):
        self.model = model
        self.reset()

    def reset(self) -> None:
        self.previous: torch.Tensor | None = None
        self.frames_out = 0

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = (latents[None] if latents.ndim == 3 else latents).to(self.model.scale.dtype)
        first = latents[:1] if self.previous is None else self.previous[None]
        frames = self.model.decode_pair(latents, torch.cat([first, latents[:-1]]))
        self.previous = latents[-1].clone()
        self.frames_out += frames.shape[0]
        return frames

    def get_state(self) -> dict:
        state = {"frames_out": self.frames_out}
        if self.previous is not None:
            state["previous"] = self.previous.clone()
        return state

    def load_state(self, state: dict) -> None:
        previous = state.get("previous")
        self.previous = None if previous is None else previous.to(self.model.scale.dtype).clone()
        frames_out = state.get("frames_out", 0)
        self.frames_out = int(frames_out.item() if isinstance(frames_out, torch.Tensor) else frames_out)


def save_tae(model: ToyTAE, path: str | Path, dtype=torch.float16) -> None:
    from safetensors.torch import save_file

    metadata = {"format": TOY_TAE_FORMAT, "height": str(model.pixel_size[0]), "width": str(model.pixel_size[1]),
                "frames_per_latent": str(FRAMES), "channels": str(model.latent_channels),
                "width_mult": str(model.width_mult)}
    tensors = {k: v.detach().to(dtype if k != "scale" else torch.float32).contiguous()
               for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)


def load_tae(path: str | Path, device="cpu", dtype=torch.float32) -> ToyTAE:
    """Read a version-2 `toy_ae.safetensors` (ValueError naming the file when it is not one)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    if metadata.get("format") != TOY_TAE_FORMAT:
        raise ValueError(f"{path}: not a version-2 toy autoencoder (format {metadata.get('format')!r})")
    model = ToyTAE((int(metadata["height"]), int(metadata["width"])), int(metadata["channels"]),
                   int(metadata["width_mult"]))
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.to(device=device, dtype=dtype).eval()
