"""One live session over one websocket: the socket half of the live wire protocol.

Only the sender task writes to the socket; the stepping thread and the handlers put frames and JSON
events into a bounded outbox, so a slow client never blocks the world. Errors go back rate-limited,
and the socket stays open after a bad message.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType

from worldengine.errors import WaypointError
from worldengine.live.protocol import pack_frame, parse_message
from worldengine.live.session import LiveFrame

_LOG = logging.getLogger(__name__)
HARD_MAX_MESSAGE = 64 * 1024       # larger messages close the socket (aiohttp enforces it)
OUTBOX_SIZE = 64                   # frames are bounded by max_in_flight; this bounds events too
ERRORS_PER_SECOND = 10             # error replies beyond this are only counted
STATUS_PERIOD = 0.5


@dataclass(frozen=True)
class FileActions:
    """Where a host writes what a player asks for; each returns the path to show the player.

    save_snapshot(live_session) -> str; export_clip(live_session, seconds, fmt) -> str."""

    save_snapshot: Callable
    export_clip: Callable


@dataclass
class ExportQuota:
    """Rate limit and disk quota of the files one live node writes (snapshots, clips), kept by the host
    per node so reconnecting does not reset it. The quota counts the bytes of this node's files that
    still exist: deleting them frees it."""

    max_bytes: int = 8 << 30           # a 1B-parameter world's snapshot is ~1 GB (its KV cache)
    max_files: int = 200
    min_interval: float = 2.0          # seconds between two snapshots (or two clips) of this node
    min_free_bytes: int = 1 << 30      # never fill the disk: refuse below this much free space
    written: list = field(default_factory=list)
    _last: dict = field(default_factory=dict)   # what -> monotonic time of its last write
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, what: str, folder) -> None:
        """Raise a WaypointError saying which limit `what` ("snapshot", "clip") hits; else count it."""
        with self._lock:
            now = time.monotonic()
            if now - self._last.get(what, float("-inf")) < self.min_interval:
                raise WaypointError(f"{what} refused: at most one {what} every {self.min_interval:g} s per live node")
            self.written = [path for path in self.written if os.path.exists(path)]
            used = sum(os.path.getsize(path) for path in self.written)
            if len(self.written) >= self.max_files or used >= self.max_bytes:
                raise WaypointError(
                    f"{what} refused: this live node's files use {used / 2 ** 20:.0f} MB in {len(self.written)} "
                    f"files (quota {self.max_bytes / 2 ** 20:.0f} MB, {self.max_files} files); delete some "
                    f"of them from {folder} to write more")
            if shutil.disk_usage(folder).free < self.min_free_bytes:
                raise WaypointError(f"{what} refused: less than {self.min_free_bytes / 2 ** 30:.1f} GB free in {folder}")
            self._last[what] = now

    def add(self, path) -> None:
        """Count a file just written."""
        with self._lock:
            self.written.append(str(path))


class Outbox:
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


async def _send_loop(ws, outbox: Outbox) -> None:
    while not ws.closed:
        item = await outbox.queue.get()
        if isinstance(item, LiveFrame):
            for sub, image in enumerate(item.images):
                await ws.send_bytes(pack_frame(item.header(sub), image))
        else:
            await ws.send_json(item)


async def _status_loop(ws, live_session, outbox: Outbox, counters: dict, extra) -> None:
    while True:
        await asyncio.sleep(STATUS_PERIOD)
        if live_session.closed:   # taken over, node removed, shutdown: an open socket always streams
            await ws.close(message=b"this live session was closed")
            return
        outbox.put({**live_session.status(), **counters, **extra()})


class _Errors:
    """Rate-limited error replies: a flood of bad messages costs the server almost nothing."""

    def __init__(self, outbox: Outbox, counters: dict):
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


async def _handle(message: dict, live_session, outbox: Outbox, files: FileActions) -> None:
    loop = asyncio.get_running_loop()
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
        path = await loop.run_in_executor(None, files.save_snapshot, live_session)
        outbox.put({"type": "snapshot", "path": path})
    elif kind == "export":
        path = await loop.run_in_executor(None, files.export_clip, live_session, message["seconds"],
                                          message["format"])
        outbox.put({"type": "export", "path": path})


async def drive_socket(ws, live_session, outbox: Outbox, files: FileActions, extra_status=None) -> None:
    """Serve `live_session` on the prepared websocket `ws` until it closes; `outbox` is the one the
    session was opened with (its frame sink and event sink). `extra_status()` -> dict adds host fields
    to every status event (e.g. which replica serves the session)."""
    extra = extra_status or dict
    counters = {"rejected": 0}
    errors = _Errors(outbox, counters)
    tasks = [asyncio.ensure_future(_send_loop(ws, outbox)),
             asyncio.ensure_future(_status_loop(ws, live_session, outbox, counters, extra))]
    outbox.put({**live_session.status(), **extra()})
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    await _handle(parse_message(msg.data), live_session, outbox, files)
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
