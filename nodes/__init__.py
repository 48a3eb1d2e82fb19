"""Node classes of the pack, merged from the modules that define them.

Rules for modules here (they are loaded inside ComfyUI, whose own top-level module is also named
`nodes`): import siblings relatively (`from . import host`), the engine absolutely (`worldengine`),
and ComfyUI modules (`folder_paths`, `comfy.*`, `server`) only inside functions, so the pack
imports fast and also works without ComfyUI (unit tests, scripts).
"""
from __future__ import annotations

import importlib

from . import host

_NODE_MODULES = ("core", "world_nodes", "sanitize", "safety", "live")

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}


def _merge(module) -> None:
    for node_id, node_class in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
        if node_id in NODE_CLASS_MAPPINGS and NODE_CLASS_MAPPINGS[node_id] is not node_class:
            raise RuntimeError(f"node id {node_id!r} is defined twice (in {module.__name__} and earlier)")
        NODE_CLASS_MAPPINGS[node_id] = node_class
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}))


for _name in _NODE_MODULES:
    _merge(importlib.import_module(f".{_name}", __name__))

host.register_model_folder()
