"""Waypoint-1 autoencoder (one 360x640 RGB frame <-> one latent [16, 32, 32]).

Files: encoder.safetensors / decoder.safetensors with weight-normalised
convolutions (`<conv>.parametrizations.weight.original0` = g [out,1,1,1], `...original1` = v), and
encoder_conf.yml / decoder_conf.yml whose `model:` section holds the sizes. The weight norm is folded
at load (W = g * v / ||v||, norm per output channel), so the modules here are plain convolutions.

Layouts: frames [T, 3, H, W] float in [0, 1] (any size; the encoder resizes to 512x512 itself);
latents [T, C, 32, 32] float; the decoder returns frames [T, 3, 360, 640] in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.errors import WaypointError
from worldengine.ae.taehv import check_state_dict

ENCODER_SIZE = (512, 512)  # the encoder squeezes every input to this square first
DECODER_SIZE = (360, 640)  # the decoder stretches its square output back to this
_G, _V = ".parametrizations.weight.original0", ".parametrizations.weight.original1"


@dataclass(frozen=True)
class OwlAEConfig:
    """The `model:` section of encoder_conf.yml / decoder_conf.yml."""

    channels: int
    latent_channels: int
    ch_0: int
    ch_max: int
    encoder_blocks_per_stage: tuple[int, ...]
    decoder_blocks_per_stage: tuple[int, ...]
    skip_logvar: bool = False

    def ladder(self, stages: int) -> list[int]:
        """Channel counts c_0..c_S with c_{i+1} = min(2 c_i, ch_max)."""
        widths = [self.ch_0]
        for _ in range(stages):
            widths.append(min(2 * widths[-1], self.ch_max))
        return widths


def read_config(path: str | Path) -> OwlAEConfig:
    """Parse the `model:` section of an AE conf YAML file; errors name the file and field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise WaypointError(f"Waypoint-1 AE config not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    model = data.get("model") if isinstance(data, dict) else None
    if not isinstance(model, dict):
        raise WaypointError(f"{path}: expected the AE sizes under a `model:` section")
    try:
        return OwlAEConfig(
            channels=int(model["channels"]), latent_channels=int(model["latent_channels"]),
            ch_0=int(model["ch_0"]), ch_max=int(model["ch_max"]),
            encoder_blocks_per_stage=tuple(int(n) for n in model["encoder_blocks_per_stage"]),
            decoder_blocks_per_stage=tuple(int(n) for n in model["decoder_blocks_per_stage"]),
            skip_logvar=bool(model.get("skip_logvar", False)))
    except KeyError as err:
        raise WaypointError(f"{path}: missing field model.{err.args[0]}") from err
    except (TypeError, ValueError) as err:
        raise WaypointError(f"{path}: bad value in the model section: {err}") from err


def _conv(n_in: int, n_out: int, kernel: int, bias: bool = True, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, kernel, padding=kernel // 2, bias=bias, groups=groups)


class Proj(nn.Module):
    """Holds one conv as `.proj` (matches the checkpoint key nesting)."""

    def __init__(self, conv: nn.Module):
        super().__init__()
        self.proj = conv


class ResBlock(nn.Module):
    """x + conv3(lrelu(conv2(lrelu(conv1(x))))): 1x1 ch->2ch, grouped 3x3 (16 channels a group), 1x1 back."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = _conv(ch, 2 * ch, 1)
        self.conv2 = _conv(2 * ch, 2 * ch, 3, groups=2 * ch // 16)
        self.conv3 = _conv(2 * ch, ch, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(x), 0.01)
        return x + self.conv3(F.leaky_relu(self.conv2(h), 0.01))


class DownBlock(nn.Module):
    """ResBlocks at c_in, bicubic x0.5, 1x1 c_in -> c_out (no bias)."""

    def __init__(self, c_in: int, c_out: int, n_res: int):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(c_in) for _ in range(n_res))
        self.down = Proj(_conv(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.down.proj(F.interpolate(x, scale_factor=0.5, mode="bicubic", align_corners=False))


class UpBlock(nn.Module):
    """1x1 c_in -> c_out (no bias; none when equal), bicubic x2, ResBlocks at c_out."""

    def __init__(self, c_in: int, c_out: int, n_res: int):
        super().__init__()
        self.up = Proj(_conv(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity())
        self.blocks = nn.ModuleList(ResBlock(c_out) for _ in range(n_res))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.up.proj(x), scale_factor=2.0, mode="bicubic", align_corners=False)
        for block in self.blocks:
            x = block(x)
        return x


class OwlEncoder(nn.Module):
    """[B, channels, H, W] in [-1, 1] -> mean latent [B, latent, 32, 32] (for 4 stages)."""

    def __init__(self, cfg: OwlAEConfig):
        super().__init__()
        widths = cfg.ladder(len(cfg.encoder_blocks_per_stage))
        self.conv_in = Proj(_conv(cfg.channels, widths[0], 3))
        self.blocks = nn.ModuleList(DownBlock(widths[i], widths[i + 1], n)
                                    for i, n in enumerate(cfg.encoder_blocks_per_stage))
        self.residuals = nn.ModuleList(Proj(_conv(widths[i], widths[i + 1] // 4, 3))
                                       for i in range(len(cfg.encoder_blocks_per_stage)))
        self.conv_out = Proj(_conv(widths[-1], cfg.latent_channels, 3))
        if not cfg.skip_logvar:  # present in the checkpoint, never used at inference
            self.conv_out_logvar = _conv(widths[-1], 1, 3)
        self.groups = widths[-1] // cfg.latent_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in.proj(F.interpolate(x, ENCODER_SIZE, mode="bicubic", align_corners=False))
        for block, residual in zip(self.blocks, self.residuals):
            x = block(x) + F.pixel_unshuffle(residual.proj(x), 2)
        b, c, h, w = x.shape  # channel-average skip: mean over groups of `latent` channels
        skip = x.reshape(b, self.groups, c // self.groups, h, w).mean(1) * self.groups**0.5
        return self.conv_out.proj(x) + skip


class OwlDecoder(nn.Module):
    """[B, latent, h, w] -> raw image [B, channels, 360, 640] (about [-1, 1])."""

    def __init__(self, cfg: OwlAEConfig):
        super().__init__()
        stages = len(cfg.decoder_blocks_per_stage)
        widths = cfg.ladder(stages)
        if widths[-1] != cfg.ch_max or cfg.ch_max % cfg.latent_channels:
            raise WaypointError(f"Waypoint-1 AE decoder config: ch_max {cfg.ch_max} must be reached by the "
                                f"channel ladder {widths} and be a multiple of latent_channels")
        self.conv_in = Proj(_conv(cfg.latent_channels, cfg.ch_max, 3))
        self.repeats = cfg.ch_max // cfg.latent_channels
        self.blocks = nn.ModuleList(UpBlock(widths[stages - k], widths[stages - k - 1], n)
                                    for k, n in enumerate(cfg.decoder_blocks_per_stage))
        self.residuals = nn.ModuleList(Proj(_conv(widths[stages - k], 4 * widths[stages - k - 1], 3))
                                       for k in range(stages))
        self.conv_out = Proj(_conv(widths[0], cfg.channels, 3))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in.proj(z) + z.repeat_interleave(self.repeats, 1) * self.repeats**-0.5
        for block, residual in zip(self.blocks, self.residuals):
            x = block(x) + F.pixel_shuffle(residual.proj(x), 2)
        x = self.conv_out.proj(F.silu(x))
        return F.interpolate(x, DECODER_SIZE, mode="bicubic", align_corners=False)


def fold_weight_norm(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Replace each (g, v) weight-norm pair by the plain weight W = g * v / ||v|| (float32)."""
    folded = {key: value for key, value in state.items() if _G not in key and _V not in key}
    for key in state:
        if not key.endswith(_V):
            continue
        conv = key[: -len(_V)]
        v = state[key].float()
        g = state.get(conv + _G)
        if g is None:
            raise WaypointError(f"{source}: key {conv + _G!r} is missing (the g of {key!r})")
        if tuple(g.shape) != (v.shape[0], 1, 1, 1):
            raise WaypointError(f"{source}: key {conv + _G!r} has shape {tuple(g.shape)}, "
                                f"expected {(v.shape[0], 1, 1, 1)}")
        norm = v.flatten(1).norm(dim=1).reshape(-1, 1, 1, 1)
        folded[conv + ".weight"] = v * (g.float() / norm)
    orphans = [key for key in state if key.endswith(_G) and key[: -len(_G)] + _V not in state]
    if orphans:
        raise WaypointError(f"{source}: key {orphans[0]!r} has no matching {_V.lstrip('.')!r}")
    return folded


def _load_module(module: nn.Module, path: Path) -> nn.Module:
    from safetensors.torch import load_file

    if not path.is_file():
        raise WaypointError(f"Waypoint-1 AE weights not found: {path}")
    try:
        raw = load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own types for broken headers
        raise WaypointError(f"cannot read Waypoint-1 AE weights {path}: {err}") from err
    state = fold_weight_norm(raw, str(path))
    check_state_dict(module, state, str(path))
    module.load_state_dict(state, assign=True)
    return module


class OwlAE(nn.Module):
    """Encoder + decoder with the reference's pixel conventions (frames in [0, 1])."""

    def __init__(self, encoder_cfg: OwlAEConfig, decoder_cfg: OwlAEConfig):
        super().__init__()
        self.encoder = OwlEncoder(encoder_cfg)
        self.decoder = OwlDecoder(decoder_cfg)
        self.image_channels = encoder_cfg.channels
        self.latent_channels = decoder_cfg.latent_channels

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, 3, H, W] in [0, 1] -> latents [T, C, 32, 32] (mean head; no scale or shift)."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise WaypointError(f"Waypoint-1 AE expects frames [T, 3, H, W], got shape {tuple(frames.shape)}")
        weight = self.encoder.conv_in.proj.weight
        x = frames.to(weight.device, weight.dtype) * 2 - 1
        if self.image_channels != 3:  # RGB -> RGB+zeros (e.g. a depth channel) or truncated
            x = F.pad(x, (0, 0, 0, 0, 0, max(self.image_channels - 3, 0)))[:, : self.image_channels]
        return self.encoder(x.contiguous(memory_format=torch.channels_last)).contiguous()

    @torch.no_grad()
    def decode_raw(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [C, h, w] or [T, C, h, w] -> raw decoder output [T, channels, 360, 640] (about [-1, 1])."""
        if latents.ndim == 3:
            latents = latents[None]
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise WaypointError(f"Waypoint-1 AE decoder expects latents [T, {self.latent_channels}, h, w], "
                                f"got shape {tuple(latents.shape)}")
        weight = self.decoder.conv_in.proj.weight
        latents = latents.to(weight.device, weight.dtype).contiguous(memory_format=torch.channels_last)
        return self.decoder(latents).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents -> frames [T, 3, 360, 640] in [0, 1] (RGB channels of y/2 + 0.5, clamped)."""
        return (self.decode_raw(latents)[:, :3] / 2 + 0.5).clamp(0, 1)


def load_owl_ae(folder: str | Path, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> OwlAE:
    """Load encoder/decoder .safetensors + _conf.yml from `folder` strictly, weight norm folded."""
    folder = Path(folder)
    configs = read_config(folder / "encoder_conf.yml"), read_config(folder / "decoder_conf.yml")
    with torch.device("meta"):  # weights come from the files; skip the random init
        model = OwlAE(*configs)
    _load_module(model.encoder, folder / "encoder.safetensors")
    _load_module(model.decoder, folder / "decoder.safetensors")
    # channels_last: oneDNN / cuDNN convolutions run about 2x faster on it here
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)
