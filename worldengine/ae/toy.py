"""The toy world's autoencoder: a fixed linear patch code (PCA of p x p RGB patches, whitened).

One frame per latent, no state. frames [T, 3, H, W] float in [0, 1] <-> latents [T, C, H/p, W/p]
float (zero mean; unit variance on average over channels, channel 0 the strongest). Decoding is the transpose
of the orthonormal basis, so it is exact up to the dropped components. File: `toy_ae.safetensors`
with tensors `mean` [3*p*p], `basis` [C, 3*p*p], `scale` [C] and metadata
{"format": "waypoint-toy-ae/1", "patch", "height", "width"}.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.errors import WaypointError

TOY_AE_NAME = "toy_ae.safetensors"
TOY_AE_FORMAT = "waypoint-toy-ae/1"


class ToyPatchAE(nn.Module):
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


def load_toy_ae(path: str | Path, device="cpu", dtype: torch.dtype = torch.float32) -> ToyPatchAE:
    """Read a `toy_ae.safetensors`; errors name the file and the bad field."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise WaypointError(f"{path}: cannot read toy autoencoder ({err})") from None
    if metadata.get("format") != TOY_AE_FORMAT:
        raise WaypointError(f"{path}: not a toy autoencoder (format {metadata.get('format')!r})")
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
    model = ToyPatchAE(tensors["mean"], tensors["basis"], tensors["scale"], patch, (height, width))
    return model.to(device=device, dtype=dtype).eval()
