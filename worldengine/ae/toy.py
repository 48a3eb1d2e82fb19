"""The toy world's autoencoders (`toy_ae.safetensors` in models/toyworld; built by tools/toyworld).

Version 1 (`ToyPatchAE`, format "waypoint-toy-ae/1"): a fixed linear patch code (PCA of p x p RGB
patches, one scale). One frame per latent, no state. frames [T, 3, H, W] float in [0, 1] <-> latents
[T, C, H/p, W/p]. Tensors `mean` [3*p*p], `basis` [C, 3*p*p], `scale` [C]; metadata "patch",
"height", "width".

Version 2 (`ToyTAE`, format "waypoint-toy-ae/2"): a tiny temporal conv autoencoder shaped like
TAEHV 1.5: frames [4N, 3, 144, 256] <-> latents [N, 16, 9, 16] (16x spatial, 4x temporal). The
encoder sees only its latent's 4 frames; decoding is a stream (`ToyTAEDecoderStream`): latent t is
decoded together with latent t-1 (the stream's state; a stream's first latent uses itself). Latents
are divided by one global `scale` [1] (their RMS on training data), so latent MSE stays proportional
to what is visible. Tensors: conv weights (fp16 on disk) and `scale`; metadata "height", "width",
"frames_per_latent", "channels", "width_mult".

`load_toy_ae` reads either version; errors name the file and the bad field.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.errors import WaypointError

TOY_AE_NAME = "toy_ae.safetensors"
TOY_AE_FORMAT = "waypoint-toy-ae/1"
TOY_TAE_FORMAT = "waypoint-toy-ae/2"
FRAMES, SPATIAL, CHANNELS = 4, 16, 16


class ToyPatchAE(nn.Module):
    frames_per_latent = 1

    def __init__(self, mean: torch.Tensor, basis: torch.Tensor, scale: torch.Tensor, patch: int,
                 pixel_size: tuple[int, int]):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("basis", basis)
        self.register_buffer("scale", scale)
        self.patch = int(patch)
        self.pixel_size = (int(pixel_size[0]), int(pixel_size[1]))
        self.latent_channels = basis.shape[0]
        self.latent_hw = (self.pixel_size[0] // self.patch, self.pixel_size[1] // self.patch)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, 3, H, W] in [0, 1] (H, W = pixel_size) -> latents [T, C, h, w]."""
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (3, *self.pixel_size):
            raise WaypointError(f"toy AE encodes [T, 3, {self.pixel_size[0]}, {self.pixel_size[1]}] frames, "
                                f"got {list(frames.shape)}")
        t = frames.shape[0]
        patches = F.unfold(frames.to(self.basis.dtype), self.patch, stride=self.patch)   # [T, 3pp, hw]
        codes = (self.basis @ (patches - self.mean[:, None])) / self.scale[:, None]        # [T, C, hw]
        return codes.view(t, self.latent_channels, *self.latent_hw)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """latent [C, h, w] or [N, C, h, w] -> frames [N, 3, H, W] in [0, 1]."""
        if latent.ndim == 3:
            latent = latent[None]
        if tuple(latent.shape[1:]) != (self.latent_channels, *self.latent_hw):
            raise WaypointError(f"toy AE decodes [N, {self.latent_channels}, {self.latent_hw[0]}, "
                                f"{self.latent_hw[1]}] latents, got {list(latent.shape)}")
        codes = latent.to(self.basis.dtype).flatten(2) * self.scale[:, None]
        patches = self.basis.T @ codes + self.mean[:, None]
        return F.fold(patches, self.pixel_size, self.patch, stride=self.patch).clamp(0, 1)

    @classmethod
    def fit(cls, frames: torch.Tensor, patch: int, channels: int) -> "ToyPatchAE":
        """PCA of the p x p patches of frames [T, 3, H, W]; keeps the `channels` strongest components."""
        patches = F.unfold(frames.double(), patch, stride=patch).transpose(1, 2).reshape(-1, 3 * patch * patch)
        mean = patches.mean(0)
        covariance = (patches - mean).T @ (patches - mean) / patches.shape[0]
        values, vectors = torch.linalg.eigh(covariance)                    # ascending
        order = values.argsort(descending=True)[:channels]
        # One scale for every channel (the RMS of the kept components), not per-channel whitening:
        # latent MSE then stays proportional to pixel MSE, so training favours what is visible.
        basis = vectors[:, order].T
        scale = values[order].clamp_min(1e-8).mean().sqrt().expand(channels).clone()
        return cls(mean.float(), basis.float().contiguous(), scale.float(), patch, frames.shape[-2:])

    def save(self, path: str | Path):
        from safetensors.torch import save_file

        metadata = {"format": TOY_AE_FORMAT, "patch": str(self.patch), "height": str(self.pixel_size[0]),
                    "width": str(self.pixel_size[1])}
        save_file({"mean": self.mean.contiguous(), "basis": self.basis.contiguous(),
                   "scale": self.scale.contiguous()}, str(path), metadata=metadata)

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
            raise WaypointError(f"toy AE encodes [4N, 3, {self.pixel_size[0]}, {self.pixel_size[1]}] frames, "
                             f"got {list(frames.shape)}")
        x = F.pixel_unshuffle(frames.to(self.scale.dtype) * 2 - 1, 4)       # [4N, 48, H/4, W/4]
        x = x.reshape(t // FRAMES, FRAMES * 48, h // 4, w // 4)     # seed frames may be expanded views
        return self.encoder(x) / self.scale

    def decode_pair(self, latent: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """latents [N, C, h, w] with their predecessors [N, C, h, w] -> frames [4N, 3, H, W] in [0, 1]."""
        x = self.dec_in(torch.cat([latent, previous], 1) * self.scale)
        x = self.dec_mid(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        x = self.dec_out(F.interpolate(x, scale_factor=2.0, mode="nearest"))   # [N, 4*48, H/4, W/4]
        n, _, h4, w4 = x.shape
        frames = F.pixel_shuffle(x.view(n * FRAMES, 48, h4, w4), 4)
        return torch.sigmoid(frames)

    def decoder_stream(self) -> "ToyTAEDecoderStream":
        return ToyTAEDecoderStream(self)

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


def load_toy_ae(path: str | Path, device="cpu", dtype: torch.dtype = torch.float32) -> "ToyPatchAE | ToyTAE":
    """Read a `toy_ae.safetensors` of either version; errors name the file and the bad field."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise WaypointError(f"{path}: cannot read toy autoencoder ({err})") from None
    if metadata.get("format") == TOY_TAE_FORMAT:
        model = _build_tae(path, metadata, tensors)
    elif metadata.get("format") == TOY_AE_FORMAT:
        model = _build_patch_ae(path, metadata, tensors)
    else:
        raise WaypointError(f"{path}: not a toy autoencoder (format {metadata.get('format')!r})")
    return model.to(device=device, dtype=dtype).eval()


def _build_tae(path: Path, metadata: dict, tensors: dict) -> ToyTAE:
    try:
        size = (int(metadata["height"]), int(metadata["width"]))
        channels, width = int(metadata["channels"]), int(metadata["width_mult"])
    except (KeyError, ValueError):
        raise WaypointError(f"{path}: metadata needs integer height/width/channels/width_mult, got {metadata}") from None
    if size[0] % SPATIAL or size[1] % SPATIAL or metadata.get("frames_per_latent") != str(FRAMES):
        raise WaypointError(f"{path}: needs a pixel size divisible by {SPATIAL} and {FRAMES} frames per latent")
    model = ToyTAE(size, channels, width)
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as err:
        raise WaypointError(f"{path}: tensors do not fit the toy AE ({str(err).splitlines()[0]})") from None
    return model


def _build_patch_ae(path: Path, metadata: dict, tensors: dict) -> ToyPatchAE:
    missing = sorted({"mean", "basis", "scale"} - set(tensors))
    if missing:
        raise WaypointError(f"{path}: missing tensor(s) {missing}")
    try:
        patch, height, width = (int(metadata[k]) for k in ("patch", "height", "width"))
    except (KeyError, ValueError):
        raise WaypointError(f"{path}: metadata needs integer patch/height/width, got {metadata}") from None
    channels, size = tensors["basis"].shape
    if size != 3 * patch * patch or tensors["mean"].shape != (size,) or tensors["scale"].shape != (channels,):
        raise WaypointError(f"{path}: tensor shapes {[(k, tuple(v.shape)) for k, v in tensors.items()]} "
                            f"do not fit patch {patch}")
    if height % patch or width % patch:
        raise WaypointError(f"{path}: pixel size {height}x{width} is not a multiple of patch {patch}")
    return ToyPatchAE(tensors["mean"], tensors["basis"], tensors["scale"], patch, (height, width))
