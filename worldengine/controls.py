"""Controller input: pressed keys (Owl-Control / Windows virtual-key codes), mouse delta, scroll.

`Controls` is one frame's input; `ControlTrack` is a recording (per-frame controls + noise seed),
which with the seed image fully determines a rollout.
"""
from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Iterable

import torch

from worldengine.errors import WaypointError

TRACK_FORMAT = "waypoint-control-track/1"
TRACK_FIELDS = frozenset({"format", "seed", "frames"})
MAX_TRACK_FRAMES = 1_000_000
# A track's to_json frame is ~50-90 bytes; texts beyond this cap are refused before any parsing.
MAX_TRACK_BYTES = 128 * 1024 * 1024
MAX_CONTROLS_BYTES = 64 * 1024       # one Controls object as JSON text
MAX_JSON_DEPTH = 8                   # a track is 4 deep: {frames: [{mouse: [...]}]}
MAX_MOUSE = 1e4                      # |dx|, |dy| per frame; the live socket clamps far lower
SEED_LIMIT = 2 ** 64                 # seeds are in [0, 2**64): what torch.Generator.manual_seed takes
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = str.maketrans("", "", "".join(chr(c) for c in range(128) if chr(c) not in "[]{}"))


def _keycode_table() -> dict[str, int]:
    table = {
        "LMB": 1, "RMB": 2, "MMB": 4, "MOUSE4": 5, "MOUSE5": 6,
        "BACKSPACE": 8, "TAB": 9, "ENTER": 13, "SHIFT": 16, "CTRL": 17, "ALT": 18, "CAPSLOCK": 20,
        "ESC": 27, "SPACE": 32, "PAGEUP": 33, "PAGEDOWN": 34, "END": 35, "HOME": 36,
        "LEFT": 37, "UP": 38, "RIGHT": 39, "DOWN": 40,
        "LSHIFT": 160, "RSHIFT": 161, "LCTRL": 162, "RCTRL": 163, "LALT": 164, "RALT": 165,
        ";": 186, "=": 187, ",": 188, "-": 189, ".": 190, "/": 191, "`": 192,
        "[": 219, "\\": 220, "]": 221, "'": 222,
    }
    table.update({chr(c): c for c in range(ord("A"), ord("Z") + 1)})
    table.update({str(d): 48 + d for d in range(10)})
    table.update({f"NUMPAD{d}": 96 + d for d in range(10)})
    table.update({f"F{n}": 111 + n for n in range(1, 25)})
    return table


KEYCODES: dict[str, int] = _keycode_table()
_ALIASES = {"CONTROL": "CTRL", "ESCAPE": "ESC", "RETURN": "ENTER", "MOUSE1": "LMB", "MOUSE2": "RMB",
            "MOUSE3": "MMB", "ARROWLEFT": "LEFT", "ARROWRIGHT": "RIGHT", "ARROWUP": "UP",
            "ARROWDOWN": "DOWN", " ": "SPACE"}


def keycode(name: str | int) -> int:
    """Owl-Control code of a key name ("W", "Space", "LMB", "Left", …) or a code given as int/str."""
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    text = str(name).strip()
    if text.isascii() and text.isdigit() and len(text) > 1:
        return int(text)
    upper = _ALIASES.get(text.upper(), text.upper())
    if upper not in KEYCODES:
        raise WaypointError(f"unknown key name {name!r:.80}; known names: {', '.join(sorted(KEYCODES))}")
    return KEYCODES[upper]


@dataclass(frozen=True)
class Controls:
    """One frame of controller input.

    buttons: pressed key codes in [0, n_buttons); mouse: (dx, dy) finite floats, the motion since the
    previous frame; scroll: -1, 0 or +1.
    """

    buttons: frozenset[int] = field(default_factory=frozenset)
    mouse: tuple[float, float] = (0.0, 0.0)
    scroll: int = 0

    def __post_init__(self):
        try:
            if isinstance(self.buttons, (str, bytes, dict)) or any(
                    isinstance(b, (bool, float, str, bytes)) for b in self.buttons):
                raise TypeError   # "87" is not {8, 7}, and True is not key 1
            buttons = frozenset(int(b) for b in self.buttons)
        except (TypeError, ValueError):
            raise WaypointError(f"buttons must be integer key codes, got {self.buttons!r}") from None
        object.__setattr__(self, "buttons", buttons)
        try:
            if isinstance(self.mouse, (str, bytes)) or any(isinstance(m, (bool, str, bytes)) for m in self.mouse):
                raise TypeError
            mouse = tuple(float(m) for m in self.mouse)
        except (TypeError, ValueError, OverflowError):
            raise WaypointError(f"mouse must be two numbers (dx, dy), got {self.mouse!r:.80}") from None
        if len(mouse) != 2 or not all(math.isfinite(m) and abs(m) <= MAX_MOUSE for m in mouse):
            raise WaypointError(f"mouse must be two finite numbers (dx, dy) with |m| <= {MAX_MOUSE:g}, "
                                f"got {self.mouse!r:.80}")
        object.__setattr__(self, "mouse", mouse)
        if self.scroll not in (-1, 0, 1) or isinstance(self.scroll, bool):
            raise WaypointError(f"scroll must be -1, 0 or 1, got {self.scroll!r}")
        object.__setattr__(self, "scroll", int(self.scroll))
        bad = sorted(b for b in self.buttons if not 0 <= b < 256)
        if bad:
            raise WaypointError(f"key code(s) {bad} out of range 0..255")

    @classmethod
    def from_keys(cls, keys: Iterable[str | int] = (), mouse=(0.0, 0.0), scroll: int = 0) -> "Controls":
        return cls(frozenset(keycode(k) for k in keys), mouse, scroll)

    @classmethod
    def from_json(cls, data: dict | str) -> "Controls":
        if isinstance(data, (str, bytes)):
            data = _parse_json(data, MAX_CONTROLS_BYTES)
        if not isinstance(data, dict):
            raise WaypointError(f"controls must be an object, got {type(data).__name__}")
        unknown = set(data) - {"buttons", "keys", "mouse", "scroll"}
        if unknown:
            raise WaypointError(f"unknown controls field(s) {sorted(map(str, unknown))!r:.200}")
        for name in ("keys", "buttons", "mouse"):
            if not isinstance(data.get(name, []), list):
                raise WaypointError(f"controls field {name!r} must be a list, got {data[name]!r:.80}")
        if len(data.get("keys", [])) + len(data.get("buttons", [])) > 256:
            raise WaypointError("controls hold more than 256 keys/buttons")
        codes = [keycode(k) for k in data.get("keys", [])] + list(data.get("buttons", []))
        return cls(tuple(codes), tuple(data.get("mouse", (0.0, 0.0))), data.get("scroll", 0))   # checked there

    def to_json(self) -> dict:
        return {"buttons": sorted(self.buttons), "mouse": list(self.mouse), "scroll": self.scroll}

    def check_buttons(self, n_buttons: int):
        bad = sorted(b for b in self.buttons if b >= n_buttons)
        if bad:
            raise WaypointError(f"key code(s) {bad} out of range for this model (n_buttons {n_buttons})")

    def to_vector(self, n_buttons: int, dtype: torch.dtype, device="cpu") -> torch.Tensor:
        """[n_buttons + 3] input vector: mouse dx, dy, then the buttons (1.0 pressed), then scroll."""
        self.check_buttons(n_buttons)
        vector = torch.zeros(n_buttons + 3, dtype=dtype, device=device)
        vector[0], vector[1] = self.mouse
        if self.buttons:
            vector[2 + torch.tensor(sorted(self.buttons), device=device)] = 1.0
        vector[-1] = float(self.scroll)
        return vector


@dataclass(frozen=True)
class ControlTrack:
    """A recording: one Controls per generated frame, plus the noise seed of the rollout."""

    frames: tuple[Controls, ...]
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "frames", tuple(self.frames))
        if not all(isinstance(c, Controls) for c in self.frames):
            raise WaypointError("a control track holds Controls objects only")
        if len(self.frames) > MAX_TRACK_FRAMES:
            raise WaypointError(f"control track has {len(self.frames)} frames; the cap is {MAX_TRACK_FRAMES}")
        seed = self.seed
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
            raise WaypointError(f"control track seed must be an integer in [0, 2**64), got {seed!r:.80}")

    def __len__(self):
        return len(self.frames)

    def __add__(self, other: "ControlTrack") -> "ControlTrack":
        return ControlTrack(self.frames + other.frames, self.seed)

    @classmethod
    def from_json(cls, data: dict | list | str) -> "ControlTrack":
        """Accepts the track object, or a bare list of per-frame controls (seed 0)."""
        if isinstance(data, (str, bytes)):
            bare_list = data.lstrip()[:1] in ("[", b"[")   # else one more object: the track itself
            data = _parse_json(data, MAX_TRACK_BYTES, max_objects=MAX_TRACK_FRAMES + (not bare_list))
        if isinstance(data, list):
            data = {"format": TRACK_FORMAT, "frames": data}
        if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
            raise WaypointError('a control track is {"format": ..., "seed": int, "frames": [...]}')
        unknown = set(data) - TRACK_FIELDS
        if unknown:
            raise WaypointError(f"unknown control track field(s) {sorted(map(str, unknown))!r:.200}; "
                                f"a track has {sorted(TRACK_FIELDS)}")
        if data.get("format") != TRACK_FORMAT:
            raise WaypointError(f"control track field 'format' must be {TRACK_FORMAT!r}, "
                                f"got {data.get('format')!r:.80}")
        if len(data["frames"]) > MAX_TRACK_FRAMES:
            raise WaypointError(f"control track has {len(data['frames'])} frames; the cap is {MAX_TRACK_FRAMES}")
        seed = data.get("seed", 0)
        frames = []
        for index, item in enumerate(data["frames"]):
            try:
                frames.append(Controls.from_json(item))
            except WaypointError as err:
                raise WaypointError(f"control track frame {index}: {err}") from None
        return cls(tuple(frames), seed)

    @classmethod
    def from_file(cls, path) -> "ControlTrack":
        """Read a track JSON file; a missing, unreadable or oversized file is a WaypointError."""
        from pathlib import Path
        path = Path(path)
        try:
            if path.stat().st_size > MAX_TRACK_BYTES:
                raise WaypointError(f"{path}: control track file is larger than {MAX_TRACK_BYTES} bytes")
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise WaypointError(f"cannot read control track file {str(path)!r}: {err.strerror or err}") from None
        try:
            return cls.from_json(text)
        except WaypointError as err:
            raise WaypointError(f"{path}: {err}") from None

    def to_json(self) -> dict:
        return {"format": TRACK_FORMAT, "seed": self.seed, "frames": [c.to_json() for c in self.frames]}


def _parse_json(text, max_bytes: int, max_objects: int | None = None):
    """json.loads with the size, nesting depth and object count bounded *before* parsing, so that a
    huge or deeply nested text costs a scan, never a recursion or a million Controls."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    if len(text) > max_bytes or len(text.encode("utf-8", "replace")) > max_bytes:
        raise WaypointError(f"JSON text is larger than the cap of {max_bytes} bytes")
    structure = _JSON_STRING.sub("", text).translate(_NOT_BRACKET)
    depth = max(itertools.accumulate((c in "[{") - (c in "]}") for c in structure), default=0)
    if depth > MAX_JSON_DEPTH:
        raise WaypointError(f"JSON nesting depth {depth} is over the cap of {MAX_JSON_DEPTH}")
    if max_objects is not None and structure.count("{") > max_objects:
        raise WaypointError(f"control track has more than {MAX_TRACK_FRAMES} frames (the cap)")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:   # ValueError: JSONDecodeError, ints over 4300 digits
        raise WaypointError(f"not valid JSON: {err}") from None
