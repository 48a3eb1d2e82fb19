"""The live-play wire protocol: client messages (JSON text, validated here) and frame packets.

Client -> server, one JSON object per text message, at most MAX_MESSAGE_BYTES:
    {"type": "control", "seq": 17, "t": 1234.5, "buttons": [87, 16], "mouse": [0.02, -0.01], "scroll": 0}
        buttons: Owl-Control key codes held now (replaces the previous set: latest wins);
        mouse: motion since the previous control message (summed until a frame consumes it);
        seq: the client's counter, echoed in the first frame that used this control; t: client ms.
    {"type": "ack", "frame": 41}            the client has shown frame 41 (frees a backpressure slot)
    {"type": "play"} / {"type": "pause"} / {"type": "reset"} / {"type": "snapshot"}
    {"type": "record", "on": true}
    {"type": "settings", "preview": "latent"|"decoded", "format": "jpeg"|"webp", "quality": 80,
     "max_width": 640, "max_height": 360, "max_in_flight": 2, "max_fps": 15}
        max_fps: latent frames per second at most (0 = as fast as the device steps).
    {"type": "ping", "t": 1234.5}
    {"type": "export", "seconds": 10, "format": "mp4"|"webp"|"gif"}   the last seconds shown, as a clip

Server -> client: JSON text events ({"type": "status"|"error"|"pong"|"snapshot", ...}) and binary
frame packets: uint32 big-endian header length, the JSON header, then the image bytes.
"""
from __future__ import annotations

import json
import math
import struct

from worldengine.errors import WaypointError
from worldengine.options import Preview

MAX_MESSAGE_BYTES = 4096
MAX_BUTTONS = 32
MAX_MOUSE = 1000.0
MAX_SEQ = 2 ** 53
PREVIEWS = tuple(p for p in Preview.values() if p != Preview.AUTO)   # the socket asks for a concrete one
IMAGE_FORMATS = ("jpeg", "webp")
MAX_IN_FLIGHT = 8

_FIELDS = {
    "control": {"seq", "t", "buttons", "mouse", "scroll"},
    "ack": {"frame"},
    "play": set(), "pause": set(), "reset": set(), "snapshot": set(),
    "record": {"on"},
    "settings": {"preview", "format", "quality", "max_width", "max_height", "max_in_flight", "max_fps"},
    "ping": {"t"},
    "export": {"seconds", "format"},
}
CLIP_FORMATS = ("mp4", "webp", "gif")


class ProtocolError(WaypointError):
    """A client message the server refuses (the connection stays open)."""


def _int(value, name: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _number(value, name: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) > limit \
            or not math.isfinite(value):   # abs first: isfinite overflows on a huge int
        raise ProtocolError(f"{name} must be a finite number with |{name}| <= {limit:g}, got {value!r}")
    return float(value)


def _choice(value, name: str, options) -> str:
    if value not in options:
        raise ProtocolError(f"{name} must be one of {list(options)}, got {value!r}")
    return value


def parse_message(text) -> dict:
    """One client message (str or bytes) -> a validated dict with "type". Raises ProtocolError."""
    if not isinstance(text, str):
        raise ProtocolError(f"messages are JSON text, got {type(text).__name__}")
    if len(text.encode("utf-8", "replace")) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:   # ValueError: JSONDecodeError, ints over 4300 digits
        raise ProtocolError(f"message is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise ProtocolError(f"unknown message type {kind!r:.80}; known: {sorted(_FIELDS)}")
    unknown = set(data) - _FIELDS[kind] - {"type"}
    if unknown:
        raise ProtocolError(f"{kind} message has unknown field(s) {sorted(unknown)}")
    return {"type": kind, **_CHECKS.get(kind, lambda d: {})(data)}


def _check_control(data: dict) -> dict:
    buttons = data.get("buttons", [])
    if not isinstance(buttons, list) or len(buttons) > MAX_BUTTONS:
        raise ProtocolError(f"buttons must be a list of at most {MAX_BUTTONS} key codes, got {buttons!r:.80}")
    mouse = data.get("mouse", [0.0, 0.0])
    if not isinstance(mouse, list) or len(mouse) != 2:
        raise ProtocolError(f"mouse must be [dx, dy], got {mouse!r:.80}")
    return {
        "seq": _int(data.get("seq", 0), "seq", 0, MAX_SEQ),
        "t": _number(data.get("t", 0.0), "t", 1e15),
        "buttons": frozenset(_int(code, "button code", 0, 255) for code in buttons),
        "mouse": (_number(mouse[0], "mouse dx", MAX_MOUSE), _number(mouse[1], "mouse dy", MAX_MOUSE)),
        "scroll": _int(data.get("scroll", 0), "scroll", -1, 1),
    }


def _check_settings(data: dict) -> dict:
    out = {}
    if "preview" in data:
        out["preview"] = _choice(data["preview"], "preview", PREVIEWS)
    if "format" in data:
        out["format"] = _choice(data["format"], "format", IMAGE_FORMATS)
    if "quality" in data:
        out["quality"] = _int(data["quality"], "quality", 10, 95)
    for side in ("max_width", "max_height"):
        if side in data:
            out[side] = _int(data[side], side, 16, 4096)
    if "max_in_flight" in data:
        out["max_in_flight"] = _int(data["max_in_flight"], "max_in_flight", 1, MAX_IN_FLIGHT)
    if "max_fps" in data:
        out["max_fps"] = _number(data["max_fps"], "max_fps", 240.0)
        if out["max_fps"] < 0:
            raise ProtocolError(f"max_fps must be >= 0, got {data['max_fps']!r}")
    return out


def _check_record(data: dict) -> dict:
    if not isinstance(data.get("on"), bool):
        raise ProtocolError(f"record needs \"on\": true or false, got {data.get('on')!r}")
    return {"on": data["on"]}


_CHECKS = {
    "control": _check_control,
    "ack": lambda d: {"frame": _int(d.get("frame"), "frame", 0, MAX_SEQ)},
    "record": _check_record,
    "settings": _check_settings,
    "ping": lambda d: {"t": _number(d.get("t", 0.0), "t", 1e15)},
    "export": lambda d: {"seconds": max(0.1, _number(d.get("seconds", 10.0), "seconds", 30.0)),
                         "format": _choice(d.get("format", "mp4"), "format", CLIP_FORMATS)},
}


def pack_frame(header: dict, image: bytes) -> bytes:
    """Binary frame packet: uint32 BE header length + JSON header + image bytes."""
    head = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack(">I", len(head)) + head + image


def unpack_frame(packet: bytes) -> tuple[dict, bytes]:
    """Inverse of pack_frame (tests, Python clients)."""
    if len(packet) < 4:
        raise ProtocolError("frame packet shorter than its length prefix")
    (size,) = struct.unpack(">I", packet[:4])
    if 4 + size > len(packet):
        raise ProtocolError(f"frame packet header length {size} exceeds the packet")
    return json.loads(packet[4:4 + size]), packet[4 + size:]
