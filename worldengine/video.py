"""Write frames as a video (.mp4 via PyAV, .gif/.webp via Pillow) or a folder of PNG files.

`open_writer` checks the output name and the packages it needs before anything is generated, and
returns a writer that takes frames as they are decoded, so a long rollout does not hold its frames:
PNG folders, GIF and MP4 write each chunk at once (memory stays flat); WebP keeps every frame until
`close()` because Pillow's WebP encoder needs them all at once.
"""
from __future__ import annotations

from pathlib import Path

import torch

from worldengine.errors import WaypointError

FORMATS = {".mp4": "MP4 video (needs PyAV: pip install 'comfyui-waypoint[video]' or pip install av)",
           ".gif": "animated GIF (at most 50 fps)", ".webp": "animated WebP (keeps all frames in memory until the end)",
           "": "a folder of PNG files (frame_00000.png, ...)"}


def _check(frames: torch.Tensor):
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise WaypointError(f"frames must be [T, H, W, 3] uint8, got {list(frames.shape)} {frames.dtype}")


class FrameWriter:
    """Takes uint8 frames [T, H, W, 3] chunk by chunk (`write`), finishes the file on `close()`."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps, self.count = path, fps, 0

    def write(self, frames: torch.Tensor) -> None:
        _check(frames)
        for frame in frames:
            self._frame(frame.numpy())
            self.count += 1

    def _frame(self, rgb) -> None:
        raise NotImplementedError

    def close(self) -> Path:
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _PngWriter(FrameWriter):
    def _frame(self, rgb):
        from PIL import Image

        self.path.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(self.path / f"frame_{self.count:05d}.png")


class _GifWriter(FrameWriter):
    """Writes each frame (own 256-colour palette) as it comes, with Pillow's GIF header/frame encoders."""

    def __init__(self, path: Path, fps: float):
        super().__init__(path, fps)
        self._file = None

    def _frame(self, rgb):
        from PIL import GifImagePlugin, Image

        picture = Image.fromarray(rgb).quantize(256)
        # GIF delays are whole 1/100 s and browsers slow anything under 2/100 s down to 1/10 s:
        # 60 fps plays at 50 fps, 15 fps at 1/0.07 s.
        duration = max(2, round(100 / self.fps)) * 10
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
            header, _ = GifImagePlugin.getheader(picture, info={"loop": 0, "duration": duration})
            self._file.write(b"".join(header))
        for chunk in GifImagePlugin.getdata(picture, duration=duration, include_color_table=True):
            self._file.write(chunk)

    def close(self) -> Path:
        if self._file is not None:
            self._file.write(b";")   # GIF trailer
            self._file.close()
            self._file = None
        return self.path


class _WebpWriter(FrameWriter):
    def __init__(self, path: Path, fps: float):
        super().__init__(path, fps)
        self._images = []

    def _frame(self, rgb):
        from PIL import Image

        self._images.append(Image.fromarray(rgb))

    def close(self) -> Path:
        if self._images:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            first, *rest = self._images
            first.save(self.path, save_all=True, append_images=rest, duration=round(1000 / self.fps), loop=0)
            self._images = []
        return self.path


class _Mp4Writer(FrameWriter):
    """H.264 (mpeg4 where libx264 is missing) yuv420p; odd sizes lose their last row/column."""

    def __init__(self, path: Path, fps: float):
        super().__init__(path, fps)
        self._container = self._stream = None

    def _frame(self, rgb):
        import av

        if self._container is None:
            from fractions import Fraction

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
            codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1000))
            self._stream.width, self._stream.height = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2
            self._stream.pix_fmt = "yuv420p"
        even = rgb[: self._stream.height, : self._stream.width].copy()
        self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))

    def close(self) -> Path:
        if self._container is not None:
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None
        return self.path


_WRITERS = {".mp4": _Mp4Writer, ".gif": _GifWriter, ".webp": _WebpWriter, "": _PngWriter}


def check_output(out: str | Path) -> str:
    """The output kind of `out` (its lower-case suffix, "" for a PNG folder); raises WaypointError for
    an unknown extension, a missing package or a name taken by the other kind (file vs folder)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in _WRITERS:
        kinds = ", ".join(f"{s or 'no extension'}: {what}" for s, what in FORMATS.items())
        raise WaypointError(f"cannot write {out.name!r}: unknown output type {suffix!r} (use {kinds})")
    if suffix == ".mp4":
        try:
            import av  # noqa: F401 (checked here so a missing PyAV fails before the rollout)
        except ImportError:
            raise WaypointError(f"writing {out.name!r} needs PyAV: pip install 'comfyui-waypoint[video]' "
                                "(or pip install av); or write .gif/.webp or a folder of PNGs") from None
    if out.exists() and (out.is_dir() != (suffix == "")):
        raise WaypointError(f"cannot write {out}: it exists and is a {'folder' if out.is_dir() else 'file'}")
    return suffix


def open_writer(out: str | Path, fps: float) -> FrameWriter:
    """A writer for `out` (.mp4/.gif/.webp, or a folder for PNGs) at `fps` frames per second; checks
    `out` first (see `check_output`), so nothing is generated for an output that cannot be written."""
    suffix = check_output(out)
    if not fps > 0:
        raise WaypointError(f"fps must be > 0, got {fps}")
    return _WRITERS[suffix](Path(out), fps)


def write_frames(frames_uint8: torch.Tensor, out: str | Path, fps: float = 60.0) -> Path:
    """frames_uint8: [T, H, W, 3] uint8. `out` ending in .mp4/.gif/.webp is a video, else a folder of PNGs."""
    _check(frames_uint8)
    writer = open_writer(out, fps)
    with writer:
        writer.write(frames_uint8)
    return writer.path
