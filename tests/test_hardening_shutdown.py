"""Clean exits with live play running (issue 15), each in a subprocess: a script that exits right after
LiveSession.close() (or while still playing), and a bare aiohttp app serving a playing socket that gets
SIGINT or SIGTERM. Each must exit 0 (before: abort 134 / -6, or > 20 s ignoring the signal). The time
from the signal to the exit is printed (run with -s); the waits below only bound a hang."""
from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HANG = 120   # seconds: a process still alive after this has hung

WORLD = """
import torch
from nodes.core import WaypointLoad, WaypointSeedFrame
from nodes.live import WaypointLivePlay
from worldengine.synthetic import write_tiny_checkpoint
folder = write_tiny_checkpoint(sys.argv[1] + "/m", model_type="waypoint-1.5", height=2, width=4, tokens_per_frame=8)
engine = WaypointLoad().load(str(folder), "cpu", "float32", "none", False)[0]
image = torch.rand(1, 36, 64, 3, generator=torch.Generator().manual_seed(0))
world = WaypointSeedFrame().seed(engine, image, "crop")[0]
"""

SCRIPT = """
import sys, threading
sys.path.insert(0, {repo!r})
""" + WORLD + """
from worldengine.live.frames import LatentPreview
from worldengine.live.session import LiveSession
shown = threading.Event()
frames = []
def sink(frame):
    frames.append(frame.ordinal)
    live.ack(frame.ordinal)
    if len(frames) >= 3:
        shown.set()
live = LiveSession(engine, world.snapshot, 3, lambda preview: LatentPreview(engine.config.channels), sink)
live.play()
assert shown.wait(300), "no frames"
if sys.argv[2] == "close":
    live.close()
print("exiting after", len(frames), "frames", flush=True)
"""

SERVER = """
import sys
sys.path.insert(0, {repo!r})
""" + WORLD + """
from aiohttp import web
from nodes.live import routes as live_routes
WaypointLivePlay().bind_world(world, 3, "latent", unique_id="7")
app = web.Application()
table = web.RouteTableDef()
live_routes.add_routes(table, app)
app.add_routes(table)
# A graceful stop waits this long for open handlers: only closing the live sockets on shutdown ends it sooner.
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), shutdown_timeout=600,
            print=lambda text: print("READY", flush=True))
print("server stopped", flush=True)
"""


def _write(tmp_path, name, text) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text.format(repo=str(REPO))))
    return path


@pytest.mark.parametrize("ending", ["close", "playing"])
def test_script_exits_cleanly_right_after_close_or_while_playing(tmp_path, ending):
    script = _write(tmp_path, "script.py", SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path), ending], capture_output=True, text=True,
                            timeout=HANG * 3, cwd=tmp_path)
    assert "exiting after" in result.stdout, result.stderr[-2000:]
    assert result.returncode == 0, result.stderr[-2000:]
    assert "terminate called" not in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _play_until_frame(port: int):
    import aiohttp
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(f"http://127.0.0.1:{port}/waypoint/live/7/ws")
    await ws.send_str('{"type": "play"}')
    while True:
        msg = await asyncio.wait_for(ws.receive(), HANG)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return session, ws
        assert msg.type == aiohttp.WSMsgType.TEXT, msg


async def _drain(session, ws):
    import aiohttp
    try:
        while (await asyncio.wait_for(ws.receive(), HANG)).type not in (
                aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            pass
    finally:
        await session.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_bare_aiohttp_app_with_a_playing_socket_stops_on_a_signal(tmp_path, sig):
    server, port = _write(tmp_path, "bare_app.py", SERVER), _free_port()   # not server.py: the pack imports `server`
    process = subprocess.Popen([sys.executable, str(server), str(tmp_path), str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stdout.readline().strip() == "READY", process.stderr.read()[-2000:]

        async def scenario():
            session, ws = await _play_until_frame(port)
            start = time.monotonic()
            process.send_signal(sig)
            await _drain(session, ws)
            return start

        start = asyncio.run(scenario())
        code = process.wait(timeout=HANG)
        print(json.dumps({"signal": sig.name, "exit_s": round(time.monotonic() - start, 2), "code": code}))
        stderr = process.stderr.read()
        assert code == 0, stderr[-2000:]
        assert "terminate called" not in stderr and "server stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
