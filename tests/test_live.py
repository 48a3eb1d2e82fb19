"""Live play: wire protocol, previews, the live loop (latest control wins, backpressure, recording that
replays bit-exactly through StepWorld), the Live Play node, and the websocket route under abuse and
load (aiohttp test server on loopback). CPU only, tiny random models."""
from __future__ import annotations

import io
import json
import os
import threading
import time

import pytest
import torch

from worldengine import Controls, load_engine
from worldengine.errors import WaypointError
from worldengine.live.frames import LatentPreview, encode_image, fit_size
from worldengine.live.protocol import (
    MAX_MESSAGE_BYTES,
    ProtocolError,
    pack_frame,
    parse_message,
    unpack_frame,
)
from worldengine.live.session import LiveSession, LiveSettings
from worldengine.live.worker import worker_for

# Latent 32x4x8 with the real-size TAEHV (frames 64x128): fast enough to seed through the AE.
SMALL = {"height": 2, "width": 4, "tokens_per_frame": 8}
LOAD_SECONDS = float(os.environ.get("WAYPOINT_LIVE_LOAD_SECONDS", "4"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from worldengine.synthetic import write_tiny_checkpoint
    folder = tmp_path_factory.mktemp("live") / "small-wp15"
    return write_tiny_checkpoint(folder, model_type="waypoint-1.5", **SMALL)


@pytest.fixture(scope="module")
def engine(model_dir):
    return load_engine(model_dir)


@pytest.fixture(scope="module")
def base(engine):
    session = engine.new_session()
    session.append_latent(torch.randn(engine.config.latent_shape, generator=torch.Generator().manual_seed(3)))
    return session.snapshot()


class Collector:
    """A sink that keeps frames, acks them (or not), and lets a test wait for a count."""

    def __init__(self, auto_ack=True):
        self.frames, self.events, self.auto_ack, self.live = [], [], auto_ack, None
        self.cond = threading.Condition()

    def sink(self, frame):
        with self.cond:
            self.frames.append(frame)
            self.cond.notify_all()
        if self.auto_ack:
            self.live.ack(frame.ordinal)

    def event(self, event):
        self.events.append(event)

    def wait(self, count, timeout=30.0):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.frames) >= count, timeout), \
                f"only {len(self.frames)} of {count} frames arrived"


def start_live(engine, base, seed=11, auto_ack=True, **settings):
    collector = Collector(auto_ack)
    preview = lambda name: LatentPreview(engine.config.latent_shape[0])
    live = LiveSession(engine, base, seed, preview, collector.sink, collector.event,
                       settings=LiveSettings(**settings))
    collector.live = live
    return live, collector


def replay(engine, base, track):
    session = engine.new_session()
    session.restore(base)
    generator = torch.Generator().manual_seed(track.seed)
    return [session.step(c, generator=generator) for c in track.frames]


# ---- protocol ------------------------------------------------------------------------------------
def test_parse_control_message():
    message = parse_message(json.dumps({"type": "control", "seq": 4, "t": 10.5, "buttons": [87, 16],
                                        "mouse": [0.25, -1], "scroll": 1}))
    assert message == {"type": "control", "seq": 4, "t": 10.5, "buttons": frozenset({87, 16}),
                       "mouse": (0.25, -1.0), "scroll": 1}
    assert parse_message('{"type": "record", "on": false}') == {"type": "record", "on": False}
    assert parse_message('{"type": "settings", "preview": "decoded", "max_in_flight": 3}')["max_in_flight"] == 3


@pytest.mark.parametrize("text, words", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"type": "fly"}', "unknown message type"),
    ('{"type": "control", "extra": 1}', "unknown field"),
    ('{"type": "control", "buttons": [300]}', "button code"),
    ('{"type": "control", "buttons": ["W"]}', "button code"),
    ('{"type": "control", "buttons": [true]}', "button code"),
    ('{"type": "control", "mouse": [1e9, 0]}', "mouse dx"),
    ('{"type": "control", "mouse": [NaN, 0]}', "mouse dx"),
    ('{"type": "control", "mouse": [0]}', "mouse must be"),
    ('{"type": "control", "scroll": 2}', "scroll"),
    ('{"type": "control", "seq": -1}', "seq"),
    ('{"type": "control", "buttons": ' + json.dumps(list(range(40))) + '}', "at most 32"),
    ('{"type": "ack"}', "frame"),
    ('{"type": "record", "on": 1}', "true or false"),
    ('{"type": "settings", "preview": "3d"}', "preview"),
    ('{"type": "settings", "max_in_flight": 99}', "max_in_flight"),
    ('{"type": "settings", "max_fps": -1}', "max_fps"),
    ('{"type": "export", "format": "avi"}', "format"),
    ('{"type": "export", "seconds": 99}', "seconds"),
    ("[" * 100000, "larger than"),
])
def test_parse_rejects_bad_messages(text, words):
    with pytest.raises(ProtocolError, match=words):
        parse_message(text)


def test_parse_rejects_bytes_and_oversize():
    with pytest.raises(ProtocolError, match="JSON text"):
        parse_message(b'{"type": "play"}')
    big = json.dumps({"type": "ping", "t": 1.0}) + " " * MAX_MESSAGE_BYTES
    with pytest.raises(ProtocolError, match="larger than"):
        parse_message(big)


def test_frame_packet_round_trip():
    header, image = unpack_frame(pack_frame({"type": "frame", "ordinal": 3}, b"\xff\xd8jpeg"))
    assert header == {"type": "frame", "ordinal": 3} and image == b"\xff\xd8jpeg"
    with pytest.raises(ProtocolError):
        unpack_frame(b"\x00\x00\x01\x00{}")


# ---- previews ------------------------------------------------------------------------------------
def test_latent_preview_is_deterministic_and_sensitive():
    preview = LatentPreview(32, upscale=4)
    latent = torch.randn(32, 4, 8, generator=torch.Generator().manual_seed(0))
    frames = preview.render(latent)
    assert frames.shape == (1, 3, 16, 32) and 0 <= frames.min() and frames.max() <= 1
    assert torch.equal(frames, LatentPreview(32, upscale=4).render(latent))
    changed = latent.clone()
    changed[5] += 1.0
    assert not torch.equal(frames, preview.render(changed))
    with pytest.raises(WaypointError, match="latent"):
        preview.render(torch.zeros(8, 4, 8))


@pytest.mark.parametrize("fmt, magic", [("jpeg", b"\xff\xd8"), ("webp", b"RIFF")])
def test_encode_image_fits_the_widget(fmt, magic):
    from PIL import Image
    frame = torch.rand(3, 90, 160, generator=torch.Generator().manual_seed(1))
    data = encode_image(frame, fmt, quality=70, max_width=80, max_height=80)
    assert data[:len(magic)] == magic
    assert Image.open(io.BytesIO(data)).size == (80, 45)
    assert fit_size(10, 20, 640, 360) == (10, 20)    # never upscaled
    with pytest.raises(WaypointError, match="format"):
        encode_image(frame, "png")


# ---- the live loop -------------------------------------------------------------------------------
def test_recording_replays_bit_exactly(engine, base):
    live, got = start_live(engine, base, seed=21)
    live.submit_control([87], (0.5, 0.0), 0, seq=1)
    live.play()
    got.wait(3)
    live.submit_control([65, 16], (-0.25, 0.1), 1, seq=2)
    got.wait(6)
    live.pause()
    time.sleep(0.05)
    track = live.track()
    live.close()
    frames = got.frames[:len(track)]
    assert len(track) >= 6 and track.seed == 21
    assert {87} in [set(c.buttons) for c in track.frames] and {65, 16} in [set(c.buttons) for c in track.frames]
    assert all(torch.equal(a, f.latent) for a, f in zip(replay(engine, base, track), frames))
    assert [f.frame_index for f in frames] == list(range(1, len(track) + 1))


def test_latest_control_wins(engine, base):
    live, got = start_live(engine, base)
    for seq in range(1, 51):   # 50 messages before any step: one frame consumes them all
        live.submit_control([87] if seq < 50 else [68], (0.01, -0.02), 1 if seq == 7 else 0, seq=seq, t=float(seq))
    live.play()
    got.wait(2)
    live.close()
    first, second = got.frames[0], got.frames[1]
    assert first.control_seq == 50 and first.control_t == 50.0 and second.control_seq is None
    controls = live.track().frames
    assert controls[0].buttons == {68} and controls[0].scroll == 1
    assert controls[0].mouse == pytest.approx((0.5, -1.0))
    assert controls[1].buttons == {68} and controls[1].mouse == (0.0, 0.0) and controls[1].scroll == 0


def test_mouse_clamped_and_unknown_buttons_dropped(engine, base):
    live, got = start_live(engine, base)
    for _ in range(30):
        live.submit_control([87, 255], (1.0, -1.0), 0)
    live.play()
    got.wait(1)
    live.close()
    first = live.track().frames[0]
    assert first.mouse == (10.0, -10.0)
    assert first.buttons == ({87, 255} if engine.config.n_buttons > 255 else {87})


def test_backpressure_stops_at_max_in_flight(engine, base):
    live, got = start_live(engine, base, auto_ack=False, max_in_flight=3)
    live.play()
    got.wait(3)
    time.sleep(0.5)
    assert len(got.frames) == 3 and live.status()["in_flight"] == 3
    live.ack(0)
    got.wait(4)
    time.sleep(0.3)
    assert len(got.frames) == 4
    live.ack(10 ** 6)    # an ack past the newest frame frees only what was sent
    got.wait(7)
    live.close()
    assert live.ordinal - live.acked <= 3


def test_reset_and_record_toggle(engine, base):
    live, got = start_live(engine, base, seed=5)
    live.play()
    got.wait(3)
    live.set_recording(False)      # freeze: later frames are not recorded
    frozen = len(live.track())
    got.wait(len(got.frames) + 2)
    live.pause()
    assert len(live.track()) == frozen and live.status()["steps"] > frozen
    first_latent = got.frames[0].latent
    live.set_recording(True)       # a gap in the track: back to the base world
    assert live.status()["steps"] == 0 and len(live.track()) == 0
    assert live.status()["frame_index"] == base.frame_index
    count = len(got.frames)
    live.play()
    got.wait(count + 1)
    live.close()
    assert torch.equal(got.frames[count].latent, first_latent)   # same seed, same base, same noise


def test_one_worker_thread_serves_two_sessions(engine, base):
    one, got_one = start_live(engine, base, seed=1)
    two, got_two = start_live(engine, base, seed=2)
    assert one.worker is two.worker is worker_for(str(engine.device))
    names = [t.name for t in threading.enumerate() if t.name.startswith("waypoint-live-")]
    assert names.count(f"waypoint-live-{engine.device}") == 1
    one.play(), two.play()
    got_one.wait(3), got_two.wait(3)
    one.close(), two.close()
    assert not torch.equal(got_one.frames[0].latent, got_two.frames[0].latent)
    deadline = time.time() + 5
    while one.worker.alive and time.time() < deadline:
        time.sleep(0.02)
    assert not one.worker.alive    # the thread ends with its last session


def test_a_failing_session_does_not_stop_the_device(engine, base):
    class Broken:
        def render(self, latent):
            raise RuntimeError("renderer exploded")

    events = []
    bad = LiveSession(engine, base, 0, lambda name: Broken(), lambda f: None, events.append)
    good, got = start_live(engine, base)
    bad.play(), good.play()
    got.wait(4)
    bad.close(), good.close()
    assert any(e["type"] == "error" and "renderer exploded" in e["message"] for e in events)
    assert bad.playing is False


# ---- the node ------------------------------------------------------------------------------------
def seeded_world(model_dir):
    from nodes.core import WaypointLoad, WaypointSeedFrame
    engine = WaypointLoad().load(str(model_dir), "cpu", "float32", "none", False)[0]
    image = torch.rand(1, 36, 64, 3, generator=torch.Generator().manual_seed(0))
    return WaypointSeedFrame().seed(engine, image, "crop")[0]


def test_node_outputs_the_played_track_and_step_world_replays_it(model_dir):
    from nodes import NODE_CLASS_MAPPINGS
    from nodes.core import WaypointStepWorld
    from nodes.live import bindings as live_nodes

    assert "WaypointLivePlay" in NODE_CLASS_MAPPINGS
    world = seeded_world(model_dir)
    node = NODE_CLASS_MAPPINGS["WaypointLivePlay"]()
    first = node.bind_world(world, 9, "auto", unique_id="n7")
    idle = first["result"][0]
    assert len(idle) == 1 and idle.seed == 9 and idle.frames[0] == Controls()
    assert first["ui"]["waypoint_live"][0]["recorded_frames"] == 1

    binding = live_nodes.get_binding("n7")
    got = Collector()
    live = live_nodes.open_live(binding, got.sink, got.event)
    got.live = live
    assert live.settings.preview == "latent"    # auto on CPU
    live.submit_control([87], (0.2, 0.0), 0, seq=1)
    live.play()
    got.wait(4)
    live.pause()
    time.sleep(0.05)
    live_nodes.close_live(binding, live)
    played = got.frames[:len(live.track())]

    track = node.bind_world(world, 9, "auto", unique_id="n7")["result"][0]
    assert len(track) == len(played) >= 4 and track.seed == 9
    latents = WaypointStepWorld().step(world, track, 0, -1)[1].latents
    assert all(torch.equal(a, f.latent) for a, f in zip(latents, played))
    assert live_nodes.unbind("n7") and live_nodes.get_binding("n7") is None


def test_node_rejects_a_non_world():
    from nodes.live import WaypointLivePlay
    with pytest.raises(WaypointError, match="world"):
        WaypointLivePlay().bind_world("not a world", 0, "auto", unique_id="x")


def test_recent_frames_are_bounded_and_clip_at_the_shown_rate():
    from worldengine.live.frames import RecentFrames, decode_images
    image = encode_image(torch.rand(3, 18, 32), "jpeg")
    recent = RecentFrames(seconds=2.0)
    small = RecentFrames(seconds=2.0, max_bytes=5 * len(image))
    for index in range(100):                      # 100 frames over 4.95 s at 20 fps
        recent.add([image], now=index * 0.05)
        small.add([image], now=index * 0.05)
    images, fps = recent.clip(1.0)
    assert len(images) == 21 and fps == pytest.approx(20.0)
    assert len(recent.clip(10.0)[0]) == 41        # only the last 2 s are kept
    assert len(small.clip(10.0)[0]) == 5          # and no more than max_bytes
    assert decode_images(images[:3]).shape == (3, 18, 32, 3)
    assert RecentFrames().clip(5.0) == ([], 0.0)


def test_export_clip_writes_what_was_shown(engine, base, tmp_path):
    from PIL import Image
    live, got = start_live(engine, base)
    with pytest.raises(WaypointError, match="nothing was shown"):
        live.export_clip(tmp_path / "empty.webp", 5.0)
    live.play()
    got.wait(4)
    live.close()
    path = live.export_clip(tmp_path / "clip.webp", 30.0)
    clip = Image.open(path)
    assert clip.n_frames == len(got.frames) and clip.size == Image.open(io.BytesIO(got.frames[0].images[0])).size


def test_old_bindings_are_forgotten(model_dir):
    from nodes.live import WaypointLivePlay
    from nodes.live import bindings as live_nodes
    world = seeded_world(model_dir)
    node = WaypointLivePlay()
    for index in range(live_nodes.MAX_BINDINGS + 3):
        node.bind_world(world, 0, "latent", unique_id=f"b{index}")
    node.bind_world(world, 0, "latent", unique_id="b0")   # bound again: b0 is the newest, b3 goes
    kept = [f"b{i}" for i in range(live_nodes.MAX_BINDINGS + 3) if live_nodes.get_binding(f"b{i}")]
    assert len(kept) == live_nodes.MAX_BINDINGS and "b0" in kept and "b1" not in kept
    for key in kept:
        live_nodes.unbind(key)
