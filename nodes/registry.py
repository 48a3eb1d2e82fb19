"""Module-level engine registry: one loaded `WorldEngine` per (model, device, dtype, quant, compile).

Why module level: ComfyUI re-creates node instances freely and forgets cached outputs when a
workflow changes, but modules live as long as the server. Loading a 1B model takes seconds to
minutes, so every node (and the live-play loop) asking for the same model and options gets the
same engine.

ComfyUI: an engine handed out here is registered with ComfyUI's model management
(`model_management`), which may offload it to the CPU when another model needs the GPU; the next
request moves it back. Before a load, ComfyUI is asked to free the memory the model will need.

Lifetime: the registry holds a *strong* reference only to the most recently requested engine (so
switching workflows or pressing "free" keeps it warm) and *weak* references to the rest. An engine
that nothing else references any more (no cached node output, no world, no live session) is
therefore collected; its memory is returned when another engine is loaded.
"""
from __future__ import annotations

import gc
import threading
import weakref
from dataclasses import dataclass

from . import model_management


@dataclass(frozen=True)
class EngineKey:
    """What identifies one loaded engine. `model` is a resolved folder path or a repo id."""

    model: str
    device: str
    dtype: str
    quant: str
    compile: str   # a `Compile` value: auto, on or off


_lock = threading.RLock()
_engines: dict[EngineKey, "weakref.ref"] = {}
_pinned: list = []          # [(key, engine)] for the most recently requested engine
_load_count = 0             # number of real loads, for tests and the log


def get_engine(key: EngineKey, models_dir: str | None = None):
    """The engine for `key`, loading it on first request (thread-safe)."""
    global _load_count
    with _lock:
        engine = _lookup(key)
        if engine is None:
            _drop_dead_refs()
            gc.collect()  # give back memory of engines released since the last load first
            engine = _load(key, models_dir)
            _load_count += 1
            _engines[key] = weakref.ref(engine)
        _pinned[:] = [(key, engine)]
    model_management.make_room(engine)   # listed in ComfyUI's loaded models; moved back if offloaded
    return engine


def loaded_keys() -> list[EngineKey]:
    """Keys of engines still alive (pinned or referenced elsewhere)."""
    with _lock:
        _drop_dead_refs()
        return list(_engines)


def load_count() -> int:
    return _load_count


def clear() -> None:
    """Forget every engine (tests; an explicit unload). Live references elsewhere keep theirs."""
    with _lock:
        _engines.clear()
        _pinned.clear()
    gc.collect()
    _empty_device_cache()


def _lookup(key: EngineKey):
    ref = _engines.get(key)
    return ref() if ref is not None else None


def _drop_dead_refs() -> None:
    for key in [k for k, ref in _engines.items() if ref() is None]:
        del _engines[key]


def _load(key: EngineKey, models_dir: str | None):
    from worldengine.engine import load_engine
    _empty_device_cache()
    model_management.free_for(_estimated_bytes(key, models_dir), key.device)
    return load_engine(key.model, models_dir=models_dir, device=key.device, dtype=key.dtype,
                       quant=key.quant, compile=key.compile)


def _estimated_bytes(key: EngineKey, models_dir: str | None) -> int:
    """What the engine will need on its device (weights, one session, workspace), from its config; 0 when
    the config cannot be read here (the load itself then reports why)."""
    from worldengine.config import load_config
    from worldengine.errors import WaypointError
    from worldengine.hub import resolve_model_folder
    from worldengine.memory import model_memory
    from worldengine.options import torch_device, torch_dtype
    try:
        config = load_config(resolve_model_folder(key.model, models_dir))
        return model_memory(config, torch_dtype(key.dtype, torch_device(key.device)), key.quant).total()
    except (WaypointError, OSError):
        return 0


def _empty_device_cache() -> None:
    import sys
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
