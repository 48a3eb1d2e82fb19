"""Several live players on one engine: the device worker steps every due session in one batched
`engine.step_many` call, each session's frames equal the ones it makes alone (its track + seed replayed
one step at a time), a client that stops acknowledging drops out of the batch without holding the others,
closing sessions mid-step is safe, and a batch that raises fails only the session at fault.
CPU, float32, a tiny Waypoint-1.5 model with a 2x4 latent (steps take milliseconds)."""
from __future__ import annotations

import threading
import time

import pytest
import torch
from live_helpers import SMALL, route_client

from worldengine import Controls, load_engine
from worldengine.batch import stepper_for
from worldengine.live.frames import LatentPreview
from worldengine.live.session import LiveSession, LiveSettings
from worldengine.quant.select import one_thread

KEYS = [{87}, {65, 16}, set(), {68, 32}, {83}]   # W, A+Shift, nothing, D+Space, S


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from worldengine.synthetic import write_tiny_checkpoint
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("multi") / "m", model_type="waypoint-1.5", **SMALL)
    return load_engine(folder, quant=None, compile=False)


@pytest.fixture(scope="module")
def base(engine):
    session = engine.new_session()
    session.append_latent(torch.randn(engine.config.latent_shape, generator=torch.Generator().manual_seed(3)))
    return session.snapshot()


@pytest.fixture
def batch_sizes(engine, monkeypatch):
    """Every step_many call's request count (the real call runs)."""
    sizes, real = [], engine.step_many

    def recording(requests):
        sizes.append(len(requests))
        return real(requests)

    monkeypatch.setattr(engine, "step_many", recording)
    return sizes


class Player:
    """One live session and its client: keeps frames, acks them (or not), changes its keys every frame,
    and pauses itself after `stop_after` frames."""

    def __init__(self, engine, base, seed, index, ack=True, stop_after=None, **settings):
        self.frames, self.events, self.ack, self.index, self.stop_after = [], [], ack, index, stop_after
        self.cond = threading.Condition()
        preview = lambda name: LatentPreview(engine.config.latent_shape[0])
        self.live = LiveSession(engine, base, seed, preview, self.sink, self.events.append,
                                settings=LiveSettings(**settings))
        self.press(0)

    def press(self, count):
        self.live.submit_control(KEYS[(count + self.index) % len(KEYS)], mouse=(0.3 * self.index - 0.5, 0.1),
                                 scroll=count % 3 - 1, seq=count)

    def sink(self, frame):
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()
        if self.stop_after is not None and len(self.frames) >= self.stop_after:
            self.live.pause()
        self.press(len(self.frames))
        if self.ack:
            self.live.ack(frame.ordinal)

    def wait(self, count, timeout=60.0):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.frames) >= count, timeout), \
                f"player {self.index}: only {len(self.frames)} of {count} frames arrived"


def replay_alone(engine, base, live):
    """The session's recorded controls and seed stepped alone, one session.step at a time."""
    session = engine.new_session()
    session.restore(base)
    track = live.track()
    generator = torch.Generator().manual_seed(track.seed)
    return [session.step(controls, generator=generator) for controls in track.frames]


def test_due_players_step_in_one_batch_and_match_their_frames_alone(engine, base, batch_sizes):
    with one_thread():
        players = [Player(engine, base, seed=20 + i, index=i, stop_after=12) for i in range(4)]
        for player in players:
            player.live.play()
        for player in players:
            player.wait(12)
        for player in players:
            player.live.close()
    assert max(batch_sizes) > 1, f"never batched: {batch_sizes}"
    assert any(frame.batch > 1 for player in players for frame in player.frames)
    for player in players:
        track = player.live.track()
        assert len(track) == len(player.frames)                  # every step recorded
        assert len({c.buttons for c in track.frames}) > 1        # its keys really changed
        alone = replay_alone(engine, base, player.live)
        error = max((f.latent - a).abs().max().item() for f, a in zip(player.frames, alone))
        assert error <= 1e-5, f"player {player.index}: batched frames differ from alone by {error:.3g}"
    first = [player.frames[0].latent for player in players]
    assert not torch.equal(first[0], first[1])                   # own seeds, own worlds


def test_hud_figures_are_per_session(engine, base, batch_sizes):
    with one_thread():
        players = [Player(engine, base, seed=i, index=i, stop_after=8) for i in range(3)]
        for player in players:
            player.live.play()
        for player in players:
            player.wait(8)
        statuses = [player.live.status() for player in players]
        for player in players:
            player.live.close()
    for player, status in zip(players, statuses):
        batched = [f for f in player.frames if f.batch > 1]
        assert batched, f"player {player.index} never shared a forward"
        for frame in batched:   # its wait covers its step, the renders before it and its own
            assert frame.latency_ms >= frame.step_ms + frame.render_ms + frame.encode_ms - 1e-3
            header = frame.header(0)
            assert header["batch"] == frame.batch and header["latency_ms"] == round(frame.latency_ms, 3)
        assert status["batch"] >= 1 and status["latency_ms"] >= status["step_ms"] > 0
        assert status["steps"] == len(player.frames) and status["device_sessions"] >= 3
    assert max(batch_sizes) == 3


def test_a_client_that_stops_acking_does_not_stall_the_others(engine, base, batch_sizes):
    with one_thread():
        stalled = Player(engine, base, seed=1, index=0, ack=False, max_in_flight=2)
        others = [Player(engine, base, seed=2 + i, index=1 + i) for i in range(2)]
        for player in (stalled, *others):
            player.live.play()
        for player in others:
            player.wait(25)
        for count in range(50):   # its input keeps coming: it coalesces, nothing queues
            stalled.press(count)
        held = len(stalled.frames)
        for player in others:
            player.wait(len(player.frames) + 10)
        assert len(stalled.frames) == held == 2                  # bounded by max_in_flight, not queued
        assert stalled.live.status()["in_flight"] == 2
        assert batch_sizes[-5:] == [2] * 5                       # the two others still batched together
        stalled.live.ack(stalled.frames[-1].ordinal)             # the client catches up: it steps again
        stalled.wait(4)
        for player in (stalled, *others):
            player.live.close()
    assert stalled.frames[2].control_seq == 49                   # latest control won
    assert stalled.frames[2].frame_index == stalled.frames[1].frame_index + 1


def test_a_player_busy_in_another_thread_sits_out_without_holding_the_others(engine, base, batch_sizes):
    """While one session's step lock is held elsewhere (what writing its snapshot or a reset holds),
    the worker steps the other players; the busy one steps again once released."""
    with one_thread():
        players = [Player(engine, base, seed=i, index=i) for i in range(3)]
        busy = players[0]
        for player in players:
            player.live.play()
        busy.wait(3)
        with busy.live._lock:
            held = len(busy.frames)
            for player in players[1:]:
                player.wait(len(player.frames) + 15, timeout=20)
            assert len(busy.frames) == held
        busy.wait(held + 3)
        for player in players:
            player.live.close()
    assert 2 in batch_sizes and 3 in batch_sizes


def test_closing_players_mid_step_is_safe(engine, base, batch_sizes, monkeypatch):
    """One player is closed from another thread while a batched step runs, one from inside another
    player's sink (the stepping thread); the rest keep playing and nothing steps a closed session."""
    entered, release = threading.Event(), threading.Event()
    recorder = engine.step_many

    def slow_step(requests):
        if len(batch_sizes) > 6 and not entered.is_set():
            entered.set()
            release.wait(5)
        return recorder(requests)

    monkeypatch.setattr(engine, "step_many", slow_step)
    with one_thread():
        players = [Player(engine, base, seed=i, index=i) for i in range(4)]
        victim, closer = players[3], players[2]
        closer_sink = closer.sink

        def sink_that_closes(frame):
            closer_sink(frame)
            if len(closer.frames) == 10:
                victim.live.close()
        closer.live._sink = sink_that_closes
        for player in players:
            player.live.play()
        assert entered.wait(30)
        closing = threading.Thread(target=players[0].live.close)
        closing.start()
        time.sleep(0.1)
        assert closing.is_alive()              # close waits for the step in progress...
        release.set()
        closing.join(10)
        assert not closing.is_alive()          # ...and returns once it ended
        after_close = len(players[0].frames)
        for player in players[1:3]:
            player.wait(20)
        counts = [len(player.frames) for player in players]
        time.sleep(0.1)
        assert len(players[0].frames) == after_close and len(victim.frames) == counts[3]
        for player in players[1:3]:
            player.live.close()
    assert victim.live.closed and counts[3] >= 10
    assert not any(e["type"] == "error" for player in players for e in player.events)


def test_a_batch_that_raises_fails_only_the_player_at_fault(engine, base, batch_sizes):
    """A world whose inputs raise makes the batched call raise: every player steps again alone from the
    same noise, so the faulty one is paused with an error and the others' frames stay exact."""
    with one_thread():
        players = [Player(engine, base, seed=40 + i, index=i, stop_after=6) for i in range(3)]
        faulty = players[1]
        real_inputs = faulty.live.session.frame_inputs

        def inputs_that_raise(controls):
            if faulty.live.steps_since_base >= 2:
                raise RuntimeError("this world's inputs broke")
            return real_inputs(controls)
        faulty.live.session.frame_inputs = inputs_that_raise
        for player in players:
            player.live.play()
        for player in (players[0], players[2]):
            player.wait(6)
        for player in players:
            player.live.close()
    assert max(batch_sizes) == 3 and len(faulty.frames) == 2 and not faulty.live.playing
    assert any(e["type"] == "error" and "inputs broke" in e["message"] for e in faulty.events)
    for player in (players[0], players[2]):
        alone = replay_alone(engine, base, player.live)
        assert len(alone) == len(player.frames)
        assert max((f.latent - a).abs().max().item() for f, a in zip(player.frames, alone)) <= 1e-5


def test_the_batch_workspaces_count_in_the_memory_estimate(engine, base):
    before = engine.memory_estimate()
    sessions = [engine.new_session() for _ in range(3)]
    for session in sessions:
        session.restore(base)
    with one_thread():
        engine.step_many([(s, Controls(), torch.Generator().manual_seed(i)) for i, s in enumerate(sessions)])
    after = engine.memory_estimate()
    workspaces = stepper_for(engine).nbytes()
    assert workspaces > 0 and after["batch"] == workspaces >= before["batch"]
    assert after["total"] == sum(v for k, v in after.items() if k != "total")


def test_live_bench_measures_both_modes_in_one_run(engine):
    """`python -m worldengine.live.bench`'s measurement: every player plays in both modes (figures only,
    no speed asserted), and the worker is left batching."""
    from worldengine.live.bench import MODES, measure
    with one_thread():
        figures = measure(engine, sessions=2, seconds=0.8, rounds=1)
    for mode in MODES:
        assert figures[mode]["aggregate_latent_fps"] > 0 and all(f > 0 for f in figures[mode]["per_session_latent_fps"])
        assert 0 < figures[mode]["latency_ms_p50"] <= figures[mode]["latency_ms_p99"]
    from worldengine.live.worker import MAX_BATCH, worker_for
    assert worker_for(str(engine.device)).max_batch == MAX_BATCH


# ---- over the ComfyUI route: one Live Play node per player -------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from live_helpers import small_live_world
    return small_live_world(tmp_path_factory)


async def _read_frames(ws, frames: list, count: int, timeout: float = 60.0) -> None:
    """Read (acking every frame) until `count` frames arrived."""
    import json

    from aiohttp import WSMsgType

    from worldengine.live.protocol import unpack_frame
    deadline = time.monotonic() + timeout
    while len(frames) < count:
        msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
        assert msg.type in (WSMsgType.BINARY, WSMsgType.TEXT), f"socket ended: {msg.type}"
        if msg.type == WSMsgType.BINARY:
            header, _ = unpack_frame(msg.data)
            frames.append(header)
            await ws.send_str(json.dumps({"type": "ack", "frame": header["ordinal"]}))


def test_players_on_sockets_a_silent_one_and_one_that_vanishes(world, tmp_path, monkeypatch):
    """Three Live Play nodes on one world, each its own socket: one client stops reading (no acks),
    one vanishes mid-play; the third keeps getting frames all along, batched while others play."""
    import asyncio

    from nodes.live import WaypointLivePlay, bindings
    monkeypatch.chdir(tmp_path)
    names = ["p1", "p2", "p3"]
    for index, name in enumerate(names):
        WaypointLivePlay().bind_world(world, index, "auto", unique_id=name)

    async def scenario():
        test_client = await route_client()
        try:
            silent, leaving, steady = [await test_client.ws_connect(f"/waypoint/live/{n}/ws") for n in names]
            for ws in (silent, leaving, steady):
                await ws.send_str('{"type": "play"}')
            got = {"leaving": [], "steady": []}
            await asyncio.gather(_read_frames(leaving, got["leaving"], 8), _read_frames(steady, got["steady"], 8))
            info = await (await test_client.get("/waypoint/live/p1")).json()
            assert info["live"]["in_flight"] == info["live"]["max_in_flight"]   # held back, not queued
            held = info["live"]["steps"]
            await leaving.close()                    # gone mid-play
            await _read_frames(steady, got["steady"], 20)
            info = await (await test_client.get("/waypoint/live/p1")).json()
            assert info["live"]["steps"] == held     # the silent one never stepped again
            assert any(h["batch"] > 1 for h in got["steady"]) and got["steady"][-1]["batch"] == 1
            await silent.close()
            await steady.close()
        finally:
            await test_client.close()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 120))
    finally:
        for name in names:
            bindings.unbind(name)


@pytest.mark.slow
def test_a_compiled_engine_steps_players_alone_until_their_batch_compiled():
    """Compiling a bucket takes tens of seconds: live play steps the players one by one meanwhile (the
    compile runs in a background thread), then batched; frames equal each player's own replay."""
    from worldengine.cli.bench import build_engine, random_state
    from worldengine.config import config_from_dict
    from worldengine.synthetic.presets import preset_dict
    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2, **SMALL})
    state = random_state(config, seed=3)
    torch._dynamo.reset()
    compiled = build_engine(config, state, "cpu", "float32", None, compile=True)
    world = compiled.new_session()
    world.append_latent(torch.randn(config.latent_shape, generator=torch.Generator().manual_seed(3)))
    start = world.snapshot()
    with one_thread():
        players = [Player(compiled, start, seed=i, index=i) for i in range(2)]
        for player in players:
            player.live.play()
        players[0].wait(3)
        assert stepper_for(compiled).warm == {2: "compiling"}
        assert all(f.batch == 1 for f in players[0].frames[:3])
        deadline = time.time() + 300
        while not any(f.batch == 2 for f in players[0].frames[-3:]) and time.time() < deadline:
            time.sleep(0.5)
        for player in players:
            player.live.pause()
        time.sleep(0.2)
        for player in players:
            player.live.close()
        assert stepper_for(compiled).warm == {2: "ready"}
        assert any(f.batch == 2 for f in players[0].frames)
        for player in players:
            alone = replay_alone(compiled, start, player.live)
            assert max((f.latent - a).abs().max().item() for f, a in zip(player.frames, alone)) <= 1e-5
    torch._dynamo.reset()
