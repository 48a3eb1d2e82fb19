"""Write frames as a video (.mp4 via PyAV when installed, .gif/.webp via Pillow) or PNG files."""
from __future__ import annotations

from pathlib import Path

import torch

from worldengine.errors import WaypointError


def write_frames(frames_uint8: torch.Tensor, out: str | Path, fps: float = 60.0) -> Path:
    """frames_uint8: [T, H, W, 3] uint8. `out` ending in .mp4/.gif/.webp is a video, else a folder of PNGs."""
    out = Path(out)
    if frames_uint8.ndim != 4 or frames_uint8.shape[-1] != 3 or frames_uint8.dtype != torch.uint8:
        raise WaypointError(f"frames must be [T, H, W, 3] uint8, got {list(frames_uint8.shape)} {frames_uint8.dtype}")
    suffix = out.suffix.lower()
    if suffix == ".mp4":
        return _write_mp4(frames_uint8, out, fps)
    if suffix in (".gif", ".webp"):
        return _write_animation(frames_uint8, out, fps)
    if suffix:
        raise WaypointError(f"unknown output type {suffix!r}: use .mp4, .gif, .webp or a folder name")
    return _write_pngs(frames_uint8, out)


def _write_pngs(frames, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame.numpy()).save(folder / f"frame_{index:05d}.png")
    return folder


def _write_animation(frames, path: Path, fps: float) -> Path:
    from PIL import Image

    images = [Image.fromarray(frame.numpy()) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    return path


def _write_mp4(frames, path: Path, fps: float) -> Path:
    try:
        import av
    except ImportError:
        raise WaypointError("writing .mp4 needs PyAV (pip install av); or write .gif/.webp or a folder of PNGs") from None
    from fractions import Fraction

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2   # yuv420p needs even sizes
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",
                                      rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for frame in frames:
            video_frame = av.VideoFrame.from_ndarray(frame[:height, :width].contiguous().numpy(), format="rgb24")
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path
