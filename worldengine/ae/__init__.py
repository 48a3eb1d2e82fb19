"""One face for both autoencoders: find the files, load, and stream frames <-> latents.

- Waypoint-1.5 (`taehv_ae: true`): TAEHV 1.5, 4 frames per latent, causal streams with state.
  Pixel size = latent size x 16 (256x512 for 360P, 512x1024 for 720P); decoded frames are shown at
  360x640 / 720x1280 (bilinear), as the reference engine does.
- Waypoint-1: the per-frame Waypoint-1 AE, 1 frame per latent, 360x640, stateless.
- The offline toy world: `toy_ae.safetensors` (worldengine/ae/toy.py): version 1, 1 frame per latent,
  stateless; version 2, 4 frames per latent with a decoder stream, like TAEHV.

Layouts: frames [T, 3, H, W] float32 in [0, 1]; latents [N, C, h, w] (one latent: [C, h, w]).
Stream state (`get_state`) is a flat dict of tensors and small ints with `encoder.` / `decoder.`
prefixes, ready to go into a safetensors snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from worldengine.errors import WaypointError
from worldengine.images import CONTENT_ASPECT, aspect_matches, display_size, fit_frames, resize_frames
from worldengine.options import FitMode
from worldengine.ae.owl import DECODER_SIZE, ENCODER_SIZE, OwlAE, load_owl_ae
from worldengine.ae.taehv import FRAMES_PER_LATENT, LATENT_CHANNELS, SPATIAL_SCALE, TAEHV, load_taehv
from worldengine.ae.taehv_causal import StreamState, TAEHVCausalDecoder, TAEHVCausalEncoder
from worldengine.ae.toy import TOY_AE_NAME, load_toy_ae

TAEHV_NAMES = ("taehv1_5.safetensors", "taehv1_5.pth")
OWL_NAMES = ("encoder.safetensors", "decoder.safetensors", "encoder_conf.yml", "decoder_conf.yml")
DEFAULT_TAEHV_LATENT_HW = (16, 32)  # 360P, used when no config says otherwise


@dataclass(frozen=True)
class AEFiles:
    """Where an autoencoder's files are: kind "taehv" (path = the checkpoint) or "owl" (path = folder)."""

    kind: str
    path: Path


def _search_dirs(folder: Path, config, subfolders: tuple[str, ...], extra_dirs) -> list[Path]:
    from worldengine.hub import REPO_ID

    dirs = [folder, *(folder / name for name in subfolders), *map(Path, extra_dirs)]
    ae_uri = getattr(config, "ae_uri", None)
    if ae_uri and not REPO_ID.match(str(ae_uri).rstrip("/")):   # "x/.." would search the grandparent
        raise WaypointError(f"config field ae_uri {str(ae_uri)[:200]!r} is not a Hugging Face repo id (owner/name)")
    if ae_uri:  # a downloaded AE repo next to the model folder, e.g. models/waypoint/taehv1_5
        dirs.append(folder.parent / str(ae_uri).rstrip("/").split("/")[-1])
    return dirs


def find_autoencoder_files(folder: str | Path, config=None, extra_dirs=()) -> AEFiles | None:
    """Look for the AE the config asks for (or either, with no config); None when absent."""
    folder = Path(folder)
    if (folder / TOY_AE_NAME).is_file():  # the shipped offline toy world (tools/toyworld)
        return AEFiles("toy", folder / TOY_AE_NAME)
    want_taehv = getattr(config, "uses_taehv", None)
    if want_taehv is not False:
        for directory in _search_dirs(folder, config, ("ae", "taehv"), extra_dirs):
            for name in TAEHV_NAMES:
                if (directory / name).is_file():
                    return AEFiles("taehv", directory / name)
    if want_taehv is not True:
        for directory in _search_dirs(folder, config, ("ae",), extra_dirs):
            if all((directory / name).is_file() for name in OWL_NAMES):
                return AEFiles("owl", directory)
    return None


def _missing_message(folder: Path, config) -> str:
    uri = getattr(config, "ae_uri", None)
    source = f" (download them from the Hugging Face repo {uri!r})" if uri else ""
    if getattr(config, "uses_taehv", None) is False:
        return (f"no Waypoint-1 autoencoder in {folder}: put {', '.join(OWL_NAMES)} in that folder "
                f"or in {folder / 'ae'}{source}")
    return (f"no TAEHV 1.5 autoencoder in {folder}: put taehv1_5.safetensors (or taehv1_5.pth) in that "
            f"folder or in {folder / 'ae'} or {folder / 'taehv'}{source}")


def _taehv_latent_hw(config, latent_hw) -> tuple[int, int]:
    if latent_hw is not None:
        return tuple(latent_hw)
    shape = getattr(config, "latent_shape", None)
    if shape is None:
        return DEFAULT_TAEHV_LATENT_HW
    if shape[0] != LATENT_CHANNELS:
        raise WaypointError(f"config has {shape[0]} latent channels but TAEHV 1.5 makes {LATENT_CHANNELS}")
    return (shape[1], shape[2])


class _Stream:
    """Lifecycle shared by both directions: only TAEHV (and version-2 toy decoder) streams carry state."""

    _taehv = None

    def reset(self) -> None:
        if self._taehv is not None:
            self._taehv.reset()

    def get_state(self) -> StreamState:
        return self._taehv.get_state() if self._taehv is not None else {}

    def load_state(self, state: StreamState) -> None:
        if self._taehv is not None:
            self._taehv.load_state(state)


class EncoderStream(_Stream):
    """frames [T, 3, H, W] in [0, 1] -> latents [T / frames_per_latent, C, h, w]; fitted to pixel_size first."""

    def __init__(self, ae: "WorldAutoencoder"):
        self.ae = ae
        self._taehv = TAEHVCausalEncoder(ae.model) if ae.kind == "taehv" else None

    def encode(self, frames: torch.Tensor, fit: FitMode | str = FitMode.ERROR) -> torch.Tensor:
        if self._taehv is not None:
            return self._taehv.encode(fit_frames(frames, self.ae.pixel_size, fit)).float()
        straight_in = (self.ae.kind == "owl" and frames.ndim == 4
                       and aspect_matches(frames.shape[-2], frames.shape[-1], CONTENT_ASPECT))
        if not straight_in:  # 16:9 goes straight into the Waypoint-1 encoder (its own bicubic to 512x512)
            frames = fit_frames(frames, self.ae.pixel_size, fit)
        return self.ae.model.encode(frames).float()


class DecoderStream(_Stream):
    """latent [C, h, w] (or [N, C, h, w]) -> frames [k, 3, H, W] in [0, 1] at output_size (k = 4N or N)."""

    def __init__(self, ae: "WorldAutoencoder", display: bool = True):
        self.ae = ae
        self.display = display
        self._taehv = TAEHVCausalDecoder(ae.model) if ae.kind == "taehv" else None
        if ae.kind == "toy" and ae.frames_per_latent > 1:  # the version-2 toy AE decodes as a stream too
            self._taehv = ae.model.decoder_stream()

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        if self._taehv is None:
            return self.ae.model.decode(latent).float()
        frames = self._taehv.decode(latent).float()
        if self.display:  # bilinear to 360x640 / 720x1280, then clamp, as the reference engine
            frames = resize_frames(frames, self.ae.output_size).clamp(0, 1)
        return frames


class WorldCodec:
    """One world's encoder and decoder streams, used together (a rollout, a snapshot file); one state
    dict for both. The world's session never holds it: whoever turns its frames into latents does."""

    def __init__(self, ae: "WorldAutoencoder", encoder: EncoderStream | None = None,
                 decoder: DecoderStream | None = None):
        self.encoder = encoder or ae.encoder()
        self.decoder = decoder or ae.decoder()

    def encode(self, frames: torch.Tensor, fit: FitMode | str = FitMode.ERROR) -> torch.Tensor:
        """frames [T, 3, H, W] in [0, 1] -> latents [T / frames_per_latent, C, h, w] float32."""
        return self.encoder.encode(frames, fit)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [N, C, h, w] (or one [C, h, w]) -> frames [k, 3, H, W] float32 in [0, 1]."""
        return self.decoder.decode(latents)

    def reset(self) -> None:
        self.encoder.reset()
        self.decoder.reset()

    def get_state(self) -> StreamState:
        return {**{f"encoder.{k}": v for k, v in self.encoder.get_state().items()},
                **{f"decoder.{k}": v for k, v in self.decoder.get_state().items()}}

    def load_state(self, state: StreamState) -> None:
        for prefix, stream in (("encoder.", self.encoder), ("decoder.", self.decoder)):
            stream.load_state({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


class WorldAutoencoder:
    """A loaded AE (weights shared by every stream made from it)."""

    def __init__(self, kind: str, model: TAEHV | OwlAE, latent_hw: tuple[int, int], source: Path):
        self.kind, self.model, self.source = kind, model, source
        if kind == "taehv":
            self.frames_per_latent = FRAMES_PER_LATENT
            self.latent_channels = LATENT_CHANNELS
            self.pixel_size = (latent_hw[0] * SPATIAL_SCALE, latent_hw[1] * SPATIAL_SCALE)
            self.output_size = display_size(self.pixel_size)
        elif kind == "toy":
            self.frames_per_latent = model.frames_per_latent
            self.latent_channels = model.latent_channels
            self.pixel_size = self.output_size = model.pixel_size
        else:
            self.frames_per_latent = 1
            self.latent_channels = model.latent_channels
            self.pixel_size = self.output_size = DECODER_SIZE
        self.latent_hw = latent_hw

    def encoder(self) -> EncoderStream:
        return EncoderStream(self)

    def decoder(self, display: bool = True) -> DecoderStream:
        return DecoderStream(self, display)

    def codec(self, encoder: EncoderStream | None = None, decoder: DecoderStream | None = None) -> WorldCodec:
        """A codec with fresh streams, or around the given ones."""
        return WorldCodec(self, encoder, decoder)

    def seed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, 3, H, W] -> T' frames that encode to whole latents: a single image is repeated
        to fill one latent (4 frames for TAEHV), as the reference primes a world from one image."""
        per_latent = self.frames_per_latent
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise WaypointError(f"frames must be [T, 3, H, W] RGB, got {list(frames.shape)}")
        if frames.shape[0] == 1 and per_latent > 1:
            frames = frames.expand(per_latent, -1, -1, -1)
        if frames.shape[0] % per_latent:
            raise WaypointError(f"this model encodes {per_latent} frames per latent; got {frames.shape[0]} frames")
        return frames.float()


def load_autoencoder(folder: str | Path, config=None, device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, extra_dirs=(),
                     latent_hw: tuple[int, int] | None = None) -> WorldAutoencoder:
    """Find and load the AE for `config` (a WaypointConfig, or None to take whichever is present).

    TAEHV latent size (h, w): `latent_hw`, else the config's latent_shape, else 360P (16, 32).
    """
    folder = Path(folder)
    files = find_autoencoder_files(folder, config, extra_dirs)
    if files is None:
        raise WaypointError(_missing_message(folder, config))
    if files.kind == "toy":
        model = load_toy_ae(files.path, device, dtype)
        shape = getattr(config, "latent_shape", None)
        if shape is not None and tuple(shape) != (model.latent_channels, *model.latent_hw):
            raise WaypointError(f"{files.path}: toy AE latents {[model.latent_channels, *model.latent_hw]} "
                                f"do not match the config's latent_shape {list(shape)}")
        return WorldAutoencoder("toy", model, model.latent_hw, files.path)
    if files.kind == "taehv":
        model = load_taehv(files.path, device, dtype)
        return WorldAutoencoder("taehv", model, _taehv_latent_hw(config, latent_hw), files.path)
    model = load_owl_ae(files.path, device, dtype)
    side = ENCODER_SIZE[0] >> len(model.encoder.blocks)  # each encoder stage halves the 512x512 square
    return WorldAutoencoder("owl", model, (side, side), files.path)
