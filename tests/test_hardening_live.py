"""Live play under abuse (issue 15), on loopback aiohttp test servers: cross-origin pages get 403 before
the upgrade, many concurrent connects leave every open socket streaming or closed, a closed session's
socket is closed, exports hit a rate limit and a quota with a clear message, and file numbering is one
directory listing. Shutdown with a playing socket is in test_hardening_shutdown.py."""
from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import make_mocked_request
from live_helpers import route_client, small_live_world

from worldengine.live.protocol import unpack_frame

NODES, SOCKETS = 8, 50


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return small_live_world(tmp_path_factory)


@pytest.fixture()
def nodes(world, monkeypatch, tmp_path):
    from nodes.live import WaypointLivePlay, bindings
    monkeypatch.chdir(tmp_path)      # files go to ./output outside ComfyUI
    ids = [str(100 + i) for i in range(NODES)]
    for node_id in ids:
        WaypointLivePlay().bind_world(world, 3, "latent", unique_id=node_id)
    yield bindings, ids
    for node_id in ids:
        bindings.unbind(node_id)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 300))




# ---- Origin ------------------------------------------------------------------------------------
def _request(origin, host="127.0.0.1:8188"):
    headers = {"Host": host}
    if origin is not None:
        headers["Origin"] = origin
    return make_mocked_request("GET", "/waypoint/live/1/ws", headers=headers)


@pytest.mark.parametrize("origin, host, ok", [
    ("http://127.0.0.1:8188", "127.0.0.1:8188", True), ("http://LOCALHOST:8188", "localhost:8188", True),
    ("http://example.org", "example.org:80", True), (None, "127.0.0.1:8188", True),
    ("http://evil.example.com", "127.0.0.1:8188", False), ("null", "127.0.0.1:8188", False),
    ("http://127.0.0.1.evil.com:8188", "127.0.0.1:8188", False), ("file://", "127.0.0.1:8188", False),
    ("http://127.0.0.1:9999", "127.0.0.1:8188", False), ("https://127.0.0.1:8188", "127.0.0.1:8188", True),
    ("https://studio.example", "studio.example", True), ("https://studio.example:8443", "studio.example", False),
    ("chrome-extension://abc", "127.0.0.1:8188", False), ("http://127.0.0.1:8188@evil.com", "127.0.0.1:8188", False),
    ("http://[::1]:8188", "[::1]:8188", True), ("http://bücher.example", "127.0.0.1:8188", False),
])
def test_origin_must_be_this_server(origin, host, ok):
    from nodes.live.routes import origin_allowed
    assert origin_allowed(_request(origin, host)) is ok


def test_comfyui_cors_setting_is_honoured(monkeypatch):
    from nodes.live.routes import origin_allowed
    fake = SimpleNamespace(args=SimpleNamespace(enable_cors_header="*"))
    monkeypatch.setitem(sys.modules, "comfy.cli_args", fake)
    assert origin_allowed(_request("http://evil.example.com"))
    fake.args.enable_cors_header = "https://studio.example.com"
    assert origin_allowed(_request("https://studio.example.com"))
    assert not origin_allowed(_request("http://evil.example.com"))
    fake.args.enable_cors_header = None
    assert not origin_allowed(_request("https://studio.example.com"))


def test_cross_origin_pages_get_403_before_the_upgrade(nodes):
    _, ids = nodes

    async def scenario():
        test_client = await route_client()
        try:
            for origin in ("http://evil.example.com", "null", "http://127.0.0.1.evil.com", "file://"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await test_client.ws_connect(f"/waypoint/live/{ids[0]}/ws", headers={"Origin": origin})
                assert refused.value.status == 403
            own = f"http://{test_client.host}:{test_client.port}"
            ws = await test_client.ws_connect(f"/waypoint/live/{ids[0]}/ws", headers={"Origin": own})
            await ws.send_str('{"type": "play"}')
            assert await _first_outcome(ws) == "frame"
            await ws.close()
        finally:
            await test_client.close()
    run(scenario())


# ---- takeover ----------------------------------------------------------------------------------
async def _first_outcome(ws, timeout=120.0):
    """Read (acking frames) until a frame ("frame") or the close ("closed")."""
    deadline = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type == WSMsgType.BINARY:
            header, _ = unpack_frame(msg.data)
            await ws.send_str(json.dumps({"type": "ack", "frame": header["ordinal"]}))
            return "frame"
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return "closed"


async def _connect_and_play(test_client, node_id):
    ws = await test_client.ws_connect(f"/waypoint/live/{node_id}/ws")
    await ws.send_str('{"type": "play"}')
    return ws


def test_concurrent_connects_leave_every_open_socket_streaming_or_closed(nodes):
    bindings, ids = nodes
    order = [ids[i % NODES] for i in range(SOCKETS)]
    random.Random(15).shuffle(order)

    async def scenario():
        test_client = await route_client()
        try:
            sockets = await asyncio.gather(*(_connect_and_play(test_client, node_id) for node_id in order))
            first = await asyncio.gather(*(_first_outcome(ws) for ws in sockets))
            # Settle: a socket that streamed may still have been taken over since; read once more.
            final = await asyncio.gather(*(_first_outcome(ws) if ws.closed is False else _closed() for ws in sockets))
            open_per_node = {}
            for node_id, ws, outcome in zip(order, sockets, final):
                if outcome == "frame":
                    open_per_node[node_id] = open_per_node.get(node_id, 0) + 1
            print(json.dumps({"first": {k: first.count(k) for k in ("frame", "closed")},
                              "final": {k: final.count(k) for k in ("frame", "closed")}}))
            assert set(open_per_node) == set(ids) and set(open_per_node.values()) == {1}
            for node_id in ids:
                status = bindings.get_binding(node_id).live.status()
                assert status["playing"] and status["steps"] > 0
            for ws in sockets:
                await ws.close()
        finally:
            await test_client.close()
    run(scenario())


async def _closed():
    return "closed"


def test_a_closed_session_closes_its_socket_and_play_cannot_revive_it(nodes):
    bindings, ids = nodes

    async def scenario():
        test_client = await route_client()
        try:
            ws = await _connect_and_play(test_client, ids[1])
            assert await _first_outcome(ws) == "frame"
            live = bindings.get_binding(ids[1]).live
            bindings.unbind(ids[1])        # e.g. evicted by newer bindings: the socket must not linger
            assert await _first_outcome(ws) in ("frame", "closed")
            while await _first_outcome(ws) == "frame":
                pass
            live.play()
            assert live.closed and not live.playing and not live.status()["playing"]
        finally:
            await test_client.close()
    run(scenario())


# ---- exports -----------------------------------------------------------------------------------
async def _events_until(ws, kind, count=1, timeout=120.0):
    events, deadline = [], time.monotonic() + timeout
    while sum(e.get("type") == kind for e in events) < count:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        if msg.type == WSMsgType.TEXT:
            events.append(json.loads(msg.data))
        elif msg.type == WSMsgType.BINARY:
            await ws.send_str(json.dumps({"type": "ack", "frame": unpack_frame(msg.data)[0]["ordinal"]}))
        else:
            raise AssertionError(f"socket closed: {msg}")
    return events


def _export_results(events):
    return [e for e in events if e["type"] in ("snapshot", "export") or
            (e["type"] == "error" and "refused" in e["message"])]


def test_exports_have_a_rate_limit_and_a_quota(nodes):
    from worldengine.serve.socket import ExportQuota
    bindings, ids = nodes

    async def scenario():
        test_client = await route_client()
        try:
            binding = bindings.get_binding(ids[2])
            binding.quota = ExportQuota(min_interval=3600.0)
            ws = await _connect_and_play(test_client, ids[2])
            await _first_outcome(ws)
            for _ in range(3):
                await ws.send_str('{"type": "snapshot"}')
            events = await _events_until(ws, "error", 2)
            results = _export_results(events)
            assert [e["type"] for e in results] == ["snapshot", "error", "error"]
            assert "at most one snapshot every 3600 s per live node" in results[1]["message"]
            binding.quota = ExportQuota(min_interval=0.0, max_files=2)
            for _ in range(3):
                await ws.send_str('{"type": "snapshot"}')
            events = await _events_until(ws, "error")
            message = next(e["message"] for e in events if e["type"] == "error")
            assert "snapshot refused" in message and "quota" in message and "2 files" in message
            assert "delete some" in message
            await ws.send_str('{"type": "export", "seconds": 5, "format": "webp"}')
            events = await _events_until(ws, "error")
            assert "clip refused" in next(e["message"] for e in events if e["type"] == "error")
            for path in binding.quota.written:   # deleting files frees the quota
                os.remove(path)
            await ws.send_str('{"type": "snapshot"}')
            await _events_until(ws, "snapshot")
            await ws.close()
        finally:
            await test_client.close()
    run(scenario())


def test_export_names_are_one_listing_not_a_search(tmp_path, monkeypatch):
    from nodes import world_nodes
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "output" / "waypoint"
    folder.mkdir(parents=True)
    for name in ("live_clip_00007.webp", "live_clip_99999.gif", "live_00003.safetensors", "live_clip_x.webp"):
        (folder / name).write_bytes(b"")
    monkeypatch.setattr(world_nodes.Path, "exists", lambda self: pytest.fail("probed names one by one"))
    assert world_nodes.next_snapshot_path("waypoint/live_clip", ".mp4").name == "live_clip_100000.mp4"
    assert world_nodes.next_snapshot_path("waypoint/live").name == "live_00004.safetensors"
