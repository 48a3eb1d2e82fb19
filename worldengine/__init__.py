"""worldengine: a pure-PyTorch engine for Overworld's Waypoint-1 / Waypoint-1.5 world models.

Where things are:
- the model: `config` (every config field and its bounds), `model` + `layers` + `rope` (the DiT),
  `kv_cache` (the static ring cache), `checkpoint` + `hub` (files on disk or on the Hub);
- running it: `engine` (weights, shared) and `session` (one world: KV cache, frame counter, prompt),
  `controls`, `images`, `prompt_encoder`, `compile`, `options` (every option list);
- `quant/` int8 / fp8 linears; `ae/` the autoencoders (TAEHV 1.5, Waypoint-1's, the toy world's)
  and `ae.WorldCodec`, a world's encoder + decoder streams;
- `live/` real-time play, transport-free (session, worker, renderers, wire messages); `serve/` the
  websocket side of that protocol, shared by every host;
- `cli/` `python -m worldengine` (rollout, replay, bench); `synthetic/` random checkpoints in the real
  layouts and the named presets; `sanitize/` prompt safety.

Importing this package is cheap (torch loads with the first name used from it) and changes no global
torch setting.
"""
import importlib

_EXPORTS = {
    "WaypointConfig": "config", "config_from_dict": "config", "load_config": "config",
    "KEYCODES": "controls", "Controls": "controls", "ControlTrack": "controls", "keycode": "controls",
    "WorldEngine": "engine", "load_engine": "engine", "WaypointError": "errors",
    "WorldSession": "session", "WorldSnapshot": "session",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"worldengine.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'worldengine' has no attribute {name!r}")
