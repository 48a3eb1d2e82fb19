"""Node classes of the pack, merged from the modules that define them.

Rules for modules here (they are loaded inside ComfyUI, whose own top-level module is also named
`nodes`): import siblings relatively (`from . import host`), the engine absolutely (`worldengine`),
and ComfyUI modules (`folder_paths`, `comfy.*`, `server`) only inside functions, so the pack
imports fast and also works without ComfyUI (unit tests, scripts).
"""
from __future__ import annotations

import importlib
import logging

from . import host

_LOG = logging.getLogger(__name__)
# Modules defining nodes; the optional ones belong to other parts of the pack and may be absent.
_REQUIRED = ("core", "world_nodes")
_OPTIONAL = ("sanitize", "live")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}


def _merge(module) -> None:
    for node_id, node_class in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
        if node_id in NODE_CLASS_MAPPINGS and NODE_CLASS_MAPPINGS[node_id] is not node_class:
            raise RuntimeError(f"node id {node_id!r} is defined twice (in {module.__name__} and earlier)")
        NODE_CLASS_MAPPINGS[node_id] = node_class
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}))


for _name in _REQUIRED:
    _merge(importlib.import_module(f".{_name}", __name__))
for _name in _OPTIONAL:
    try:
        _module = importlib.import_module(f".{_name}", __name__)
    except ModuleNotFoundError as _err:
        if _err.name != f"{__name__}.{_name}":
            raise   # the module exists but something it imports is missing: a real error
        continue
    _merge(_module)

host.register_model_folder()
