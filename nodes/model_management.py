"""A loaded engine in ComfyUI's model management, beside the core models (SDXL, FLUX, upscalers...).

ComfyUI keeps `comfy.model_management.current_loaded_models`: the models on the GPU, each with its
size, which it unloads (offloads to the CPU) when another model needs the room, and all at once on
"Unload Models" / `POST /free` with `unload_models`. A core loader hands out a `ModelPatcher`;
`load_models_gpu([patcher])` before use frees room for it and moves it back if it was offloaded.

`EnginePatcher` is the small ModelPatcher-compatible side of a `WorldEngine` (the methods model
management calls, for the vendored 2024 ComfyUI and the later `loaded_size`/`partially_*`/`detach`
API), and `make_room(engine)` is the call every Waypoint node makes before it uses the engine.

- size: `engine.memory_estimate()["total"]`: weights as quantized, autoencoder, every live session's
  KV cache, estimated forward workspace (docs/memory.md), re-read whenever ComfyUI asks;
- unload / offload: the engine moves in place to ComfyUI's offload device (weights, autoencoder, KV
  buffers; `WorldEngine.to`), so worlds survive; the next node moves it back. A compiled forward
  re-guards on the device and its CUDA graphs re-record on the new addresses at the first pass;
- the patcher holds the engine weakly: an engine nothing else references is still freed (registry).

Outside ComfyUI (no `comfy` module) `make_room` does nothing: the engine works exactly as before.
"""
from __future__ import annotations

import logging
import sys
import threading
import weakref

LOG = logging.getLogger("comfyui-waypoint")
_lock = threading.Lock()


class EnginePatcher:
    """What `comfy.model_management` sees of one engine (duck-typed `ModelPatcher`)."""

    def __init__(self, engine, load_device, offload_device):
        self._engine = weakref.ref(engine)
        self.load_device, self.offload_device = load_device, offload_device
        self.current_device = engine.device
        self.model = WaypointWorldModel()     # ComfyUI logs `model.model.__class__.__name__`; no engine ref
        self.loads = self.unloads = 0         # moves to the load / offload device, for tests and the log
        self.patches, self.object_patches, self.model_options = {}, {}, {"transformer_options": {}}
        self.model_lowvram = False

    @property
    def engine(self):
        return self._engine()

    # ---- what the 2024 LoadedModel calls ----------------------------------------------------------
    def model_size(self) -> int:
        engine = self.engine
        return engine.memory_estimate()["total"] if engine is not None else 0

    def model_dtype(self):
        engine = self.engine
        return engine.dtype if engine is not None else None

    def model_patches_to(self, device) -> None:
        """No per-model patches (LoRA-style) exist for a world model."""

    def is_clone(self, other) -> bool:
        return isinstance(other, EnginePatcher) and other.engine is self.engine and self.engine is not None

    def clone_has_same_weights(self, other) -> bool:
        return self.is_clone(other)

    def patch_model(self, device_to=None, patch_weights=True):
        self._move(device_to if device_to is not None else self.load_device)
        return self.model

    def patch_model_lowvram(self, device_to=None, lowvram_model_memory=0):
        # A world model runs every layer each pass: partial residency would page the whole model per
        # frame, so it is loaded whole (ComfyUI has already freed what it could).
        return self.patch_model(device_to)

    def unpatch_model(self, device_to=None, unpatch_weights=True) -> None:
        if unpatch_weights and device_to is not None:
            self._move(device_to)

    # ---- the later API (loaded_size / partially_* / detach), same behaviour ----------------------
    def loaded_size(self) -> int:
        return self.model_size() if self._on(self.load_device) else 0

    def current_loaded_device(self):
        return self.current_device

    def partially_load(self, device_to, extra_memory=0, force_patch_weights=False) -> int:
        self._move(device_to)
        return self.model_size()

    def partially_unload(self, device_to, memory_to_free=0) -> int:
        freed = self.loaded_size()
        self._move(device_to)
        return freed

    def detach(self, unpatch_all=True):
        self._move(self.offload_device)
        return self.model

    def model_patches_models(self) -> list:
        return []

    def _on(self, device) -> bool:
        return str(self.current_device) == str(device)

    def _move(self, device) -> None:
        engine = self.engine
        if engine is None or self._on(device):
            self.current_device = device
            return
        engine.to(device)
        self.current_device = device
        if str(device) == str(self.load_device):
            self.loads += 1
        else:
            self.unloads += 1
        LOG.info("[waypoint] engine moved to %s (%s)", device, engine.describe())


class WaypointWorldModel:
    """Stands in for `ModelPatcher.model` (an nn.Module there) in ComfyUI's log lines and weak references."""


def comfy_model_management():
    """ComfyUI's model management module when running inside ComfyUI, else None (never imported here:
    a ComfyUI process has imported it long before any node runs)."""
    return sys.modules.get("comfy.model_management")


def patcher_for(engine) -> EnginePatcher | None:
    """The engine's patcher (one per engine, kept on it), or None outside ComfyUI."""
    mm = comfy_model_management()
    if mm is None:
        return None
    with _lock:
        patcher = getattr(engine, "_comfy_patcher", None)
        if patcher is None:
            patcher = EnginePatcher(engine, engine.device, _offload_device(mm, engine.device))
            engine._comfy_patcher = patcher
        return patcher


def _offload_device(mm, device):
    import torch
    if torch.device(device).type == "cpu":
        return torch.device("cpu")
    return mm.unet_offload_device()


def free_for(size: int, device) -> None:
    """Before loading a model of `size` bytes onto `device`: have ComfyUI unload what it must (no-op on
    the CPU or outside ComfyUI)."""
    import torch
    mm, device = comfy_model_management(), torch.device(device) if device != "auto" else None
    if mm is None or size <= 0 or device is None or device.type == "cpu":
        return
    mm.free_memory(size * 1.3 + mm.minimum_inference_memory(), device)


def make_room(engine) -> None:
    """Before a node uses `engine`: have ComfyUI free memory for it (unloading other models) and move it
    back if it was offloaded. Registers the engine in `current_loaded_models` on first use."""
    patcher = patcher_for(engine)
    if patcher is None:
        return
    mm = comfy_model_management()
    mm.load_models_gpu([patcher])


def is_loaded(engine) -> bool:
    """Whether ComfyUI lists `engine` among its loaded models."""
    mm, patcher = comfy_model_management(), getattr(engine, "_comfy_patcher", None)
    if mm is None or patcher is None:
        return False
    return any(getattr(entry, "model", None) is patcher for entry in mm.current_loaded_models)
