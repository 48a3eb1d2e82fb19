"""Which world each Live Play node plays: bindings from node ids to worlds and open live sessions.

Flow: queue once (SeedFrame's world reaches this node, which remembers it under its node id), press
Play in the widget (a websocket to /waypoint/live/<node id>/ws steps a *copy* of that world in real
time), then queue again: the node outputs the recorded control track (+ seed) as WAYPOINT_CONTROLS,
so StepWorld(world, controls, seed=-1) replays exactly the played latents on the same device.

Module-level state (`_bindings`) because ComfyUI re-creates node instances; routes live in
`routes` and are registered on ComfyUI's server when it exists (never in unit tests).
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from .. import codec
from ..world import World


@dataclass
class Binding:
    """What one Live Play node knows: the world it plays from, its seed, preview and safety ("off" or
    "redirect": worldengine.sanitize.guard.LiveSafety), the open live session (if a widget is
    connected) and the track of the last closed session."""

    node_id: str
    world: World
    seed: int
    preview: str
    safety: str = "off"
    live: object = None              # worldengine.live.session.LiveSession while a socket is open
    socket: object = None            # that socket (closed when another one takes over)
    last_track: object = None        # ControlTrack of the last closed session
    quota: object = None             # worldengine.serve.socket.ExportQuota of its files, across sockets
    _takeover: tuple = (None, None)  # (event loop, asyncio.Lock): one socket takeover at a time

    def current_track(self):
        if self.live is not None:
            return self.live.track()
        return self.last_track


_bindings: dict[str, Binding] = {}     # insertion order = least recently bound first
_lock = threading.RLock()
# A binding holds its world and so its engine alive: keep only the most recent ones (a node that
# was removed without its widget saying so, e.g. a closed tab, is forgotten eventually).
MAX_BINDINGS = 8


def bind(node_id: str, world: World, seed: int, preview: str, safety: str = "off") -> Binding:
    """Remember (world, seed, preview, safety) for `node_id`; an open live session keeps its old base
    (and guard) until the widget resets or reconnects."""
    with _lock:
        binding = _bindings.pop(node_id, None)
        if binding is None:
            binding = Binding(node_id, world, int(seed), preview, safety)
        else:
            binding.world, binding.seed, binding.preview, binding.safety = world, int(seed), preview, safety
        _bindings[node_id] = binding
        stale = [key for key in _bindings if key != node_id][:max(0, len(_bindings) - MAX_BINDINGS)]
    for key in stale:
        unbind(key)
    return binding


def get_binding(node_id: str) -> Binding | None:
    with _lock:
        return _bindings.get(node_id)


def all_bindings() -> list[Binding]:
    with _lock:
        return list(_bindings.values())


def quota_of(binding: Binding):
    """The binding's ExportQuota (made on first use: serve.socket imports torch)."""
    from worldengine.serve.socket import ExportQuota
    with _lock:
        if binding.quota is None:
            binding.quota = ExportQuota()
        return binding.quota


def takeover_lock(binding: Binding) -> asyncio.Lock:
    """The binding's takeover lock on the running event loop (a lock belongs to one loop)."""
    loop = asyncio.get_running_loop()
    with _lock:
        if binding._takeover[0] is not loop:
            binding._takeover = (loop, asyncio.Lock())
        return binding._takeover[1]


def unbind(node_id: str) -> bool:
    """Forget a node (it was removed from the graph): close its live session."""
    with _lock:
        binding = _bindings.pop(node_id, None)
    if binding is not None and binding.live is not None:
        binding.live.close()
    return binding is not None


def resolve_preview(preview: str, engine, safety: str = "off") -> str:
    """"auto" = the decoder on accelerators, the false-colour latent on CPU (decoding is slow there).
    With safety "redirect" the classifier sees the shown frames, which must be pictures: auto means
    decoded, and the latent preview (or a model without a decoder) is refused."""
    if safety != "off":
        from worldengine.errors import WaypointError
        if engine.autoencoder is None or preview == "latent":
            why = "this model has no decoder" if engine.autoencoder is None else "preview is 'latent'"
            raise WaypointError(f"live safety 'redirect' classifies decoded frames, but {why} (false "
                                "colours are no pictures): use preview 'decoded' or 'auto', or safety 'off'")
        return "decoded"
    if preview == "auto":
        on_cpu = str(engine.device).startswith("cpu")
        return "latent" if on_cpu or engine.autoencoder is None else "decoded"
    return preview


def renderer_factory(world: World):
    """preview name -> a new renderer positioned at `world` (the decoder continues the world's stream)."""
    from worldengine.live.frames import DecoderPreview, LatentPreview

    engine = world.engine

    def make(preview: str):
        if preview == "decoded" and engine.autoencoder is not None:
            tail = world.decode_tail
            decoder = tail.state_after(engine) if tail is not None else codec.new_decoder(engine)
            return DecoderPreview(decoder, engine.autoencoder.frames_per_latent)
        return LatentPreview(engine.config.latent_shape[0])

    return make


def open_live(binding: Binding, sink, events, settings: dict | None = None):
    """A new LiveSession on the binding's world (closing the one before). Runs restore(): call it
    off the event loop."""
    from worldengine.live.session import LiveSession, LiveSettings
    from worldengine.sanitize.guard import live_guard

    with _lock:
        close_live(binding, binding.live)
        world = binding.world
        options = LiveSettings(preview=resolve_preview(binding.preview, world.engine, binding.safety))
        live = LiveSession(world.engine, world.snapshot, binding.seed, renderer_factory(world), sink, events,
                           settings=options, guard=live_guard(binding.safety))
        if settings:
            live.update_settings(**settings)
        binding.live = live
        return live


def close_live(binding: Binding, live) -> None:
    """Close `live` if it is still the binding's session, keeping its track for the next queue."""
    if live is None:
        return
    with _lock:
        if binding.live is live:
            binding.last_track = live.track()
            binding.live = None
    live.close()
