"""ComfyUI entry point of the Waypoint world-model pack.

ComfyUI imports this file from custom_nodes/<folder>/ as a package. Importing it is cheap: the
engine, torch-heavy work and model loading happen when a node first runs. Nothing here changes
process-wide torch settings.
"""
import os
import sys

# The engine package `worldengine` sits next to this file; make it importable by that name
# (appended, so it never shadows ComfyUI's own top-level modules such as `nodes`).
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
