"""Live Play node: binds a workflow world to its widget's live session and outputs what was played."""
from __future__ import annotations

from worldengine.options import Preview

from ..world import WAYPOINT_CONTROLS, WAYPOINT_WORLD, World
from .bindings import bind, resolve_preview

CATEGORY = "Waypoint"


def idle_track(seed: int):
    """What the node outputs before anything was played: one frame of no input."""
    from worldengine.controls import Controls, ControlTrack
    return ControlTrack((Controls(),), seed=seed)


class WaypointLivePlay:
    DESCRIPTION = ("Play the world live inside ComfyUI: queue once, click the widget, press Play and drive with "
                   "keyboard + mouse (Esc releases). Queue again to output what you played as a control track "
                   "that Step World (seed -1) replays exactly.")

    @classmethod
    def INPUT_TYPES(cls):
        from worldengine.sanitize.guard import LIVE_STRIDE, LiveSafety
        return {
            "required": {
                "world": (WAYPOINT_WORLD, {"tooltip": "The world to play from (e.g. Seed Frame's). Live play runs on "
                                                      "a copy; this world is never changed."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Noise seed of the live session; recorded in the output track."}),
                "preview": (Preview.values(), {"default": "auto",
                                             "tooltip": "What the widget shows: decoded frames (the model's "
                                                        "autoencoder) or a false-colour view of the latent (fast on "
                                                        "CPU). auto = decoded on GPU, latent on CPU."}),
            },
            "optional": {
                "safety": (LiveSafety.values(), {
                    "default": LiveSafety.OFF.value,
                    "tooltip": f"redirect: every {LIVE_STRIDE}th step's decoded frames go through a local nudity "
                               "classifier; a flagged step is shown black and the world goes back to the last "
                               "clean check, play goes on. Needs the optional [safety] extra (NudeNet, AGPL): "
                               "without it the node refuses and names the install command."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    RETURN_TYPES = (WAYPOINT_CONTROLS,)
    RETURN_NAMES = ("controls",)
    FUNCTION = "bind_world"
    CATEGORY = CATEGORY
    OUTPUT_NODE = True

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")   # the recording changes outside the graph: always run

    def bind_world(self, world, seed=0, preview="auto", safety="off", unique_id=None):
        from worldengine.errors import WaypointError
        from worldengine.sanitize.guard import LiveSafety, live_guard
        if not isinstance(world, World):
            raise WaypointError(f"LivePlay takes a Waypoint world, got {type(world).__name__}")
        safety = LiveSafety.parse(safety).value
        if safety != LiveSafety.OFF.value:   # refuse now, at queue time, not when Play is pressed
            resolve_preview(preview, world.engine, safety)
            live_guard(safety)
        node_id = str(unique_id) if unique_id is not None else "default"
        binding = bind(node_id, world, seed, preview, safety)
        track = binding.current_track()
        if track is None or len(track) == 0:
            track = idle_track(int(seed))
        info = {"node_id": node_id, "recorded_frames": len(track), "seed": track.seed,
                "frame_index": world.frame_index, "safety": safety}
        return {"ui": {"waypoint_live": [info]}, "result": (track,)}
