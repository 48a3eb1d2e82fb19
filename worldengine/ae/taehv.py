"""TAEHV 1.5: the tiny causal video autoencoder of Waypoint-1.5 (4 RGB frames <-> 1 latent).

The architecture of madebyollin/taehv (MIT), written here from its published facts.
Layouts used throughout (no batch axis; the engine runs one stream at a time):
- frames:  [T, 3, H, W] float in [0, 1], H and W multiples of 16;
- latents: [N, 32, H/16, W/16] float (roughly N(0, 1)); one latent covers 4 consecutive frames.

Every temporal block is causal: a MemBlock sees its own input at the previous time step, which is
zero at the start of a stream. `run_blocks` runs a Sequential time-parallel over a chunk while
carrying that one-frame memory in and out, so the streaming path (chunk after chunk) and the batch
path (the whole clip at once) do the same arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.errors import WaypointError

LATENT_CHANNELS = 32
PATCH_SIZE = 2  # RGB is pixel-unshuffled 2x2 before the encoder (3 -> 12 channels)
FRAMES_PER_LATENT = 4  # encoder time downscale = decoder time upscale
FRAMES_TO_TRIM = 3  # the decoder's first raw frames carry no picture (causal alignment)
WARMUP_REPEATS = 3  # first decode of a stream feeds its first latent this many extra times
SPATIAL_SCALE = 16  # pixels per latent cell along H and W


def _conv3x3(n_in: int, n_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, stride=stride, padding=1, bias=bias)


class Clamp(nn.Module):
    """Soft clamp of latents to about (-3, 3): tanh(x / 3) * 3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    """Causal residual block on [T, n, H, W]: relu(convs(cat[x_t, x_{t-1}]) + x_t)."""

    def __init__(self, n: int):
        super().__init__()
        # in-place ReLUs only ever touch fresh conv outputs (saves memory traffic on CPU)
        self.conv = nn.Sequential(_conv3x3(2 * n, n), nn.ReLU(inplace=True), _conv3x3(n, n),
                                  nn.ReLU(inplace=True), _conv3x3(n, n))

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.conv(torch.cat([x, past], 1)).add_(x))


class TPool(nn.Module):
    """Merge `stride` consecutive frames: [T, n, H, W] -> [T/stride, n, H, W] (frames stacked on channels, 1x1 conv)."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n * stride, n, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, c, h, w = x.shape
        if t % self.stride:
            raise WaypointError(f"TAEHV TPool needs a multiple of {self.stride} frames, got {t}")
        return self.conv(x.reshape(t // self.stride, self.stride * c, h, w))


class TGrow(nn.Module):
    """Split each frame into `stride` frames: [T, n, H, W] -> [T*stride, n, H, W] (1x1 conv, channel blocks = frames)."""

    def __init__(self, n: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n, n * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, c, h, w = x.shape
        return self.conv(x).reshape(t * self.stride, c, h, w)


def run_blocks(blocks: nn.Sequential, x: torch.Tensor, memory: dict[int, torch.Tensor]) -> torch.Tensor:
    """Run `blocks` time-parallel over the chunk x [T, C, H, W].

    memory maps a MemBlock's index to its input at the time step before this chunk ([1, C, H, W]);
    a missing entry means zeros (stream start). It is updated in place with this chunk's last inputs.
    """
    for index, block in enumerate(blocks):
        if isinstance(block, MemBlock):
            before = memory.get(index)
            if before is None:
                before = torch.zeros_like(x[:1])
            past = torch.cat([before, x[:-1]], 0)
            memory[index] = x[-1:]  # a view: nothing writes to a block input after it is used
            x = block(x, past)
        else:
            x = block(x)
    return x


def _build_encoder() -> nn.Sequential:
    stages = []
    for pool_stride in (2, 2, 1):  # time /4 overall, space /8 (x2 from the pixel unshuffle)
        stages += [TPool(64, pool_stride), _conv3x3(64, 64, stride=2, bias=False),
                   MemBlock(64), MemBlock(64), MemBlock(64)]
    return nn.Sequential(_conv3x3(3 * PATCH_SIZE**2, 64), nn.ReLU(inplace=True), *stages,
                         _conv3x3(64, LATENT_CHANNELS))


def _build_decoder() -> nn.Sequential:
    widths = (256, 128, 64, 64)
    layers: list[nn.Module] = [Clamp(), _conv3x3(LATENT_CHANNELS, widths[0]), nn.ReLU(inplace=True)]
    for stage, grow_stride in enumerate((1, 2, 2)):
        n = widths[stage]
        layers += [MemBlock(n), MemBlock(n), MemBlock(n), nn.Upsample(scale_factor=2, mode="nearest"),
                   TGrow(n, grow_stride), _conv3x3(n, widths[stage + 1], bias=False)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True), _conv3x3(widths[3], 3 * PATCH_SIZE**2))


class TAEHV(nn.Module):
    """TAEHV 1.5 weights and the time-parallel (whole clip, zero initial memory) paths."""

    def __init__(self):
        super().__init__()
        self.encoder = _build_encoder()
        self.decoder = _build_decoder()

    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [T, 3, H, W] in [0, 1], T a multiple of 4 -> latents [T/4, 32, H/16, W/16]."""
        return run_blocks(self.encoder, self.prepare_frames(frames), {})

    @torch.no_grad()
    def decode_video(self, latents: torch.Tensor, warmup: bool = True) -> torch.Tensor:
        """latents [N, 32, h, w] -> frames [4N, 3, 16h, 16w] in [0, 1] (4N - 3 without warm-up).

        With warm-up (the reference engine's behaviour) the first latent is fed 3 extra times first and
        everything those produce is dropped; without it only the 3 startup frames are dropped.
        """
        latents = self.prepare_latents(latents)
        drop = FRAMES_TO_TRIM
        if warmup:  # the warm-up latents' whole output (which includes the 3 startup frames) is dropped
            latents = torch.cat([latents[:1].expand(WARMUP_REPEATS, -1, -1, -1), latents], 0)
            drop = WARMUP_REPEATS * FRAMES_PER_LATENT
        return self.finish_frames(run_blocks(self.decoder, latents, {}))[drop:]

    def prepare_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Check frames [T, 3, H, W] and pixel-unshuffle them to the encoder input [T, 12, H/2, W/2]."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise WaypointError(f"TAEHV encoder expects frames [T, 3, H, W], got shape {tuple(frames.shape)}")
        t, _, h, w = frames.shape
        if t == 0 or t % FRAMES_PER_LATENT:
            raise WaypointError(f"TAEHV encodes {FRAMES_PER_LATENT} frames per latent; got {t} frames "
                                f"(give a multiple of {FRAMES_PER_LATENT})")
        if h % SPATIAL_SCALE or w % SPATIAL_SCALE:
            raise WaypointError(f"TAEHV frame size must be a multiple of {SPATIAL_SCALE}, got {h}x{w}")
        weight = self.encoder[0].weight
        x = F.pixel_unshuffle(frames.to(weight.device, weight.dtype), PATCH_SIZE)
        return x.contiguous(memory_format=torch.channels_last)

    def prepare_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Check latents and return them as [N, 32, h, w] in the decoder's device and dtype."""
        if latents.ndim == 3:
            latents = latents[None]
        if latents.ndim != 4 or latents.shape[1] != LATENT_CHANNELS or latents.shape[0] == 0:
            raise WaypointError(f"TAEHV decoder expects latents [N, {LATENT_CHANNELS}, h, w] or "
                                f"[{LATENT_CHANNELS}, h, w], got shape {tuple(latents.shape)}")
        weight = self.decoder[1].weight
        return latents.to(weight.device, weight.dtype).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def finish_frames(raw: torch.Tensor) -> torch.Tensor:
        """Decoder output [T, 12, h, w] -> frames [T, 3, 2h, 2w] clamped to [0, 1]."""
        return F.pixel_shuffle(raw, PATCH_SIZE).clamp(0, 1)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a TAEHV checkpoint: `.safetensors`, or a `.pth`/`.pt` plain tensor state dict (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise WaypointError(f"TAEHV checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for broken headers
            raise WaypointError(f"cannot read TAEHV safetensors file {path}: {err}") from err
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the weights_only unpickler refuses anything but tensors and containers
        raise WaypointError(f"cannot read TAEHV checkpoint {path} as a plain tensor state dict "
                            f"(torch.load weights_only=True refused it): {err}") from err
    if not isinstance(loaded, dict):
        raise WaypointError(f"TAEHV checkpoint {path} holds a {type(loaded).__name__}, expected a state dict")
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise WaypointError(f"TAEHV checkpoint {path}: entry {key!r} is a {type(value).__name__}, "
                                "expected only tensors")
    return loaded


def patch_tgrow_layers(model: TAEHV, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Where a checkpoint TGrow weight has more output rows than the model's, keep only the last rows.

    (A checkpoint trained with temporal upscaling can drive a decoder built without it; the last
    rows produce the last time step.)
    """
    patched = dict(state)
    for index, layer in enumerate(model.decoder):
        key = f"decoder.{index}.conv.weight"
        if isinstance(layer, TGrow) and key in patched:
            rows = layer.conv.weight.shape[0]
            if patched[key].shape[0] > rows:
                patched[key] = patched[key][-rows:]
    return patched


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise WaypointError naming the first missing/unexpected key or shape mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise WaypointError(f"{source}: missing key {missing[0]!r} ({len(missing)} missing in all)")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise WaypointError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all)")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise WaypointError(f"{source}: key {key!r} has shape {tuple(state[key].shape)}, "
                                f"the model expects {tuple(tensor.shape)}")


def load_taehv(path: str | Path, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> TAEHV:
    """Build TAEHV 1.5 and load `path` strictly; returns an eval-mode model on device/dtype."""
    with torch.device("meta"):  # no random init of 11M parameters that are overwritten next
        model = TAEHV()
    state = patch_tgrow_layers(model, read_state_dict(path))
    check_state_dict(model, state, f"TAEHV checkpoint {path}")
    model.load_state_dict({key: value.float().contiguous() for key, value in state.items()}, assign=True)
    # channels_last: the oneDNN / cuDNN convolutions are markedly faster on it (bf16 on CPU ~5x)
    model = model.to(device=device, dtype=dtype, memory_format=torch.channels_last)
    return model.eval().requires_grad_(False)
