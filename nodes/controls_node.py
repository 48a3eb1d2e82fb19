"""ControllerInput: controls from widgets and/or a control-track JSON, optionally appended to
upstream controls. The value on a WAYPOINT_CONTROLS socket is a `worldengine.ControlTrack`
(per-latent-frame controls + the seed it was recorded with)."""
from __future__ import annotations

from .world import WAYPOINT_CONTROLS

CATEGORY = "Waypoint"


def parse_keys(text: str) -> list[str]:
    """'W, Shift' / 'W+Shift' / 'w shift' -> ['W', 'Shift']; empty text -> []."""
    for separator in "+;":
        text = text.replace(separator, ",")
    parts = []
    for chunk in text.split(","):
        parts.extend(chunk.split())
    return [part for part in parts if part]


def build_controls(keys: str, mouse_dx: float, mouse_dy: float, scroll: int, repeat: int,
                   track: str = "", controls=None):
    """upstream `controls` + the frames of `track` (if given) + the widget control × `repeat`.

    The seed of the result is the first one recorded: upstream's, else the track's."""
    from worldengine.controls import ControlTrack, Controls
    from worldengine.errors import WaypointError

    parts = []
    if controls is not None:
        if not isinstance(controls, ControlTrack):
            raise WaypointError(f"controls input must come from a ControllerInput node, got {type(controls).__name__}")
        parts.append(controls)
    if track and track.strip():
        try:
            parts.append(ControlTrack.from_json(track.strip()))
        except WaypointError as err:
            raise WaypointError(f"ControllerInput track: {err}") from None
    if repeat < 0:
        raise WaypointError(f"repeat must be >= 0, got {repeat}")
    if repeat:
        try:
            one = Controls.from_keys(parse_keys(keys), mouse=(mouse_dx, mouse_dy), scroll=scroll)
        except WaypointError as err:
            raise WaypointError(f"ControllerInput keys {keys!r}: {err}") from None
        parts.append(ControlTrack((one,) * repeat, seed=parts[0].seed if parts else 0))
    if not parts or sum(len(p) for p in parts) == 0:
        raise WaypointError("ControllerInput produced no frames: set repeat >= 1 or give a control track")
    result = parts[0]
    for part in parts[1:]:
        result = result + part
    return result


class WaypointControllerInput:
    DESCRIPTION = "Controller input for a Waypoint world: keys held, mouse motion and scroll, per latent frame."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "keys": ("STRING", {"default": "W", "multiline": False,
                                    "tooltip": "Keys held, by name, separated by commas or '+': e.g. 'W, Shift', "
                                               "'Space', 'LMB'. Empty = no key. Names: letters, digits, "
                                               "Shift/Ctrl/Alt, Space, arrows (Up/Down/Left/Right), F1-F24, LMB/RMB/MMB."}),
                "mouse_dx": ("FLOAT", {"default": 0.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                       "tooltip": "Mouse motion to the right per latent frame (look right > 0)."}),
                "mouse_dy": ("FLOAT", {"default": 0.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                       "tooltip": "Mouse motion downwards per latent frame (look down > 0)."}),
                "scroll": ("INT", {"default": 0, "min": -1, "max": 1,
                                   "tooltip": "Scroll wheel per frame: -1, 0 or +1."}),
                "repeat": ("INT", {"default": 1, "min": 0, "max": 100000,
                                   "tooltip": "How many latent frames the widget control above lasts. "
                                              "0 = use only the track / upstream controls."}),
            },
            "optional": {
                "track": ("STRING", {"default": "", "multiline": True,
                                     "tooltip": "Optional control track JSON: {\"format\": \"waypoint-control-track/1\", "
                                                "\"seed\": 0, \"frames\": [{\"keys\": [\"W\"], \"mouse\": [0.1, 0], "
                                                "\"scroll\": 0}, ...]} or a bare list of frames. Its frames come "
                                                "before the widget control."}),
                "controls": (WAYPOINT_CONTROLS, {"tooltip": "Optional upstream controls; this node's frames are "
                                                            "appended after them."}),
            },
        }

    RETURN_TYPES = (WAYPOINT_CONTROLS,)
    RETURN_NAMES = ("controls",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, keys, mouse_dx, mouse_dy, scroll, repeat, track="", controls=None):
        return (build_controls(keys, mouse_dx, mouse_dy, scroll, repeat, track, controls),)
