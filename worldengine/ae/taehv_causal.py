"""Causal TAEHV 1.5: the encoder and decoder run frame-causally over a world, with exportable state.

Lifecycle of both: `reset()` -> `encode(...)` / `decode(...)` any number of times. Memory (each MemBlock's last input) persists across calls until `reset()`.
`get_state()` returns a flat dict of tensors and small ints; `load_state()` puts it back, so a
session snapshot can include the AE streams (the reference engine forgets them).

Each call runs the chunk time-parallel (`run_blocks`), which equals the reference's one-frame-at-a-
time work queue: 4 frames -> 1 latent and 1 latent -> 4 frames are always whole chunks, so nothing
is ever left half-way inside the network.
"""

from __future__ import annotations

import torch

from worldengine.errors import WaypointError
from worldengine.ae.taehv import (FRAMES_PER_LATENT, FRAMES_TO_TRIM, WARMUP_REPEATS, MemBlock, TAEHV,
                    run_blocks)

StreamState = dict[str, "torch.Tensor | int"]


def _memory_state(memory: dict[int, torch.Tensor]) -> StreamState:
    return {f"memory.{index}": tensor.clone(memory_format=torch.contiguous_format)
            for index, tensor in memory.items()}


def _load_memory(state: StreamState, blocks: torch.nn.Sequential, what: str) -> dict[int, torch.Tensor]:
    """Take the `memory.<i>` entries of `state` for MemBlocks of `blocks`, on their device/dtype."""
    memory: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        if not key.startswith("memory."):
            continue
        index = int(key.split(".", 1)[1]) if key.split(".", 1)[1].isdigit() else -1
        if not 0 <= index < len(blocks) or not isinstance(blocks[index], MemBlock):
            raise WaypointError(f"{what} state: {key!r} is not a MemBlock memory of this model")
        if not isinstance(value, torch.Tensor) or value.ndim != 4 or value.shape[0] != 1:
            raise WaypointError(f"{what} state: {key!r} must be a [1, C, H, W] tensor")
        weight = blocks[index].conv[0].weight
        # same layout as live memories (channels_last), so a restored stream computes bit-identically
        memory[index] = value.to(weight.device, weight.dtype).clone(memory_format=torch.channels_last)
    return memory


def _state_int(state: StreamState, key: str, what: str) -> int:
    value = state.get(key)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = int(value.item())
    if not isinstance(value, int):
        raise WaypointError(f"{what} state: missing integer {key!r}")
    return value


class TAEHVCausalEncoder:
    """Causal encoder: frames [4k, 3, H, W] in [0, 1] -> latents [k, 32, H/16, W/16], memory kept."""

    def __init__(self, model: TAEHV):
        self.model = model
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero memory."""
        self._memory: dict[int, torch.Tensor] = {}
        self.frames_seen = 0

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode the next frames (a multiple of 4; 3 frames is an error, nothing is buffered)."""
        latents = run_blocks(self.model.encoder, self.model.prepare_frames(frames), self._memory)
        self.frames_seen += frames.shape[0]
        return latents


    def get_state(self) -> StreamState:
        return {**_memory_state(self._memory), "frames_seen": self.frames_seen}

    def load_state(self, state: StreamState) -> None:
        self._memory = _load_memory(state, self.model.encoder, "TAEHV encoder")
        self.frames_seen = _state_int(state, "frames_seen", "TAEHV encoder")


class TAEHVCausalDecoder:
    """Causal decoder: each latent [32, h, w] -> exactly 4 frames [4, 3, 16h, 16w] in [0, 1].

    With `warmup` (default, the reference engine's behaviour) the first decode of a stream feeds its
    first latent 3 extra times and drops all they produce. Without it the first call returns only
    1 frame (the stream's first 3 raw frames are always dropped).
    """

    def __init__(self, model: TAEHV, warmup: bool = True):
        self.model = model
        self.warmup = warmup
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero memory, 3 startup frames to drop, warm-up pending."""
        self._memory: dict[int, torch.Tensor] = {}
        self.frames_to_drop = FRAMES_TO_TRIM
        self.warmed = False
        self.frames_out = 0

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [32, h, w] or [N, 32, h, w] -> frames [4N, 3, 16h, 16w] (fewer only before warm-up)."""
        latents = self.model.prepare_latents(latents)
        if self.warmup and not self.warmed:
            latents = torch.cat([latents[:1].expand(WARMUP_REPEATS, -1, -1, -1), latents], 0)
            # everything the warm-up latents produce is dropped; that covers the 3 startup frames
            self.frames_to_drop = max(self.frames_to_drop, WARMUP_REPEATS * FRAMES_PER_LATENT)
        self.warmed = True
        frames = self.model.finish_frames(run_blocks(self.model.decoder, latents, self._memory))
        dropped = min(self.frames_to_drop, frames.shape[0])
        self.frames_to_drop -= dropped
        frames = frames[dropped:]
        self.frames_out += frames.shape[0]
        return frames


    def get_state(self) -> StreamState:
        return {**_memory_state(self._memory), "frames_to_drop": self.frames_to_drop,
                "warmed": int(self.warmed), "frames_out": self.frames_out}

    def load_state(self, state: StreamState) -> None:
        self._memory = _load_memory(state, self.model.decoder, "TAEHV decoder")
        self.frames_to_drop = _state_int(state, "frames_to_drop", "TAEHV decoder")
        self.warmed = bool(_state_int(state, "warmed", "TAEHV decoder"))
        self.frames_out = _state_int(state, "frames_out", "TAEHV decoder")
