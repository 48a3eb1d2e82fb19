"""Live play with the safety redirect (issue 19): a flagged live frame sends the world back to
the last clean snapshot, the flagged frames are shown black, and play keeps going."""

import threading

import pytest
import torch

from worldengine import load_engine
from worldengine.live.frames import LatentPreview, decode_images
from worldengine.live.session import LiveSession, LiveSettings
from worldengine.quant.select import one_thread
from worldengine.sanitize.guard import LiveGuard
from worldengine.sanitize.images import SafetyCheck


class FlagNthCheck:
    """Stand-in classifier: flags the frames of its n-th call (1-based), nothing else."""

    name = "stand-in"

    def __init__(self, n):
        self.n, self.calls = n, 0

    def scores(self, frames):
        self.calls += 1
        return [1.0 if self.calls == self.n else 0.0] * len(frames)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from worldengine.synthetic import write_tiny_checkpoint
    folder = tmp_path_factory.mktemp("safety-live") / "wp15"
    return load_engine(write_tiny_checkpoint(folder, model_type="waypoint-1.5", height=2,
                                             width=4, tokens_per_frame=8))


def test_flagged_live_frame_redirects_and_play_continues(engine):
    base_session = engine.new_session()
    base_session.append_latent(torch.randn(engine.config.latent_shape,
                                           generator=torch.Generator().manual_seed(3)))
    base = base_session.snapshot()
    got, done = [], threading.Event()
    guard = LiveGuard(SafetyCheck(FlagNthCheck(3), "redirect"), stride=2)  # flags step 6

    def sink(frame):
        got.append((frame, live.session.frame_index, len(live.track_frames), live.recording))
        live.ack(frame.ordinal)
        if len(got) >= 10:
            live.pause()
            done.set()

    with one_thread():
        live = LiveSession(engine, base, 5, lambda name: LatentPreview(engine.config.latent_shape[0]),
                           sink, settings=LiveSettings(max_in_flight=1), guard=guard)
        live.play()
        assert done.wait(60), f"only {len(got)} frames arrived"
        live.close()
    index = {k + 1: world for k, (_, world, _, _) in enumerate(got)}  # world frame after step k
    assert guard.redirects == 1
    assert index[6] == index[4]                 # step 6 was flagged: back at step 4's world
    assert index[7] == index[4] + 1 and index[10] == index[4] + 4  # and it kept playing
    shown = decode_images(got[5][0].images)
    assert float(shown.max()) < 0.05            # the flagged step was shown black
    assert float(decode_images(got[6][0].images).max()) > 0.2
    assert got[4][2] == 5 and got[5][2] == 4 and not got[5][3]  # track cut to step 4, stopped
    assert got[9][2] == 4                       # and frozen afterwards


def test_reset_makes_the_base_world_the_restore_point(engine):
    base = engine.new_session().snapshot()
    guard = LiveGuard(SafetyCheck(FlagNthCheck(99), "redirect"), stride=1)
    live = LiveSession(engine, base, 0, lambda name: LatentPreview(engine.config.latent_shape[0]),
                       lambda frame: None, guard=guard)
    try:
        assert guard.restore_point[0].frame_index == base.frame_index
        live.reset()
        assert guard.restore_point == (guard.restore_point[0], 0)
        assert guard.restore_point[0].frame_index == base.frame_index
    finally:
        live.close()


def test_on_live_step_is_the_same_redirect(engine):
    """guard.on_live_step(live, frames) does what LiveSession's hook does (one call to wire)."""
    base = engine.new_session().snapshot()
    guard = LiveGuard(SafetyCheck(FlagNthCheck(1), "redirect"), stride=1)
    live = LiveSession(engine, base, 0, lambda name: LatentPreview(engine.config.latent_shape[0]),
                       lambda frame: None, guard=guard)
    try:
        with live._lock:
            live.session.step(None, generator=live.generator)
            live.track_frames.append(None)
            live.steps_since_base += 1
            shown = guard.on_live_step(live, torch.rand(1, 3, 8, 8))
        assert torch.all(shown == 0) and live.track_frames == [] and not live.recording
        assert live.session.frame_index == base.frame_index
    finally:
        live.close()


# ---- through the Live Play node's binding (issue 19: the node's safety input) --------------------

class FlagCalls:
    """Stand-in classifier registered as "nudenet": flags every frame of its calls numbered in
    ``FLAGGED`` (1-based, counted per instance: one instance per live session)."""

    name = "stand-in"
    FLAGGED = frozenset({2})

    def __init__(self):
        self.calls, self.readied = 0, False

    def ready(self):
        self.readied = True

    def scores(self, frames):
        self.calls += 1
        return [1.0 if self.calls in self.FLAGGED else 0.0] * len(frames)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from live_helpers import small_live_world
    return small_live_world(tmp_path_factory)


@pytest.fixture
def stand_in(monkeypatch):
    from worldengine.sanitize import classifier
    monkeypatch.setitem(classifier.CLASSIFIERS, "nudenet", FlagCalls)


def test_live_play_node_redirect_restores_and_keeps_playing(world, stand_in):
    from nodes.live import WaypointLivePlay, bindings
    from worldengine.sanitize.guard import LIVE_STRIDE
    spec = WaypointLivePlay.INPUT_TYPES()["optional"]["safety"]
    assert spec[0] == ["off", "redirect"] and spec[1]["default"] == "off"
    out = WaypointLivePlay().bind_world(world, 3, "auto", "redirect", unique_id="safety-1")
    assert out["ui"]["waypoint_live"][0]["safety"] == "redirect"
    binding, events, holder = bindings.get_binding("safety-1"), [], {}
    got, done = [], threading.Event()

    def frames_in(frame):
        live = holder["live"]
        got.append((frame, live.session.frame_index, len(live.track_frames)))
        live.ack(frame.ordinal)
        if len(got) >= 3 * LIVE_STRIDE:
            live.pause()
            done.set()

    try:
        with one_thread():
            live = holder["live"] = bindings.open_live(binding, frames_in, events.append)
            assert live.settings.preview == "decoded"   # auto on CPU would be latent: the check needs pictures
            assert isinstance(live.guard, LiveGuard) and live.guard.stride == LIVE_STRIDE
            assert live.guard.check.classifier.readied
            live.update_settings(max_in_flight=1)
            live.play()
            assert done.wait(120), f"only {len(got)} frames arrived"
    finally:
        bindings.unbind("safety-1")
    world_after = {k + 1: index for k, (_, index, _) in enumerate(got)}
    flagged, clean = 2 * LIVE_STRIDE, LIVE_STRIDE      # the second check flags, the first was clean
    assert live.guard.redirects == 1
    assert world_after[flagged] == world_after[clean]
    assert world_after[3 * LIVE_STRIDE] == world_after[clean] + LIVE_STRIDE  # play went on
    assert float(decode_images(got[flagged - 1][0].images).max()) < 0.05     # shown black
    assert float(decode_images(got[flagged][0].images).max()) > 0.05         # then pictures again
    assert got[flagged - 1][2] == clean and got[-1][2] == clean              # track cut, frozen
    notes = [e for e in events if e.get("type") == "safety"]
    assert len(notes) == 1 and notes[0]["restored_step"] == clean and "went back" in notes[0]["message"]


def test_live_play_safety_off_has_no_guard(world):
    from nodes.live import WaypointLivePlay, bindings
    WaypointLivePlay().bind_world(world, 0, "latent", unique_id="safety-2")   # safety defaults to off
    try:
        live = bindings.open_live(bindings.get_binding("safety-2"), lambda f: None, None)
        assert live.guard is None and live.settings.preview == "latent"
    finally:
        bindings.unbind("safety-2")


def test_redirect_without_the_extra_is_refused_at_queue_time(world, without_nudenet):
    from nodes.live import WaypointLivePlay, bindings
    from worldengine.errors import WaypointError
    with pytest.raises(WaypointError, match=r"not installed.*comfyui-waypoint\[safety\]"):
        WaypointLivePlay().bind_world(world, 0, "auto", "redirect", unique_id="safety-3")
    assert bindings.get_binding("safety-3") is None     # nothing bound: Play cannot start unguarded


@pytest.mark.parametrize("safety, preview, words", [
    ("redirect", "latent", "preview is 'latent'"), ("smudge", "auto", "unknown live safety")])
def test_bad_live_safety_settings_name_the_problem(world, stand_in, safety, preview, words):
    from nodes.live import WaypointLivePlay, bindings
    from worldengine.errors import WaypointError
    with pytest.raises(WaypointError, match=words):
        WaypointLivePlay().bind_world(world, 0, preview, safety, unique_id="safety-4")
    assert bindings.get_binding("safety-4") is None
