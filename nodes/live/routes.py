"""aiohttp routes of live play (registered on ComfyUI's PromptServer, or on any app in tests).

    GET    /waypoint/live/{node_id}/ws      websocket: controls in, frames out (worldengine.live.protocol)
    GET    /waypoint/live/{node_id}         JSON: is the node bound, its live status
    GET    /waypoint/live/{node_id}/track   the recorded control track (JSON, a few KB)
    DELETE /waypoint/live/{node_id}         the node was removed: close its session, forget it

One socket per node: a second connection takes the session over (the first is closed), one takeover
at a time per node. Only same-origin pages (and what ComfyUI's --enable-cors-header allows) get a
socket. What happens on an open socket is `worldengine.serve.socket`, shared with any other host.
"""
from __future__ import annotations

import asyncio
import logging
import re
import sys
from urllib.parse import urlsplit

from aiohttp import web

from . import bindings

_LOG = logging.getLogger(__name__)
_NODE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def add_routes(routes: web.RouteTableDef, app: web.Application | None = None) -> None:
    """Add the live routes to `routes` (once per table); with `app`, its shutdown closes live sockets
    (else a graceful stop waits for them up to its shutdown timeout)."""
    if app is not None:
        app.on_shutdown.append(close_all_sockets)
    # Marked on the table itself: an id() of a freed table can be reused by a new one.
    if getattr(routes, "_waypoint_live_routes", False):
        return
    routes._waypoint_live_routes = True
    routes.get("/waypoint/live/{node_id}/ws")(live_socket)
    routes.get("/waypoint/live/{node_id}/track")(live_track)
    routes.get("/waypoint/live/{node_id}")(live_info)
    routes.delete("/waypoint/live/{node_id}")(live_forget)


async def close_all_sockets(app=None) -> None:
    """Close every live socket and session (server shutdown)."""
    for binding in bindings.all_bindings():
        if binding.socket is not None and not binding.socket.closed:
            await binding.socket.close(code=1001, message=b"server shutting down")
        bindings.close_live(binding, binding.live)


def _host_port(netloc: str) -> tuple[str, int | None] | None:
    """(lower-case host, port or None) of a `host[:port]`; None when it does not parse."""
    try:
        parts = urlsplit(f"//{netloc}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def _comfy_cors_origin() -> str | None:
    """ComfyUI's --enable-cors-header value ('*' = any origin), read only when ComfyUI already parsed
    its arguments in this process (importing comfy.cli_args elsewhere would parse our argv)."""
    cli_args = sys.modules.get("comfy.cli_args")
    return getattr(getattr(cli_args, "args", None), "enable_cors_header", None)


def origin_allowed(request) -> bool:
    """Same origin (the Origin's scheme host:port is the request's Host), or what ComfyUI's CORS setting
    allows. No Origin header: not a browser page (browsers always send one on websockets)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    allowed = _comfy_cors_origin()
    if allowed == "*" or (allowed and origin.rstrip("/") == allowed.rstrip("/")):
        return True
    parts = urlsplit(origin) if origin.isascii() else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return False   # "null", file://, extension pages...
    here, there = _host_port(request.host), _host_port(parts.netloc)
    if here is None or there is None or parts.username is not None or here[0] != there[0]:
        return False
    # A Host without a port (behind a proxy, default ports) matches the Origin's default port.
    return (here[1] or _DEFAULT_PORTS[parts.scheme]) == (there[1] or _DEFAULT_PORTS[parts.scheme])


def _node_id(request) -> str:
    node_id = request.match_info["node_id"]
    if not _NODE_ID.match(node_id):
        raise web.HTTPBadRequest(text=f"bad node id {node_id[:80]!r}")
    return node_id


async def live_info(request):
    binding = bindings.get_binding(_node_id(request))
    if binding is None:
        return web.json_response({"bound": False})
    status = binding.live.status() if binding.live is not None else None
    track = binding.current_track()
    return web.json_response({"bound": True, "seed": binding.seed, "frame_index": binding.world.frame_index,
                              "recorded_frames": len(track) if track is not None else 0, "live": status})


async def live_track(request):
    binding = bindings.get_binding(_node_id(request))
    track = binding.current_track() if binding is not None else None
    if track is None:
        raise web.HTTPNotFound(text="nothing recorded for this node yet")
    return web.json_response(track.to_json())


async def live_forget(request):
    node_id = _node_id(request)
    binding = bindings.get_binding(node_id)
    if binding is not None and binding.socket is not None:
        await binding.socket.close()
    return web.json_response({"forgotten": bindings.unbind(node_id)})


def _save_snapshot(quota, live_session) -> str:
    import os

    from ..world_nodes import next_snapshot_path, output_dir
    path = next_snapshot_path("waypoint/live")
    quota.claim("snapshot", path.parent)
    live_session.save_snapshot(path)
    quota.add(path)
    return os.path.relpath(path, output_dir())


def _export_clip(quota, live_session, seconds: float, fmt: str) -> str:
    """Write the clip into <output>/waypoint/ (mp4 falls back to webp without PyAV)."""
    import os

    from worldengine.errors import WaypointError

    from ..world_nodes import next_snapshot_path, output_dir
    path = next_snapshot_path("waypoint/live_clip", f".{fmt}")
    quota.claim("clip", path.parent)
    try:
        written = live_session.export_clip(path, seconds)
    except WaypointError as err:
        if fmt != "mp4" or "PyAV" not in str(err):
            raise
        written = live_session.export_clip(path.with_suffix(".webp"), seconds)
    quota.add(written)
    return os.path.relpath(written, output_dir())


async def live_socket(request):
    from worldengine.serve.socket import HARD_MAX_MESSAGE, FileActions, Outbox, drive_socket

    node_id = _node_id(request)
    if not origin_allowed(request):   # before the upgrade: a cross-site page gets no socket at all
        raise web.HTTPForbidden(text="live play answers pages of this server only (Origin refused)")
    ws = web.WebSocketResponse(max_msg_size=HARD_MAX_MESSAGE, heartbeat=30.0)
    await ws.prepare(request)
    binding = bindings.get_binding(node_id)
    if binding is None:
        await ws.send_json({"type": "error", "message": "this Live Play node has no world yet: queue the "
                                                        "workflow once, then press Play"})
        await ws.close()
        return ws
    outbox = Outbox(asyncio.get_running_loop())
    live_session = await _take_over(binding, ws, outbox)
    if live_session is None:
        return ws
    files = FileActions(lambda live: _save_snapshot(bindings.quota_of(binding), live),
                        lambda *args: _export_clip(bindings.quota_of(binding), *args))
    try:
        await drive_socket(ws, live_session, outbox, files)
    finally:
        await _off_loop(bindings.close_live, binding, live_session)
        if binding.socket is ws:
            binding.socket = None
    return ws


async def _take_over(binding, ws, outbox):
    """Make `ws` the binding's one socket with a new live session, one takeover at a time per node (the
    old socket is closed, the old session closed by open_live). None (and `ws` closed) on failure."""
    from worldengine.errors import WaypointError

    async with bindings.takeover_lock(binding):
        old, binding.socket = binding.socket, ws
        if old is not None and not old.closed:
            await old.close(message=b"another connection took over this live node")
        try:
            if ws.closed:
                raise WaypointError("the connection closed while opening")
            live_session = await _off_loop(bindings.open_live, binding, outbox.put, outbox.put)
        except (WaypointError, RuntimeError, OSError) as err:   # the client hears why, the server goes on
            if not isinstance(err, WaypointError):
                _LOG.exception("live play: could not open a live session")
            if binding.socket is ws:
                binding.socket = None
            if not ws.closed:
                await ws.send_json({"type": "error", "message": f"could not open live play: {err}"})
                await ws.close()
            return None
    return live_session


async def _off_loop(function, *args):
    """Run a call that may wait for a live step in the default executor (inline once it is shut down)."""
    try:
        future = asyncio.get_running_loop().run_in_executor(None, function, *args)
    except RuntimeError:   # the executor is shut down (interpreter exit)
        return function(*args)
    return await future
