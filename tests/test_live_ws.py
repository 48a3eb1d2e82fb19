"""The /waypoint/live websocket route on an aiohttp test server (loopback only): frames flow with
acks, bad input is refused without dropping the socket, an over-cap message closes only its own
socket, a second connection takes over, snapshots and tracks are served, and a bounded load of
1000 control messages/s (with bad ones mixed in) leaves the server up, frames flowing and memory flat.

WAYPOINT_LIVE_LOAD_SECONDS sets the load duration (CI default 4 s; the issue's 30 s run is by hand).
Latency numbers are printed (run with -s), never asserted."""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import time

import pytest
from aiohttp import WSMsgType
from live_helpers import route_client, small_live_world

from worldengine.live.protocol import unpack_frame

LOAD_SECONDS = float(os.environ.get("WAYPOINT_LIVE_LOAD_SECONDS", "4"))
RATE = 1000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return small_live_world(tmp_path_factory)


@pytest.fixture()
def bound(world, monkeypatch, tmp_path):
    from nodes.live import WaypointLivePlay, bindings
    monkeypatch.chdir(tmp_path)      # snapshots go to ./output outside ComfyUI
    WaypointLivePlay().bind_world(world, 3, "auto", unique_id="42")
    yield bindings
    bindings.unbind("42")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))




class Player:
    """A websocket client that acks every frame it gets and remembers events."""

    def __init__(self, ws):
        self.ws, self.frames, self.events = ws, [], []

    async def pump(self, until, timeout=30.0):
        """Read messages (acking frames) until until(self) is true."""
        deadline = time.monotonic() + timeout
        while not until(self):
            msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            self.take(msg)

    def take(self, msg):
        if msg.type == WSMsgType.BINARY:
            header, image = unpack_frame(msg.data)
            header["received"] = time.perf_counter() * 1000
            self.frames.append((header, image))
            if header["sub"] == header["of"] - 1:
                return self.ws.send_str(json.dumps({"type": "ack", "frame": header["ordinal"]}))
        elif msg.type == WSMsgType.TEXT:
            self.events.append(json.loads(msg.data))
        elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
            self.events.append({"type": "closed"})
        return None

    def errors(self):
        return [e["message"] for e in self.events if e["type"] == "error"]

    def closed(self):
        return any(e["type"] == "closed" for e in self.events)


async def _acking_pump(player, until, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not until(player):
        msg = await player.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        pending = player.take(msg)
        if pending is not None:
            await pending


def test_unbound_node_gets_an_error_and_close():
    async def scenario():
        test_client = await route_client()
        try:
            ws = await test_client.ws_connect("/waypoint/live/999/ws")
            player = Player(ws)
            await _acking_pump(player, lambda p: p.closed())
            assert "queue the workflow once" in player.errors()[0]
            info = await (await test_client.get("/waypoint/live/999")).json()
            assert info == {"bound": False}
            assert (await test_client.get("/waypoint/live/bad%20id!/track")).status == 400
        finally:
            await test_client.close()
    run(scenario())


def test_frames_flow_bad_messages_are_refused_and_track_is_served(bound):
    async def scenario():
        test_client = await route_client()
        try:
            ws = await test_client.ws_connect("/waypoint/live/42/ws")
            player = Player(ws)
            await ws.send_str(json.dumps({"type": "settings", "format": "webp", "max_in_flight": 2}))
            await ws.send_str(json.dumps({"type": "control", "seq": 1, "buttons": [87], "mouse": [0.1, 0]}))
            await ws.send_str('{"type": "play"}')
            await _acking_pump(player, lambda p: len(p.frames) >= 3)
            for bad in ("nonsense", '{"type": "control", "buttons": [999]}', "[]", "x" * 8000):
                await ws.send_str(bad)
            await ws.send_bytes(b"\x00\x01binary")
            count = len(player.frames)
            await _acking_pump(player, lambda p: len(p.errors()) >= 5 and len(p.frames) >= count + 3)
            assert not player.closed()
            errors = " | ".join(player.errors())
            for words in ("not valid JSON", "button code", "JSON object", "larger than", "binary"):
                assert words in errors
            header, image = player.frames[-1]
            assert header["mime"] == "image/webp" and image[:4] == b"RIFF"
            await ws.send_str('{"type": "pause"}')
            await ws.send_str('{"type": "snapshot"}')
            await _acking_pump(player, lambda p: any(e["type"] == "snapshot" for e in p.events))
            path = next(e["path"] for e in player.events if e["type"] == "snapshot")
            assert os.path.isfile(os.path.join("output", path)) and path.startswith("waypoint")
            await ws.send_str('{"type": "export", "seconds": 5, "format": "webp"}')
            await _acking_pump(player, lambda p: any(e["type"] == "export" for e in p.events))
            clip = next(e["path"] for e in player.events if e["type"] == "export")
            assert clip.endswith(".webp") and os.path.getsize(os.path.join("output", clip)) > 0
            track = await (await test_client.get("/waypoint/live/42/track")).json()
            assert track["format"] == "waypoint-control-track/1" and track["seed"] == 3
            assert len(track["frames"]) >= 6 and track["frames"][0]["buttons"] == [87]
            info = await (await test_client.get("/waypoint/live/42")).json()
            assert info["bound"] and info["live"]["recorded_frames"] == len(track["frames"])
            await ws.close()
        finally:
            await test_client.close()
    run(scenario())


def test_over_cap_message_closes_only_that_socket_and_takeover(bound):
    async def scenario():
        test_client = await route_client()
        try:
            first = Player(await test_client.ws_connect("/waypoint/live/42/ws"))
            await first.ws.send_str("x" * (70 * 1024))
            await _acking_pump(first, lambda p: p.closed())
            second = Player(await test_client.ws_connect("/waypoint/live/42/ws"))
            await second.ws.send_str('{"type": "play"}')
            await _acking_pump(second, lambda p: len(p.frames) >= 2)
            third = Player(await test_client.ws_connect("/waypoint/live/42/ws"))   # takes over
            await _acking_pump(second, lambda p: p.closed())
            await third.ws.send_str('{"type": "play"}')
            await _acking_pump(third, lambda p: len(p.frames) >= 2)
            forget = await (await test_client.delete("/waypoint/live/42")).json()
            assert forget == {"forgotten": True}
            await _acking_pump(third, lambda p: p.closed())
        finally:
            await test_client.close()
    run(scenario())


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def _load(test_client, seconds: float):
    """RATE control messages/s (every 25th one bad) for `seconds`, acking frames; returns stats."""
    player = Player(await test_client.ws_connect("/waypoint/live/42/ws"))
    await player.ws.send_str('{"type": "play"}')
    sent, seq, bad = {}, 0, 0
    frames_per_second = []
    start = time.perf_counter()
    memory = []

    async def reader():
        while True:
            pending = player.take(await player.ws.receive())
            if pending is not None:
                await pending

    read_task = asyncio.ensure_future(reader())
    try:
        for second in range(int(seconds)):
            before = len(player.frames)
            for tick in range(100):
                for _ in range(RATE // 100):
                    seq += 1
                    if seq % 25 == 0:
                        bad += 1
                        await player.ws.send_str(["{", '{"type": "control", "mouse": [1]}', "7"][seq % 3])
                        continue
                    now = time.perf_counter() * 1000
                    sent[seq] = now
                    await player.ws.send_str(json.dumps({"type": "control", "seq": seq, "t": now,
                                                         "buttons": [87] if seq % 200 < 100 else [65],
                                                         "mouse": [0.001, 0.0]}))
                await asyncio.sleep(max(0.0, start + second + (tick + 1) / 100 - time.perf_counter()))
            frames_per_second.append(len(player.frames) - before)
            memory.append(rss_mb())
            for old in [s for s in sent if s < seq - 5000]:
                del sent[old]   # bounded bookkeeping on the client side too
        assert not player.closed()
        return player, sent, bad, frames_per_second, memory, time.perf_counter() - start
    finally:
        read_task.cancel()
        await player.ws.close()


def test_load_1000_messages_per_second(bound):
    async def scenario():
        test_client = await route_client()
        try:
            player, sent, bad, per_second, memory, elapsed = await _load(test_client, LOAD_SECONDS)
            assert all(count > 0 for count in per_second), f"a second without frames: {per_second}"
            rejected = max(e.get("rejected", 0) for e in player.events if e["type"] == "status")
            assert rejected >= bad * 0.8   # the last status may predate the last few
            growth = memory[-1] - memory[min(1, len(memory) - 1)]
            assert growth < 40, f"memory grew {growth:.1f} MB under load: {memory}"
            again = Player(await test_client.ws_connect("/waypoint/live/42/ws"))   # still serving
            await again.ws.send_str('{"type": "play"}')
            await _acking_pump(again, lambda p: len(p.frames) >= 1)
            await again.ws.close()
            latencies = [h["received"] - sent[h["control_seq"]] for h, _ in player.frames
                         if h.get("control_seq") in sent]
            beyond = [h["received"] - sent[h["control_seq"]] - h["step_ms"] for h, _ in player.frames
                      if h.get("control_seq") in sent]
            print(f"\nload: {RATE} msg/s for {elapsed:.1f}s, {len(player.frames)} frames "
                  f"({len(player.frames) / elapsed:.1f}/s), rejected {rejected}, rss {memory[0]:.0f}->{memory[-1]:.0f} MB;"
                  f" control->frame p50 {statistics.median(latencies):.1f} ms p99 {percentile(latencies, 0.99):.1f}"
                  f" ms; beyond step p50 {statistics.median(beyond):.1f} p99 {percentile(beyond, 0.99):.1f} ms")
        finally:
            await test_client.close()
    run(scenario())


def test_latency_of_sparse_input(bound):
    """A person's input: one control every ~120 ms; time until the first frame that used it."""
    async def scenario():
        test_client = await route_client()
        try:
            player = Player(await test_client.ws_connect("/waypoint/live/42/ws"))
            await player.ws.send_str('{"type": "play"}')
            sent = {}
            for seq in range(1, 26):
                sent[seq] = time.perf_counter() * 1000
                await player.ws.send_str(json.dumps({"type": "control", "seq": seq, "t": sent[seq],
                                                     "buttons": [87] if seq % 2 else []}))
                await _acking_pump(player, lambda p: any(h["control_seq"] == seq for h, _ in p.frames))
                await asyncio.sleep(0.12 * (0.5 + (seq * 37 % 10) / 10))
            await player.ws.close()
            used = [(h, sent[h["control_seq"]]) for h, _ in player.frames if h["control_seq"] in sent]
            assert len(used) == 25
            total = [h["received"] - t for h, t in used]
            beyond = [h["received"] - t - h["step_ms"] for h, t in used]
            steps = [h["step_ms"] for h, _ in player.frames]
            print(f"\nsparse input: step p50 {statistics.median(steps):.1f} ms; control->frame p50 "
                  f"{statistics.median(total):.1f} p99 {percentile(total, 0.99):.1f} ms; beyond the step p50 "
                  f"{statistics.median(beyond):.1f} p99 {percentile(beyond, 0.99):.1f} ms")
        finally:
            await test_client.close()
    run(scenario())
