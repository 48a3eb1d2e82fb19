"""aiohttp routes of live play (registered on ComfyUI's PromptServer, or on any app in tests).

    GET    /waypoint/live/{node_id}/ws      websocket: controls in, frames out (worldengine.live_protocol)
    GET    /waypoint/live/{node_id}         JSON: is the node bound, its live status
    GET    /waypoint/live/{node_id}/track   the recorded control track (JSON, a few KB)
    DELETE /waypoint/live/{node_id}         the node was removed: close its session, forget it

One socket per node: a second connection takes the session over (the first is closed). Only the
socket's sender task writes to it; everything else goes through a bounded outbox.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time

from aiohttp import WSMsgType, web

from . import live

_LOG = logging.getLogger(__name__)
HARD_MAX_MESSAGE = 64 * 1024       # larger messages close the socket (aiohttp enforces it)
OUTBOX_SIZE = 64                   # frames are bounded by max_in_flight; this bounds events too
ERRORS_PER_SECOND = 10             # error replies beyond this are only counted
STATUS_PERIOD = 0.5
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
    binding = live.get_binding(_node_id(request))
    if binding is None:
        return web.json_response({"bound": False})
    status = binding.live.status() if binding.live is not None else None
    track = binding.current_track()
    return web.json_response({"bound": True, "seed": binding.seed, "frame_index": binding.world.frame_index,
                              "recorded_frames": len(track) if track is not None else 0, "live": status})


async def live_track(request):
    binding = live.get_binding(_node_id(request))
    track = binding.current_track() if binding is not None else None
    if track is None:
        raise web.HTTPNotFound(text="nothing recorded for this node yet")
    return web.json_response(track.to_json())


async def live_forget(request):
    node_id = _node_id(request)
    binding = live.get_binding(node_id)
    if binding is not None and binding.socket is not None:
        await binding.socket.close()
    return web.json_response({"forgotten": live.unbind(node_id)})


class _Outbox:
    """Bounded queue between the stepping thread and the socket's sender task."""

    def __init__(self, loop):
        self.loop = loop
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.dropped = 0

    def put(self, item) -> None:
        """Thread-safe; drops the item when the loop is gone or the queue is full."""
        try:
            self.loop.call_soon_threadsafe(self._put, item)
        except RuntimeError:
            pass   # the loop closed: the socket is gone

    def _put(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1


async def _send_loop(ws, outbox: _Outbox) -> None:
    from worldengine.live import LiveFrame
    from worldengine.live_protocol import pack_frame
    while not ws.closed:
        item = await outbox.queue.get()
        if isinstance(item, LiveFrame):
            for sub, image in enumerate(item.images):
                await ws.send_bytes(pack_frame(item.header(sub), image))
        else:
            await ws.send_json(item)


async def _status_loop(live_session, outbox: _Outbox, counters: dict) -> None:
    while True:
        await asyncio.sleep(STATUS_PERIOD)
        outbox.put({**live_session.status(), **counters})


class _Errors:
    """Rate-limited error replies: a flood of bad messages costs the server almost nothing."""

    def __init__(self, outbox: _Outbox, counters: dict):
        self.outbox, self.counters = outbox, counters
        self.window, self.sent = 0.0, 0

    def report(self, message: str) -> None:
        self.counters["rejected"] += 1
        now = time.monotonic()
        if now - self.window >= 1.0:
            self.window, self.sent = now, 0
        if self.sent < ERRORS_PER_SECOND:
            self.sent += 1
            self.outbox.put({"type": "error", "message": message})


async def _handle(message: dict, live_session, loop, outbox: _Outbox) -> None:
    kind = message["type"]
    if kind == "control":
        live_session.submit_control(message["buttons"], message["mouse"], message["scroll"], message["seq"],
                                    message["t"])
    elif kind == "ack":
        live_session.ack(message["frame"])
    elif kind == "play":
        live_session.play()
    elif kind == "pause":
        live_session.pause()
    elif kind == "settings":
        live_session.update_settings(**{k: v for k, v in message.items() if k != "type"})
    elif kind == "ping":
        outbox.put({"type": "pong", "t": message["t"], "server_t": time.time() * 1000})
    elif kind == "reset":    # these wait for the current step: off the event loop
        await loop.run_in_executor(None, live_session.reset)
    elif kind == "record":
        await loop.run_in_executor(None, live_session.set_recording, message["on"])
    elif kind == "snapshot":
        path = await loop.run_in_executor(None, _save_snapshot, live_session)
        outbox.put({"type": "snapshot", "path": path})
    elif kind == "export":
        path = await loop.run_in_executor(None, _export_clip, live_session, message["seconds"], message["format"])
        outbox.put({"type": "export", "path": path})


def _save_snapshot(live_session) -> str:
    import os

    from .world_nodes import next_snapshot_path, output_dir
    path = next_snapshot_path("waypoint/live")
    live_session.save_snapshot(path)
    return os.path.relpath(path, output_dir())


def _export_clip(live_session, seconds: float, fmt: str) -> str:
    """Write the clip into <output>/waypoint/ (mp4 falls back to webp without PyAV)."""
    import os

    from worldengine.errors import WaypointError

    from .world_nodes import output_dir
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
    from worldengine.live_protocol import parse_message

    node_id = _node_id(request)
    ws = web.WebSocketResponse(max_msg_size=HARD_MAX_MESSAGE, heartbeat=30.0)
    await ws.prepare(request)
    binding = live.get_binding(node_id)
    if binding is None:
        await ws.send_json({"type": "error", "message": "this Live Play node has no world yet: queue the "
                                                        "workflow once, then press Play"})
        await ws.close()
        return ws
    if binding.socket is not None and not binding.socket.closed:
        await binding.socket.close(message=b"another connection took over this live node")
    binding.socket = ws
    loop = asyncio.get_running_loop()
    outbox = _Outbox(loop)
    counters = {"rejected": 0}
    errors = _Errors(outbox, counters)
    try:
        live_session = await loop.run_in_executor(None, live.open_live, binding, outbox.put, outbox.put)
    except WaypointError as err:
        await ws.send_json({"type": "error", "message": str(err)})
        await ws.close()
        return ws
    tasks = [asyncio.ensure_future(_send_loop(ws, outbox)),
             asyncio.ensure_future(_status_loop(live_session, outbox, counters))]
    outbox.put(live_session.status())
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    await _handle(parse_message(msg.data), live_session, loop, outbox)
                except WaypointError as err:   # ProtocolError included: refuse, keep the socket
                    errors.report(str(err))
                except (OSError, RuntimeError) as err:   # e.g. a file that cannot be written
                    _LOG.exception("live play: %s failed", msg.data[:80])
                    errors.report(f"server error: {err}")
            elif msg.type == WSMsgType.BINARY:
                errors.report("binary messages are not accepted: send JSON text")
            elif msg.type == WSMsgType.ERROR:
                break
    finally:
        for task in tasks:
            task.cancel()
        live.close_live(binding, live_session)
        if binding.socket is ws:
            binding.socket = None
    return ws
