"""What the nodes need from the ComfyUI host, each with a fallback so the nodes also run (in unit
tests, in scripts) where ComfyUI is not importable.

ComfyUI modules are imported inside the functions: at pack import time they may not be ready, and
outside ComfyUI they do not exist.
"""
from __future__ import annotations

import os
from pathlib import Path

MODEL_FOLDER = "waypoint"
# Where models go when ComfyUI is absent (scripts, tests); override with WAYPOINT_MODELS_DIR.
_FALLBACK_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def _folder_paths():
    try:
        import folder_paths  # ComfyUI's module
    except ImportError:
        return None
    return folder_paths


def register_model_folder() -> None:
    """Register `<models_dir>/waypoint` as the "waypoint" model folder (idempotent, keeps any
    folders the user configured in extra_model_paths.yaml)."""
    folder_paths = _folder_paths()
    if folder_paths is None:
        return
    path = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    if path not in waypoint_model_dirs():
        folder_paths.add_model_folder_path(MODEL_FOLDER, path)


def waypoint_model_dirs() -> list[str]:
    """Every folder that may hold Waypoint model folders, the default one first."""
    override = os.environ.get("WAYPOINT_MODELS_DIR")
    if override:
        return [override]
    folder_paths = _folder_paths()
    if folder_paths is None:
        return [str(_FALLBACK_MODELS_DIR / MODEL_FOLDER)]
    try:
        return list(folder_paths.get_folder_paths(MODEL_FOLDER))
    except KeyError:
        return [os.path.join(folder_paths.models_dir, MODEL_FOLDER)]


def local_model_names() -> list[str]:
    """Names of model folders (holding a config.yaml) under the waypoint model folders."""
    names = []
    for root in waypoint_model_dirs():
        if not os.path.isdir(root):
            continue
        for entry in sorted(os.listdir(root)):
            if os.path.isfile(os.path.join(root, entry, "config.yaml")) and entry not in names:
                names.append(entry)
    return names


def resolve_local_model(name: str) -> str | None:
    """Absolute folder of a local model name, or None when no waypoint folder has it. A name is a
    folder *inside* a waypoint folder: an absolute path or one that leaves the folder ('..') is no
    local name (the engine loader takes an absolute folder as typed, and refuses '..')."""
    if not name or os.path.isabs(name) or os.path.expanduser(name) != name:
        return None
    for root in waypoint_model_dirs():
        folder = os.path.normpath(os.path.join(root, name))
        if os.path.commonpath([folder, os.path.normpath(root)]) != os.path.normpath(root) or \
                folder == os.path.normpath(root):
            return None
        if os.path.isfile(os.path.join(folder, "config.yaml")):
            return folder
    return None


def default_device() -> str:
    """ComfyUI's chosen torch device (honours --cpu), else CUDA when present, else CPU."""
    try:
        import comfy.model_management as mm
        return str(mm.get_torch_device())
    except ImportError:
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed Cancel (no-op outside ComfyUI)."""
    try:
        import comfy.model_management as mm
    except ImportError:
        return
    mm.throw_exception_if_processing_interrupted()


def _executing_node_id() -> str | None:
    """Id of the node ComfyUI is running now (newer ComfyUI's execution context; None on older hosts,
    whose progress hook adds the running node itself)."""
    try:
        from comfy_execution.utils import get_executing_context
    except ImportError:
        return None
    context = get_executing_context()
    return None if context is None else context.node_id


class Progress:
    """ComfyUI's progress bar over `total` units, for the running node so the browser draws it on that
    node; silent outside ComfyUI."""

    def __init__(self, total: int):
        try:
            import comfy.utils
        except ImportError:
            self._bar = None
            return
        node_id = _executing_node_id()
        bar = comfy.utils.ProgressBar
        self._bar = bar(total) if node_id is None else bar(total, node_id=node_id)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)
