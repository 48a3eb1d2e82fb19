"""What a live session shows: renderers (latent -> RGB frames) and the image encoder for the wire.

Two renderers, same interface `render(latent) -> frames [k, 3, H, W] float32 in [0, 1] on CPU`:
- `LatentPreview`: a false-colour view of the latent itself (a fixed projection of the C channels to
  RGB, nearest-upscaled). Costs microseconds, so live play stays real time on a CPU without the
  autoencoder (or with one too slow to decode every frame).
- `DecoderPreview`: the model's own decoder stream (TAEHV 1.5: 4 frames per latent). The stream is
  causal, so it must see every latent of the world in order; it is given one already positioned at
  the world's current frame.

`encode_image` turns one frame into JPEG / WebP bytes with Pillow, resized to fit the widget.
"""
from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from worldengine.errors import WaypointError

FORMATS = {"jpeg": "JPEG", "webp": "WEBP"}
MIME = {"jpeg": "image/jpeg", "webp": "image/webp"}
MAX_SIDE = 4096


class LatentPreview:
    """False-colour latent preview: RGB = tanh(P @ latent / scale) mapped to [0, 1], upscaled.

    The projection P [3, C] is fixed (seeded), so equal latents always look equal and a change in
    any channel shows. Output size is (h * upscale, w * upscale)."""

    frames_per_latent = 1

    def __init__(self, channels: int, upscale: int = 8, seed: int = 0):
        if channels < 1 or upscale < 1:
            raise WaypointError(f"LatentPreview needs channels >= 1 and upscale >= 1, got {channels}, {upscale}")
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(3, channels, generator=generator)
        self.projection = projection / projection.norm(dim=1, keepdim=True)
        self.upscale = upscale

    def render(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [C, h, w] float -> frames [1, 3, h*upscale, w*upscale] float32 in [0, 1]."""
        if latent.ndim != 3 or latent.shape[0] != self.projection.shape[1]:
            raise WaypointError(f"LatentPreview expects a latent [{self.projection.shape[1]}, h, w], "
                                f"got {list(latent.shape)}")
        rgb = torch.einsum("kc,chw->khw", self.projection, latent.detach().float().cpu())
        rgb = torch.tanh(rgb / 1.5) * 0.5 + 0.5
        return F.interpolate(rgb[None], scale_factor=self.upscale, mode="nearest")


class DecoderPreview:
    """Frames from a decoder stream (any object with `decode(latent [C,h,w]) -> [k,3,H,W]`)."""

    def __init__(self, decoder, frames_per_latent: int):
        self.decoder = decoder
        self.frames_per_latent = frames_per_latent

    def render(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(latent).float().cpu().clamp(0, 1)


def fit_size(height: int, width: int, max_width: int, max_height: int) -> tuple[int, int]:
    """(h, w) scaled down (never up) to fit max_width x max_height, aspect kept, at least 1 px."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(1, round(height * scale)), max(1, round(width * scale))


def encode_image(frame: torch.Tensor, fmt: str = "jpeg", quality: int = 80,
                 max_width: int = MAX_SIDE, max_height: int = MAX_SIDE) -> bytes:
    """frame [3, H, W] float in [0, 1] -> JPEG / WebP bytes, shrunk to fit max_width x max_height."""
    from PIL import Image

    if fmt not in FORMATS:
        raise WaypointError(f"image format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise WaypointError(f"frame must be [3, H, W], got {list(frame.shape)}")
    pixels = (frame.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    image = Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB")
    height, width = fit_size(image.height, image.width, max_width, max_height)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, FORMATS[fmt], quality=int(quality))
    return buffer.getvalue()


class RecentFrames:
    """The images a live session showed in its last `seconds` (encoded bytes + perf_counter time),
    for "export the last N seconds". Bounded by time and by `max_bytes`; thread-safe."""

    def __init__(self, seconds: float = 30.0, max_bytes: int = 64 * 2 ** 20):
        import collections
        import threading
        self.seconds, self.max_bytes = seconds, max_bytes
        self._items = collections.deque()     # (time, bytes)
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, images: list, now: float) -> None:
        with self._lock:
            for image in images:
                self._items.append((now, image))
                self._bytes += len(image)
            while self._items and (now - self._items[0][0] > self.seconds or self._bytes > self.max_bytes):
                self._bytes -= len(self._items.popleft()[1])

    def clip(self, seconds: float) -> tuple[list, float]:
        """(images of the last `seconds`, their frames per second as shown)."""
        with self._lock:
            items = list(self._items)
        if not items:
            return [], 0.0
        items = [item for item in items if items[-1][0] - item[0] <= seconds]
        span = items[-1][0] - items[0][0]
        fps = (len(items) - 1) / span if span > 0 else 1.0
        return [image for _, image in items], max(1.0, min(120.0, fps))


def decode_images(images: list) -> torch.Tensor:
    """Encoded images -> [T, H, W, 3] uint8, every frame resized to the last one's size."""
    import numpy as np
    from PIL import Image

    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in images]
    size = pictures[-1].size
    arrays = [np.asarray(p if p.size == size else p.resize(size, Image.BILINEAR)) for p in pictures]
    return torch.from_numpy(np.stack(arrays))
