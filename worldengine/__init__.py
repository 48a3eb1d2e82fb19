"""worldengine: a pure-PyTorch engine for Overworld's Waypoint-1 / Waypoint-1.5 world models.

Importing this package is cheap and changes no global torch setting; heavy parts load on use.
"""
from .config import WaypointConfig, config_from_dict, load_config
from .controls import KEYCODES, Controls, ControlTrack, keycode
from .engine import WorldEngine, load_engine
from .errors import WaypointError
from .session import WorldSession, WorldSnapshot

__all__ = ["WaypointConfig", "config_from_dict", "load_config", "KEYCODES", "Controls", "ControlTrack",
           "keycode", "WorldEngine", "load_engine", "WaypointError", "WorldSession", "WorldSnapshot"]
