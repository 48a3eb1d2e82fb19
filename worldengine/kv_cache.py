"""Per-session ring KV cache with local and dilated global windows.

Layer i keeps `buckets` ring slots of one frame each plus a tail slot for the frame being computed:
buffer [2, Hk, (buckets+1)*T, dh] in the compute dtype. Frame f belongs to ring slot
ceil(f/d) mod buckets and is persisted only when f mod d == 0 (d = 1 for local layers). On such a
write step the slot about to be overwritten is hidden from the query. Only the frames a layer can
ever see are allocated (the reference allocates all `global_window` frames of a global layer).
"""
from __future__ import annotations

import torch

from worldengine.config import WaypointConfig
from worldengine.errors import WaypointError


class RingKVCache:
    def __init__(self, config: WaypointConfig, dtype: torch.dtype, device: torch.device | str):
        self.tokens_per_frame = config.tokens_per_frame
        self.layer_rings = [config.ring(i) for i in range(config.n_layers)]   # (dilation, buckets)
        self.kinds = sorted(set(self.layer_rings))
        shape = lambda buckets: (2, config.n_kv_heads, (buckets + 1) * self.tokens_per_frame, config.d_head)  # noqa: E731
        self.buffers = [torch.zeros(shape(b), dtype=dtype, device=device) for _, b in self.layer_rings]
        # Layers of one (dilation, buckets) kind are written at the same frames: one flag list and one
        # mask buffer per kind. Masks are updated in place so their storage stays fixed (CUDA graphs).
        self.written = {kind: [False] * kind[1] for kind in self.kinds}
        self.mask_buffers = {kind: torch.zeros((kind[1] + 1) * self.tokens_per_frame, dtype=torch.bool,
                                               device=device) for kind in self.kinds}
        self.layer_masks = [self.mask_buffers[kind] for kind in self.layer_rings]

    @staticmethod
    def slot_of(frame: int, dilation: int, buckets: int) -> tuple[int, bool]:
        """(ring slot of frame, whether this frame is persisted)."""
        return ((frame + dilation - 1) // dilation) % buckets, frame % dilation == 0

    def prepare_masks(self, frame: int) -> list[torch.Tensor]:
        """Fill the key masks for a query at `frame`; returns one [(buckets+1)*T] bool mask per layer."""
        tokens = self.tokens_per_frame
        for kind in self.kinds:
            dilation, buckets = kind
            slot, is_write = self.slot_of(frame, dilation, buckets)
            visible = list(self.written[kind]) + [True]
            if is_write:
                visible[slot] = False
            flags = torch.tensor(visible, dtype=torch.bool).repeat_interleave(tokens)
            self.mask_buffers[kind].copy_(flags, non_blocking=True)
        return self.layer_masks

    def commit(self, frame: int):
        """After the sigma-0 cache pass of `frame`: move each layer's tail into its ring slot."""
        tokens = self.tokens_per_frame
        for buffer, kind in zip(self.buffers, self.layer_rings):
            slot, is_write = self.slot_of(frame, *kind)
            if is_write:
                buffer[:, :, slot * tokens:(slot + 1) * tokens] = buffer[:, :, -tokens:]
        for kind in self.kinds:
            slot, is_write = self.slot_of(frame, *kind)
            if is_write:
                self.written[kind][slot] = True

    def reset(self):
        for buffer in self.buffers:
            buffer.zero_()
        for kind in self.kinds:
            self.written[kind] = [False] * kind[1]

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Ring contents and written flags as CPU tensors (the tail is scratch and not kept)."""
        tokens = self.tokens_per_frame
        state = {f"kv.{i}": buffer[:, :, :-tokens].to("cpu", copy=True) for i, buffer in enumerate(self.buffers)}
        for dilation, buckets in self.kinds:
            state[f"written.{dilation}x{buckets}"] = torch.tensor(self.written[(dilation, buckets)])
        return state

    def load_state_tensors(self, state: dict[str, torch.Tensor]):
        """Restore from `state_tensors()` output; checks everything before changing anything."""
        tokens = self.tokens_per_frame
        for i, buffer in enumerate(self.buffers):
            ring_shape = (*buffer.shape[:2], buffer.shape[2] - tokens, buffer.shape[3])
            got = state.get(f"kv.{i}")
            if got is None or tuple(got.shape) != ring_shape:
                found = "missing" if got is None else list(got.shape)
                raise WaypointError(f"snapshot tensor 'kv.{i}' is {found}, expected {list(ring_shape)}")
        for dilation, buckets in self.kinds:
            got = state.get(f"written.{dilation}x{buckets}")
            if got is None or got.numel() != buckets:
                raise WaypointError(f"snapshot tensor 'written.{dilation}x{buckets}' is missing or has the wrong size")
        for i, buffer in enumerate(self.buffers):
            buffer[:, :, :-tokens].copy_(state[f"kv.{i}"])
        for dilation, buckets in self.kinds:
            self.written[(dilation, buckets)] = [bool(v) for v in state[f"written.{dilation}x{buckets}"].tolist()]
