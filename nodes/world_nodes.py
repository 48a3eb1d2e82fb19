"""World utility nodes: save a world to disk (a branch point), load it back, set a Waypoint-1 prompt."""
from __future__ import annotations

import dataclasses
import os
import re
import threading
from pathlib import Path

from . import codec, host, model_management
from .world import WAYPOINT_ENGINE, WAYPOINT_WORLD, DecodeLink, new_world

CATEGORY = "Waypoint"
SNAPSHOT_SUFFIX = ".safetensors"


def _error(message: str):
    from worldengine.errors import WaypointError
    return WaypointError(message)


def output_dir() -> Path:
    try:
        import folder_paths
        return Path(folder_paths.get_output_directory())
    except ImportError:
        return Path.cwd() / "output"


def _input_dir() -> Path | None:
    try:
        import folder_paths
        return Path(folder_paths.get_input_directory())
    except ImportError:
        return None


_numbering_lock = threading.Lock()


def next_snapshot_path(prefix: str, suffix: str = SNAPSHOT_SUFFIX) -> Path:
    """`<output>/<prefix>_00001<suffix>`, one more than the highest number in use for that prefix (any
    suffix), found with one directory listing; refuses to leave the output folder."""
    root = output_dir().resolve()
    base = (root / prefix).resolve()
    if root not in base.parents:
        raise _error(f"filename_prefix {prefix!r} points outside the output folder {root}")
    base.parent.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(base.name) + r"_(\d{1,12})(\.[A-Za-z0-9]+)?$")
    with _numbering_lock:
        used = [int(m[1]) for m in map(pattern.match, os.listdir(base.parent)) if m]
        return base.parent / f"{base.name}_{max(used, default=0) + 1:05d}{suffix}"


def _inside(root: Path, path: Path) -> bool:
    root = root.resolve()
    return root in path.resolve().parents


def find_snapshot(path_text: str) -> Path:
    """An existing snapshot file: absolute (an explicit choice), or relative to the output folder, then
    the input folder, never leaving them. Missing and refused paths get the same error: it never tells
    what exists."""
    text = (path_text or "").strip()
    if not text:
        raise _error("LoadWorldSnapshot: give the path of a .safetensors world snapshot")
    path = Path(text).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        roots = [output_dir()] + ([_input_dir()] if _input_dir() else [])
        candidates = [root / text for root in roots if _inside(root, root / text)]
    for candidate in candidates:
        if candidate.suffix == SNAPSHOT_SUFFIX and candidate.is_file():
            return candidate
    raise _error(f"world snapshot {text[:200]!r} not found: give a {SNAPSHOT_SUFFIX} file inside the output or "
                 "input folder (as Save World Snapshot reports it), or an absolute path")


class WaypointSaveWorldSnapshot:
    DESCRIPTION = ("Save a world (its memory, frame counter, prompt and decoder stream) to a .safetensors file in "
                   "the output folder: a branch point to load later with Load World Snapshot.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "world": (WAYPOINT_WORLD, {"tooltip": "The world to save."}),
            "filename_prefix": ("STRING", {"default": "waypoint/world",
                                           "tooltip": "File name prefix inside the output folder; a number and "
                                                      ".safetensors are appended."}),
        }}

    RETURN_TYPES = (WAYPOINT_WORLD, "STRING")
    RETURN_NAMES = ("world", "path")
    FUNCTION = "save"
    CATEGORY = CATEGORY
    OUTPUT_NODE = True

    def save(self, world, filename_prefix="waypoint/world"):
        path = next_snapshot_path(filename_prefix)
        model_management.make_room(world.engine)
        with world.advance() as session:
            session.save_snapshot(path, codec=_codec_of(world))
        relative = os.path.relpath(path, output_dir())
        return {"ui": {"text": [relative]}, "result": (world, relative)}


def _codec_of(world):
    """The world's encoder + decoder streams as one `WorldCodec` (None without an AE)."""
    ae = world.engine.autoencoder
    if ae is None:
        return None
    encoder = codec.copy_encoder(world.encoder) if world.encoder is not None else None
    decoder = world.decode_tail.state_after(world.engine) if world.decode_tail is not None else None
    return ae.codec(encoder, decoder)


class WaypointLoadWorldSnapshot:
    DESCRIPTION = "Load a world saved by Save World Snapshot (it must come from the same model)."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "engine": (WAYPOINT_ENGINE, {"tooltip": "The model the snapshot was taken with."}),
            "path": ("STRING", {"default": "waypoint/world_00001.safetensors",
                                "tooltip": "Snapshot file: relative to the output folder (as Save World "
                                           "Snapshot reports it), the input folder, or an absolute path."}),
        }}

    RETURN_TYPES = (WAYPOINT_WORLD,)
    RETURN_NAMES = ("world",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def IS_CHANGED(cls, engine=None, path=""):
        try:
            found = find_snapshot(path)
        except ValueError:
            return path
        return f"{found}:{found.stat().st_mtime_ns}"

    def load(self, engine, path):
        file = find_snapshot(path)
        model_management.make_room(engine)
        empty = new_world(engine)
        streams = engine.autoencoder.codec() if engine.autoencoder is not None else None
        with empty.advance() as session:
            has_streams = session.load_snapshot(file, codec=streams)
            world = empty.derive()
        if not has_streams:
            return (world,)
        return (dataclasses.replace(world, decode_tail=DecodeLink.resume(streams.decoder), encoder=streams.encoder),)


_encoders: dict = {}
_encoders_lock = threading.Lock()


def prompt_encoder(source: str, device: str):
    """Module-level cache of UMT5 prompt encoders (one per source and device)."""
    from worldengine.prompt_encoder import PromptEncoder
    key = (source, device)
    with _encoders_lock:
        if key not in _encoders:
            _encoders.clear()   # one text encoder at a time: UMT5-XL is large
            _encoders[key] = PromptEncoder.from_pretrained(source, models_dir=host.waypoint_model_dirs()[0],
                                                           device=device)
        return _encoders[key]


class WaypointSetWorldPrompt:
    DESCRIPTION = ("Waypoint-1 only: set or replace the text prompt of a world (from the next frame on). Give it "
                   "an engine to start an empty world with this prompt (then seed it with Seed Frame's world "
                   "input), or a world to change its prompt mid-rollout. Feed it the output of Sanitize Prompt.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"default": "An explorable world", "multiline": True,
                                    "tooltip": "The prompt; empty = the model's default prompt."}),
                "encoder": ("STRING", {"default": "google/umt5-xl",
                                       "tooltip": "UMT5 text encoder: a folder under models/waypoint/, a path, or "
                                                  "a Hugging Face repo id."}),
            },
            "optional": {
                "world": (WAYPOINT_WORLD, {"tooltip": "A world of a text-conditioned model (Waypoint-1) whose "
                                                      "prompt to change; it is left unchanged itself."}),
                "engine": (WAYPOINT_ENGINE, {"tooltip": "Or: the model, to start a new, empty world with this "
                                                        "prompt (used when no world is connected)."}),
            },
        }

    RETURN_TYPES = (WAYPOINT_WORLD,)
    RETURN_NAMES = ("world",)
    FUNCTION = "set_prompt"
    CATEGORY = CATEGORY

    def set_prompt(self, text, encoder="google/umt5-xl", world=None, engine=None):
        if world is None and engine is None:
            raise _error("SetWorldPrompt: connect a world (to change its prompt) or an engine (to start one)")
        world = world if world is not None else new_world(engine)
        model_management.make_room(world.engine)
        config = world.engine.config
        if not config.has_prompt:
            raise _error(f"SetWorldPrompt: this {config.model_type} model takes no text prompt")
        embedding, _ = prompt_encoder(encoder, "cpu").encode(text)
        with world.advance() as session:
            session.set_prompt(embedding)
            return (world.derive(),)


NODE_CLASS_MAPPINGS = {
    "WaypointSaveWorldSnapshot": WaypointSaveWorldSnapshot,
    "WaypointLoadWorldSnapshot": WaypointLoadWorldSnapshot,
    "WaypointSetWorldPrompt": WaypointSetWorldPrompt,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WaypointSaveWorldSnapshot": "Save World Snapshot (Waypoint)",
    "WaypointLoadWorldSnapshot": "Load World Snapshot (Waypoint)",
    "WaypointSetWorldPrompt": "Set World Prompt (Waypoint-1)",
}
