"""aiohttp routes of live play (registered on ComfyUI's PromptServer, or on any app in tests).

    GET    /waypoint/live/{node_id}/ws      websocket: controls in, frames out (worldengine.live.protocol)
    GET    /waypoint/live/{node_id}         JSON: is the node bound, its live status
    GET    /waypoint/live/{node_id}/track   the recorded control track (JSON, a few KB)
    DELETE /waypoint/live/{node_id}         the node was removed: close its session, forget it

One socket per node: a second connection takes the session over (the first is closed). What happens on
an open socket is `worldengine.serve.socket`, shared with any other host of live worlds.
"""
from __future__ import annotations

import asyncio
import re

from aiohttp import web

from . import bindings

_NODE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_registered: set = set()


def add_routes(routes: web.RouteTableDef) -> None:
    """Add the live routes to `routes` (once per table)."""
    if id(routes) in _registered:
        return
    _registered.add(id(routes))
    routes.get("/waypoint/live/{node_id}/ws")(live_socket)
    routes.get("/waypoint/live/{node_id}/track")(live_track)
    routes.get("/waypoint/live/{node_id}")(live_info)
    routes.delete("/waypoint/live/{node_id}")(live_forget)


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


def _save_snapshot(live_session) -> str:
    import os

    from ..world_nodes import next_snapshot_path, output_dir
    path = next_snapshot_path("waypoint/live")
    live_session.save_snapshot(path)
    return os.path.relpath(path, output_dir())


def _export_clip(live_session, seconds: float, fmt: str) -> str:
    """Write the clip into <output>/waypoint/ (mp4 falls back to webp without PyAV)."""
    import os

    from worldengine.errors import WaypointError

    from ..world_nodes import output_dir
    folder = output_dir() / "waypoint"
    folder.mkdir(parents=True, exist_ok=True)
    for counter in range(1, 100000):
        path = folder / f"live_clip_{counter:05d}.{fmt}"
        if not path.exists():
            break
    try:
        written = live_session.export_clip(path, seconds)
    except WaypointError as err:
        if fmt != "mp4" or "PyAV" not in str(err):
            raise
        written = live_session.export_clip(path.with_suffix(".webp"), seconds)
    return os.path.relpath(written, output_dir())


async def live_socket(request):
    from worldengine.errors import WaypointError
    from worldengine.serve.socket import HARD_MAX_MESSAGE, FileActions, Outbox, drive_socket

    node_id = _node_id(request)
    ws = web.WebSocketResponse(max_msg_size=HARD_MAX_MESSAGE, heartbeat=30.0)
    await ws.prepare(request)
    binding = bindings.get_binding(node_id)
    if binding is None:
        await ws.send_json({"type": "error", "message": "this Live Play node has no world yet: queue the "
                                                        "workflow once, then press Play"})
        await ws.close()
        return ws
    if binding.socket is not None and not binding.socket.closed:
        await binding.socket.close(message=b"another connection took over this live node")
    binding.socket = ws
    loop = asyncio.get_running_loop()
    outbox = Outbox(loop)
    try:
        live_session = await loop.run_in_executor(None, bindings.open_live, binding, outbox.put, outbox.put)
    except WaypointError as err:
        await ws.send_json({"type": "error", "message": str(err)})
        await ws.close()
        return ws
    try:
        await drive_socket(ws, live_session, outbox, FileActions(_save_snapshot, _export_clip))
    finally:
        bindings.close_live(binding, live_session)
        if binding.socket is ws:
            binding.socket = None
    return ws
