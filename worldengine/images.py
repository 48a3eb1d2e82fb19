"""Image conversions between ComfyUI and the engine, and fitting input to a model's pixel size.

Layouts:
- ComfyUI IMAGE: [B, H, W, 3] float32 in [0, 1] on CPU (a single [H, W, 3] image is accepted too);
  uint8 arrays/tensors in the same layouts are accepted as input and divided by 255.
- engine frames: [T, 3, H, W] float in [0, 1].
- uint8 output: [T, H, W, 3], round(clamp(x, 0, 1) * 255).

Waypoint models see 16:9 content: Waypoint-1 at 360x640, Waypoint-1.5 squeezed to 256x512 (360P) or
512x1024 (720P) and shown again at 360x640 / 720x1280. Resizes are bilinear with align_corners False,
as in the reference engine.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from worldengine.errors import WaypointError
from worldengine.options import FitMode

CONTENT_ASPECT = 16 / 9
_ASPECT_TOLERANCE = 0.01  # relative; 854x480 counts as 16:9
# TAEHV pixel size -> the 16:9 size the reference engine shows its output at
DISPLAY_SIZES = {(256, 512): (360, 640), (512, 1024): (720, 1280)}


def _as_tensor(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(image))
    if isinstance(image, torch.Tensor):
        return image
    raise WaypointError(f"expected an image tensor or numpy array, got {type(image).__name__}")


def to_frames(image) -> torch.Tensor:
    """ComfyUI IMAGE [B, H, W, 3] (or [H, W, 3]; float 0..1 or uint8) -> frames [B, 3, H, W] float32 0..1."""
    x = _as_tensor(image)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise WaypointError(f"expected an RGB image [B, H, W, 3] (3 channels last), got shape "
                            f"{tuple(x.shape)}; convert RGBA or grey images to RGB first")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise WaypointError(f"empty image batch, shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif x.is_floating_point():
        x = x.float().clamp(0, 1)
    else:
        raise WaypointError(f"image dtype must be uint8 or float, got {x.dtype}")
    return x.permute(0, 3, 1, 2).contiguous()


def to_comfy(frames: torch.Tensor) -> torch.Tensor:
    """frames [T, 3, H, W] -> ComfyUI IMAGE [T, H, W, 3] float32 in [0, 1], CPU, contiguous."""
    _check_frames(frames)
    return frames.detach().float().clamp(0, 1).permute(0, 2, 3, 1).contiguous().cpu()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    """frames [T, 3, H, W] -> [T, H, W, 3] uint8 = round(clamp(x, 0, 1) * 255)."""
    _check_frames(frames)
    scaled = (frames.detach().float().clamp(0, 1) * 255).round()
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()


def _check_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
        shape = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise WaypointError(f"expected frames [T, 3, H, W], got {shape}")


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners False, no antialias, as the reference) of frames to size (H, W)."""
    _check_frames(frames)
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=tuple(size), mode="bilinear", align_corners=False)


def aspect_matches(h: int, w: int, aspect: float) -> bool:
    """Whether an h x w picture has this aspect (w / h) within 1 %."""
    return abs(w / h - aspect) <= _ASPECT_TOLERANCE * aspect


def content_aspect(size: tuple[int, int]) -> float:
    """The aspect of the picture a model of pixel size (H, W) shows: 16:9 for Waypoint sizes, else W/H."""
    h, w = size
    if tuple(size) in DISPLAY_SIZES or aspect_matches(h, w, CONTENT_ASPECT):
        return CONTENT_ASPECT
    return w / h


def _centre_crop(frames: torch.Tensor, aspect: float) -> torch.Tensor:
    h, w = frames.shape[-2:]
    if w / h > aspect:
        new_w = max(1, round(h * aspect))
        left = (w - new_w) // 2
        return frames[..., left:left + new_w]
    new_h = max(1, round(w / aspect))
    top = (h - new_h) // 2
    return frames[..., top:top + new_h, :]


def _letterbox(frames: torch.Tensor, aspect: float) -> torch.Tensor:
    h, w = frames.shape[-2:]
    if w / h > aspect:
        extra = max(0, round(w / aspect) - h)
        return F.pad(frames, (0, 0, extra // 2, extra - extra // 2))
    extra = max(0, round(h * aspect) - w)
    return F.pad(frames, (extra // 2, extra - extra // 2, 0, 0))


def fit_frames(frames: torch.Tensor, size: tuple[int, int], mode: FitMode | str = FitMode.ERROR) -> torch.Tensor:
    """Fit frames [T, 3, h, w] to the model's pixel size (H, W).

    Same size: unchanged. Input with the model's content aspect (16:9 for Waypoint models) or the
    exact target aspect: plain bilinear resize, as the reference does. Anything else follows `mode`.
    """
    _check_frames(frames)
    mode = FitMode.parse(mode)
    h, w = frames.shape[-2:]
    if (h, w) == tuple(size):
        return frames
    aspect = content_aspect(size)
    if aspect_matches(h, w, aspect) or aspect_matches(h, w, size[1] / size[0]) or mode is FitMode.STRETCH:
        return resize_frames(frames, size)
    if mode is FitMode.CROP:
        return resize_frames(_centre_crop(frames, aspect), size)
    if mode is FitMode.PAD:
        return resize_frames(_letterbox(frames, aspect), size)
    raise WaypointError(f"the image is {w}x{h} ({_ratio(w / h)}) but the model takes {_ratio(aspect)} at "
                        f"{size[1]}x{size[0]}; choose a fit mode: crop (centre crop), stretch (distort) or pad (black bars)")


_NAMED_RATIOS = {"16:9": 16 / 9, "4:3": 4 / 3, "3:2": 3 / 2, "1:1": 1.0, "9:16": 9 / 16, "3:4": 3 / 4}


def _ratio(aspect: float) -> str:
    """An aspect (w / h) as people write it: "16:9" for the usual ones, else "2.00:1"."""
    for name, value in _NAMED_RATIOS.items():
        if abs(aspect - value) <= _ASPECT_TOLERANCE * value:
            return name
    return f"{aspect:.2f}:1"


def display_size(pixel_size: tuple[int, int]) -> tuple[int, int]:
    """Size (H, W) the reference shows frames of a model with this pixel size at (360P/720P -> 16:9)."""
    return DISPLAY_SIZES.get(tuple(pixel_size), tuple(pixel_size))


def to_display(frames: torch.Tensor) -> torch.Tensor:
    """Resize decoded frames [T, 3, H, W] to their display size (bilinear) and clamp to [0, 1]."""
    return resize_frames(frames, display_size(tuple(frames.shape[-2:]))).clamp(0, 1)
