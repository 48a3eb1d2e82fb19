"""Image safety checks (issue 19): policies block / blur / redirect with a classifier stand-in
that flags chosen frames, the stride, seed images, live redirection on a real tiny world, and
the optional NudeNet classifier (skipped without the [safety] extra)."""

import json

import numpy as np
import pytest
import torch

from worldengine import Controls, load_engine
from worldengine.errors import WaypointError
from worldengine.quant.select import one_thread
from worldengine.sanitize.classifier import get_classifier, nudenet_available
from worldengine.sanitize.guard import LiveGuard
from worldengine.sanitize.images import SafetyCheck, blur, to_uint8


class MarkedFrames:
    """Stand-in classifier: a frame is unsafe when its top-left pixel is pure red (a marker the
    tests paint), so any chosen frame can be flagged. Records how many frames it saw."""

    name = "stand-in"

    def __init__(self):
        self.seen = 0

    def scores(self, frames):
        self.seen += len(frames)
        return [1.0 if tuple(f[0, 0]) == (255, 0, 0) else 0.0 for f in frames]


def frames(n, marked=(), h=24, w=32):
    images = torch.rand(n, h, w, 3, generator=torch.Generator().manual_seed(n)) * 0.5
    for i in marked:
        images[i, 0, 0] = torch.tensor([1.0, 0.0, 0.0])
    return images


def test_block_blacks_out_only_flagged_frames():
    images = frames(6, marked=[2, 5])
    result = SafetyCheck(MarkedFrames(), "block").apply(images)
    assert result.flagged == [2, 5] and result.report["checked"] == 6
    assert torch.all(result.images[[2, 5]] == 0)
    assert torch.equal(result.images[[0, 1, 3, 4]], images[[0, 1, 3, 4]])
    assert torch.equal(images, frames(6, marked=[2, 5]))  # the input is never changed


def test_blur_hides_detail_and_keeps_colour():
    images = frames(3, marked=[1], h=120, w=160)
    result = SafetyCheck(MarkedFrames(), "blur").apply(images)
    out = result.images[1]
    assert out.shape == images[1].shape and not torch.equal(out, images[1])
    assert abs(out.mean() - images[1].mean()) < 0.02  # same overall colour
    assert out.diff(dim=1).abs().mean() < 0.25 * images[1].diff(dim=1).abs().mean()  # no detail
    assert torch.equal(result.images[0], images[0])


def test_stride_checks_every_nth_frame_and_flags_its_window():
    classifier = MarkedFrames()
    images = frames(10, marked=[4])
    result = SafetyCheck(classifier, "block", stride=4).apply(images)
    assert classifier.seen == 3                 # frames 0, 4, 8
    assert result.flagged == [4, 5, 6, 7]       # frame 4's window
    missed = SafetyCheck(MarkedFrames(), "block", stride=4).apply(frames(10, marked=[5]))
    assert missed.flagged == []                 # the documented cost of a stride


def test_seed_image_refused_or_blurred():
    bad = frames(1, marked=[0])
    with pytest.raises(WaypointError, match="seed image refused"):
        SafetyCheck(MarkedFrames(), "block").check_seed(bad)
    assert SafetyCheck(MarkedFrames(), "blur").check_seed(bad).flagged == [0]
    assert SafetyCheck(MarkedFrames(), "block").check_seed(frames(1)).flagged == []


@pytest.mark.parametrize("kwargs, words", [
    ({"policy": "smudge"}, "unknown safety policy"), ({"threshold": 0}, "threshold"),
    ({"stride": 0}, "stride")])
def test_bad_options_name_the_problem(kwargs, words):
    with pytest.raises(WaypointError, match=words):
        SafetyCheck(MarkedFrames(), **kwargs)


def test_bad_images_and_classifier_names():
    with pytest.raises(WaypointError, match=r"\[N, H, W, 3\]"):
        to_uint8(torch.zeros(3, 8, 8))
    with pytest.raises(WaypointError, match="unknown image classifier"):
        get_classifier("eyeball")


def test_blur_keeps_shape_and_dtype():
    x = torch.rand(2, 37, 53, 3)
    y = blur(x)
    assert y.shape == x.shape and y.dtype == x.dtype


# ---- live redirection on a real tiny world ------------------------------------------------------

@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from worldengine.synthetic import write_tiny_checkpoint
    folder = tmp_path_factory.mktemp("safety") / "wp15"
    return load_engine(write_tiny_checkpoint(folder, model_type="waypoint-1.5", height=2,
                                             width=4, tokens_per_frame=8))


@pytest.fixture
def single_thread():
    with one_thread():  # tiny steps on a shared 2-core box: a second thread only waits
        yield


def test_redirect_restores_last_clean_snapshot_and_play_continues(engine, single_thread):
    session = engine.new_session()
    generator = torch.Generator().manual_seed(0)
    guard = LiveGuard(SafetyCheck(MarkedFrames(), "redirect"), stride=2)
    guard.reset(session.snapshot(), step=0)
    actions, unsafe_steps, frame_index_at = [], {6}, {}
    for step in range(1, 11):
        session.step(Controls(frozenset({87})), generator=generator)
        shown = frames(4, marked=range(4) if step in unsafe_steps else ()).permute(0, 3, 1, 2)
        verdict = guard.after_step(session, shown, step)
        actions.append(verdict.action)
        frame_index_at[step] = session.frame_index
        if verdict.action == "redirected":
            assert verdict.restored_step == 4 and torch.all(verdict.frames == 0)
            assert session.frame_index == frame_index_at[4]  # back at the last clean check
    assert actions == ["unchecked", "clean", "unchecked", "clean", "unchecked", "redirected",
                       "unchecked", "clean", "unchecked", "clean"]
    assert guard.redirects == 1
    assert session.frame_index == frame_index_at[4] + 4  # four more steps after the restore


def test_redirect_state_equals_the_clean_world(engine, single_thread):
    session = engine.new_session()
    generator = torch.Generator().manual_seed(1)
    guard = LiveGuard(SafetyCheck(MarkedFrames(), "redirect"), stride=1)
    guard.reset(session.snapshot())
    session.step(Controls(), generator=generator)
    guard.after_step(session, frames(1).permute(0, 3, 1, 2), 1)  # clean: the restore point
    clean = session.snapshot()
    session.step(Controls(), generator=generator)
    assert guard.after_step(session, frames(1, marked=[0]).permute(0, 3, 1, 2), 2).action \
        == "redirected"
    now = session.snapshot()
    assert now.frame_index == clean.frame_index
    assert all(torch.equal(now.tensors[k], clean.tensors[k]) for k in clean.tensors)


def test_guard_needs_a_clean_world_first():
    guard = LiveGuard(SafetyCheck(MarkedFrames(), "redirect"))
    with pytest.raises(WaypointError, match="reset"):
        guard.after_step(object(), torch.zeros(1, 3, 4, 4), 4)


# ---- the real classifier (optional extra) --------------------------------------------------------

@pytest.mark.skipif(not nudenet_available(), reason="nudenet not installed (the [safety] extra)")
def test_nudenet_passes_benign_pictures():
    check = SafetyCheck(get_classifier("nudenet"), "block")
    images = torch.stack([torch.full((256, 256, 3), 0.5), torch.linspace(0, 1, 256)
                          .view(1, 256, 1).expand(256, 256, 3).contiguous()])
    assert check.apply(images).flagged == []


def test_missing_nudenet_names_the_extra(without_nudenet):
    with pytest.raises(WaypointError, match=r"comfyui-waypoint\[safety\]"):
        get_classifier("nudenet").scores(np.zeros((1, 8, 8, 3), np.uint8))


# ---- the node --------------------------------------------------------------------------------------

def test_safety_node_blocks_with_a_stand_in(monkeypatch):
    import json

    from nodes import safety
    from worldengine.sanitize import classifier
    monkeypatch.setitem(classifier.CLASSIFIERS, "stand-in", MarkedFrames)
    spec = safety.WaypointSafetyCheck.INPUT_TYPES()["required"]
    assert spec["policy"][0] == ["block", "blur"] and "nudenet" in spec["classifier"][0]
    out, report = safety.WaypointSafetyCheck().check(frames(3, marked=[1]), "block", "stand-in")
    assert torch.all(out[1] == 0) and json.loads(report)["flagged"] == [1]


# ---- the node in a workflow: before Seed Frame and after Decode Latent -----------------------------

class FlagPositions:
    """Stand-in classifier: flags the frames at ``POSITIONS`` of each batch it is given."""

    name = "stand-in"
    POSITIONS = frozenset({2, 5})

    def scores(self, frames):
        return [1.0 if i in self.POSITIONS else 0.0 for i in range(len(frames))]


@pytest.fixture
def node_world(tmp_path_factory):
    from nodes.core import WaypointLoad
    from worldengine.synthetic import write_tiny_checkpoint
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("safety-nodes") / "m", model_type="waypoint-1.5",
                                   height=2, width=4, tokens_per_frame=8)
    return WaypointLoad().load(str(folder), "cpu", "float32", "none", False)[0]


def test_seed_image_and_decoded_frames_through_the_nodes(node_world, monkeypatch, single_thread):
    from nodes import safety
    from nodes.core import WaypointDecodeLatent, WaypointSeedFrame, WaypointStepWorld
    from worldengine.controls import ControlTrack
    from worldengine.sanitize import classifier
    monkeypatch.setitem(classifier.CLASSIFIERS, "seed-marker", MarkedFrames)
    monkeypatch.setitem(classifier.CLASSIFIERS, "positions", FlagPositions)
    node = safety.WaypointSafetyCheck()
    seed = torch.rand(1, 72, 128, 3, generator=torch.Generator().manual_seed(4))
    seed[0, 0, 0] = torch.tensor([1.0, 0.0, 0.0])        # the stand-in's "unsafe" marker
    blurred, _ = node.check(seed, "blur", "seed-marker")
    blocked, report = node.check(seed, "block", "seed-marker")
    assert torch.all(blocked == 0) and json.loads(report)["flagged"] == [0]
    assert blurred.diff(dim=2).abs().mean() < 0.25 * seed.diff(dim=2).abs().mean()
    world, _ = WaypointSeedFrame().seed(node_world, blurred, "crop")    # the blurred seed seeds a world
    _, latents = WaypointStepWorld().step(world, ControlTrack((Controls(),), seed=0), frames=2, seed=0)
    decoded = WaypointDecodeLatent().decode(latents)[0]
    assert decoded.shape[0] >= 6
    out, report = node.check(decoded, "block", "positions")
    rest = [i for i in range(decoded.shape[0]) if i not in FlagPositions.POSITIONS]
    assert json.loads(report)["flagged"] == [2, 5] and torch.all(out[[2, 5]] == 0)
    assert torch.equal(out[rest], decoded[rest]) and float(decoded[[2, 5]].max()) > 0.05
    smudged, _ = node.check(decoded, "blur", "positions")
    assert not torch.equal(smudged[[2, 5]], decoded[[2, 5]]) and torch.equal(smudged[rest], decoded[rest])
