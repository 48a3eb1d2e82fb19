"""Live worlds on Ray Serve (issue 18 part 3): a local Serve app with 2 CPU replicas of the toy world,
2 sessions each. Over real websockets through Ray's proxy: 4 players each stay on one replica for
their whole session (2 per replica), frames flow in order; a client that vanishes mid-stream (TCP
reset, no close handshake) frees its slot while the others keep playing; past capacity a player is
told "full" (close 1013) instead of getting frames; the app and Ray shut down cleanly.

One Ray start costs most of the time (tens of seconds on 2 cores), so the scenario runs in one test."""
from __future__ import annotations

import asyncio
import base64
import importlib.util
import io
import json
import os
import socket
import struct
import time
from collections import Counter

import aiohttp
import pytest
import yaml
from PIL import Image

from worldengine.config import load_config
from worldengine.live.protocol import unpack_frame
from worldengine.paths import TOY_MODEL_DIR

PER_REPLICA = 2
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray Serve is not installed (pip install -e \".[serve]\")")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Player:
    """A websocket client that acks every frame and keeps every frame header and event."""

    def __init__(self, name, ws):
        self.name, self.ws, self.frames, self.events = name, ws, [], []
        self.close_code = None

    @property
    def replicas(self) -> set:
        return {e["replica"] for e in self.events if e.get("type") == "status" and "replica" in e}

    async def start(self):
        await self.ws.send_str(json.dumps({"type": "control", "seq": 1, "buttons": [87], "mouse": [0.1, 0.0]}))
        await self.ws.send_str('{"type": "play"}')

    async def pump(self, until, timeout=45.0):
        deadline = time.monotonic() + timeout
        while not until(self):
            msg = await self.ws.receive(timeout=max(0.05, deadline - time.monotonic()))
            if msg.type == aiohttp.WSMsgType.BINARY:
                header, image = unpack_frame(msg.data)
                self.frames.append((header, image))
                await self.ws.send_str(json.dumps({"type": "ack", "frame": header["ordinal"]}))
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.events.append(json.loads(msg.data))
            else:
                self.close_code = self.ws.close_code
                self.events.append({"type": "closed"})
                return


def vanish_after_frames(port: int, session_id: str, frames: int = 3) -> None:
    """A raw websocket client that plays, reads until `frames` frame packets arrived, then vanishes:
    the socket is reset (SO_LINGER 0), no close frame, while its session is stepping."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall((f"GET /waypoint/live/{session_id}/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(4096)
    assert data.startswith(b"HTTP/1.1 101"), data[:200]
    for text in ('{"type": "settings", "max_in_flight": 8}', '{"type": "play"}'):
        payload, mask = text.encode(), os.urandom(4)
        conn.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    data, seen = data.split(b"\r\n\r\n", 1)[1], 0
    while seen < frames:   # count binary frames (opcode 2) in the server's unmasked stream
        data += conn.recv(65536)
        while len(data) >= 2:
            size, head = data[1] & 0x7F, 2
            if size == 126:
                size, head = struct.unpack(">H", data[2:4])[0], 4
            elif size == 127:
                size, head = struct.unpack(">Q", data[2:10])[0], 10
            if len(data) < head + size:
                break
            seen += (data[0] & 0x0F) == 2
            data = data[head + size:]
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from worldengine.cli.serve import start, stop
    from worldengine.serve.config import ServeConfig

    config = ServeConfig(model=str(TOY_MODEL_DIR), device="cpu", dtype="float32", quant="none", compile="off",
                         max_sessions=PER_REPLICA, replicas="2", num_cpus=0.5, num_gpus="0", preview="latent",
                         output_dir=str(tmp_path_factory.mktemp("serve")), shutdown_timeout_s=2.0)
    port = free_port()
    url = start(config, port=port, num_cpus=2)
    yield url, port
    stop()


async def connect(session, url, name) -> Player:
    return Player(name, await session.ws_connect(f"{url}/waypoint/live/{name}/ws"))


@needs_ray
def test_four_players_two_replicas_sticky_full_and_a_vanishing_client(served):
    url, port = served

    async def scenario():
        async with aiohttp.ClientSession() as http:
            players = [await connect(http, url, f"p{i}") for i in range(3)]
            for player in players:
                await player.start()
            # a 4th session that vanishes mid-stream; the 3 others play meanwhile
            vanish = asyncio.get_running_loop().run_in_executor(None, vanish_after_frames, port, "ghost")
            await asyncio.gather(*(p.pump(lambda p: len(p.frames) >= 4) for p in players))
            await vanish
            counts = [len(p.frames) for p in players]
            await asyncio.gather(*(p.pump(lambda p, n=n: len(p.frames) >= n + 4) for p, n in zip(players, counts)))

            players.append(await admitted(http, url, "p3"))   # the ghost's slot is freed
            await players[-1].start()
            await asyncio.gather(*(p.pump(lambda p: len(p.frames) >= 8 and len(p.replicas) >= 1) for p in players))

            extra = await connect(http, url, "p4")   # 4 sessions on 2 replicas of 2: full
            await extra.pump(lambda p: p.close_code is not None, timeout=30)
            full = [e for e in extra.events if e.get("type") == "error"]
            assert full and full[0]["code"] == "full" and "server full" in full[0]["message"], extra.events
            assert extra.close_code == 1013 and not extra.frames

            counts = [len(p.frames) for p in players]   # all 4 still play after the refusal
            await asyncio.gather(*(p.pump(lambda p, n=n: len(p.frames) >= n + 3) for p, n in zip(players, counts)))
            for player in players:
                await player.ws.close()
            return players

    players = asyncio.run(asyncio.wait_for(scenario(), 240))
    for player in players:
        assert len(player.replicas) == 1, (player.name, player.replicas)   # sticky for the whole session
        headers = [header for header, _ in player.frames]
        assert [h["ordinal"] for h in headers] == list(range(len(headers)))   # one world, stepped in order
        indices = [h["frame_index"] for h in headers]
        assert indices == list(range(indices[0], indices[0] + len(indices)))
        assert {h["mime"] for h in headers} == {"image/jpeg"}
        _, height, width = load_config(TOY_MODEL_DIR).latent_shape
        assert Image.open(io.BytesIO(player.frames[-1][1])).size == (8 * width, 8 * height)   # latent preview x8
    placement = Counter(next(iter(p.replicas)) for p in players)
    assert sorted(placement.values()) == [PER_REPLICA, PER_REPLICA], placement   # fewest-sessions routing


async def admitted(http, url, name, timeout=30.0) -> Player:
    """Connect as `name`, retrying while the server still answers "full" (a freed slot is seen once the
    replica noticed the reset connection)."""
    deadline = time.monotonic() + timeout
    while True:
        player = await connect(http, url, name)
        await player.pump(lambda p: p.events or p.frames)
        if not any(e.get("code") == "full" for e in player.events):
            return player
        await player.ws.close()
        assert time.monotonic() < deadline, f"{name} still refused as full after {timeout} s: {player.events}"
        await asyncio.sleep(0.5)


@needs_ray
def test_shutdown_is_clean(served):
    """After stop(), the port no longer answers and no Ray instance is left in this process."""
    import ray

    from worldengine.cli.serve import stop
    _, port = served
    stop()
    assert not ray.is_initialized()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_serve_options_are_checked_with_clear_errors():
    from worldengine.errors import WaypointError
    from worldengine.serve.config import ServeConfig

    assert ServeConfig.from_dict({"max_sessions": "3", "replicas": 2}).replicas == "2"   # config files give text
    for bad, words in (({"max_session": 3}, "unknown serve option(s) ['max_session']"),
                       ({"max_sessions": 0}, "max_sessions must be an integer in [1, 64]"),
                       ({"max_sessions": "many"}, "max_sessions must be a int"),
                       ({"replicas": "lots"}, "replicas must be 'auto' or an integer"),
                       ({"quant": "int4"}, "int4")):
        with pytest.raises(WaypointError, match=None) as caught:
            ServeConfig.from_dict(bad)
        assert words in str(caught.value), (bad, str(caught.value))


@needs_ray
def test_write_config_is_a_valid_serve_deploy_file_that_builds(tmp_path):
    """`serve --write-config` gives what `serve deploy` takes; its args build the same deployment."""
    from ray.serve.schema import ServeDeploySchema

    from worldengine.cli import main
    from worldengine.serve.config import ServeConfig
    from worldengine.serve.ray_app import build_app, deployment_options

    path = tmp_path / "serve.yaml"
    assert main(["serve", str(TOY_MODEL_DIR), "--max-sessions", "3", "--min-replicas", "1", "--max-replicas", "4",
                 "--host", "0.0.0.0", "--write-config", str(path)]) == 0
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    app = schema.applications[0]
    assert app.import_path == "worldengine.serve.ray_app:build_app" and schema.http_options.host == "0.0.0.0"
    options = deployment_options(ServeConfig.from_dict(app.args))
    assert options["max_ongoing_requests"] == 4   # 3 sessions + the socket told "full"
    scaling = options["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["target_ongoing_requests"]) == (1, 4, 2.25)
    assert "num_replicas" not in options
    assert build_app(app.args) is not None


@pytest.fixture()
def one_replica(tmp_path):
    """A ReplicaHost of the toy world (1 session) behind a plain Starlette app on uvicorn: the replica's
    socket handling without Ray (uvicorn and starlette come with Ray Serve)."""
    uvicorn = pytest.importorskip("uvicorn", reason="uvicorn comes with the [serve] extra")
    import threading

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    from worldengine.serve.config import ServeConfig
    from worldengine.serve.host import ReplicaHost

    host = ReplicaHost(ServeConfig(model=str(TOY_MODEL_DIR), device="cpu", dtype="float32", quant="none",
                                   compile="off", max_sessions=1, preview="latent", output_dir=str(tmp_path)))

    async def endpoint(websocket):
        await host.serve(websocket, websocket.path_params["sid"])

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[WebSocketRoute("/waypoint/live/{sid}/ws", endpoint)]),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield host, f"http://127.0.0.1:{port}", tmp_path
    host.close_all()
    server.should_exit = True
    thread.join(10)


def test_replica_protocol_admission_files_and_limits(one_replica):
    host, url, folder = one_replica

    async def scenario():
        async with aiohttp.ClientSession() as http:
            player = await connect(http, url, "a")
            await player.start()
            await player.pump(lambda p: len(p.frames) >= 2 and p.replicas)
            await player.ws.send_str("nonsense")
            await player.pump(lambda p: any(e.get("type") == "error" for e in p.events))
            refusals = {}
            for name in ("a", "b", "bad%20id"):   # the same id again, one past capacity, a bad id
                other = await connect(http, url, name)
                await other.pump(lambda p: p.close_code is not None, timeout=20)
                refusals[name] = (other.events[0].get("code"), other.close_code, len(other.frames))
            count = len(player.frames)
            await player.pump(lambda p: len(p.frames) >= count + 2)   # still playing after all that
            await player.ws.send_str('{"type": "snapshot"}')
            await player.pump(lambda p: any(e.get("type") == "snapshot" for e in p.events))
            await player.ws.send_str("x" * 70000)                      # over the hard limit: closed
            await player.pump(lambda p: p.close_code is not None, timeout=20)
            return player, refusals

    player, refusals = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert refusals == {"a": ("in_use", 1008, 0), "b": ("full", 1013, 0), "bad%20id": ("bad_id", 1008, 0)}
    assert player.replicas == {"local"}
    assert "not valid JSON" in next(e["message"] for e in player.events if e.get("type") == "error")
    name = next(e["path"] for e in player.events if e.get("type") == "snapshot")
    assert (folder / "local" / name).stat().st_size > 0 and name.startswith("a_snapshot_")
    assert player.close_code == 1009
    deadline = time.monotonic() + 10
    while host.stats()["sessions"]:   # the closed socket's slot is freed
        assert time.monotonic() < deadline, host.stats()
        time.sleep(0.1)
    assert host.stats()["refused"] == 2
