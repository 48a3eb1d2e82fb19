"""Batched stepping (engine.step_many) against sessions stepped one by one, on the tiny preset and the
wp15_tiny oracle checkpoint: every session keeps its own frame counter, ring position, controls and noise."""
import pytest
import torch
from oracles import oracle_path

from worldengine import Controls, WaypointError, load_engine
from worldengine.batch import BUCKETS, bucket_for, stepper_for
from worldengine.cli.bench import build_engine, random_state
from worldengine.config import config_from_dict
from worldengine.quant.select import one_thread
from worldengine.synthetic import tiny_config_dict, write_checkpoint
from worldengine.synthetic.presets import preset_dict

FRAMES = 10          # with up to 3 seed frames: past the tiny windows (local 4, global 8 at dilation 2)
KEYS = [["W"], ["A", "Shift"], [], ["LMB"], ["D", "Space"]]


def controls_of(session_index: int, frame: int) -> Controls:
    return Controls.from_keys(KEYS[(frame + session_index) % len(KEYS)],
                              mouse=(0.1 * session_index - 0.2, 0.03 * (frame % 3)), scroll=frame % 3 - 1)


def seeded_sessions(engine, count: int, seeds: torch.Tensor):
    """`count` sessions, session i seeded with 1 + i % 3 of `seeds` [N, C, H, W]: different frame counters."""
    sessions = [engine.new_session() for _ in range(count)]
    for index, session in enumerate(sessions):
        session.append_latents(seeds[index % 2: index % 2 + 1 + index % 3])
    return sessions


def unbatched(engine, count: int, seeds, frames: int = FRAMES):
    """Latents [count, frames, C, H, W] and final sessions, each session stepped alone."""
    sessions = seeded_sessions(engine, count, seeds)
    generators = [torch.Generator().manual_seed(100 + i) for i in range(count)]
    latents = [[s.step(controls_of(i, f), generator=generators[i]) for f in range(frames)]
               for i, s in enumerate(sessions)]
    return torch.stack([torch.stack(row) for row in latents]), sessions


def batched(engine, count: int, seeds, frames: int = FRAMES):
    sessions = seeded_sessions(engine, count, seeds)
    generators = [torch.Generator().manual_seed(100 + i) for i in range(count)]
    latents = [engine.step_many([(s, controls_of(i, f), generators[i]) for i, s in enumerate(sessions)])
               for f in range(frames)]
    return torch.stack([torch.stack(row) for row in latents]).transpose(0, 1), sessions


def max_state_error(sessions_a, sessions_b) -> float:
    error = 0.0
    for a, b in zip(sessions_a, sessions_b):
        assert a.frame_index == b.frame_index and a.cache.written == b.cache.written
        error = max(error, max((x.float() - y.float()).abs().max().item()
                               for x, y in zip(a.cache.buffers, b.cache.buffers)))
    return error


def tiny_engine(dtype="float32", quant=None):
    config = config_from_dict(preset_dict("tiny"))
    return build_engine(config, random_state(config, seed=1), "cpu", dtype, quant, compile=False)


@pytest.fixture(scope="module")
def tiny():
    engine = tiny_engine()
    seeds = torch.randn(4, *engine.config.latent_shape, generator=torch.Generator().manual_seed(9))
    with one_thread():
        reference, sessions = unbatched(engine, BUCKETS[-1], seeds)
    return engine, seeds, reference, sessions


@pytest.fixture(scope="module")
def oracle():
    from worldengine.cli.replay import read_rollout_inputs

    engine = load_engine(oracle_path("wp15_tiny"), quant=None, compile=False)
    tensors, _ = read_rollout_inputs(oracle_path("wp15_fp32_30f.inputs.safetensors"))
    seeds = tensors["seed_latents"].float()
    assert seeds.shape[0] >= 2
    seeds = torch.cat([seeds, seeds.flip(0)])[:4]
    with one_thread():
        reference, sessions = unbatched(engine, BUCKETS[-1], seeds)
    return engine, seeds, reference, sessions


@pytest.mark.parametrize("count", BUCKETS)
@pytest.mark.parametrize("model", ["tiny", "oracle"])
def test_batched_frames_equal_unbatched(model, count, request):
    engine, seeds, reference, reference_sessions = request.getfixturevalue(model)
    with one_thread():
        got, sessions = batched(engine, count, seeds)
    assert len({s.frame_index for s in sessions}) == min(count, 3)   # sessions at different frame counters
    error = (got - reference[:count]).abs().max().item()
    assert error <= 1e-5, f"{model} B={count}: max abs latent error {error:.3g}"
    assert max_state_error(sessions, reference_sessions[:count]) <= 1e-5
    assert not torch.equal(got[0], got[-1]) or count == 1   # the sessions really differ


def test_padding_rows_and_reused_workspaces_leave_no_trace(tiny):
    """3 sessions run in the 4-row bucket right after 4 others filled it; then 9 split into 8 + 1."""
    engine, seeds, reference, _ = tiny
    with one_thread():
        batched(engine, 4, seeds.flip(0), frames=2)
        got, _ = batched(engine, 3, seeds, frames=3)
        assert (got - reference[:3, :3]).abs().max() <= 1e-5
        many = seeded_sessions(engine, 9, seeds)
        first = engine.step_many([(s, controls_of(i, 0), torch.Generator().manual_seed(100 + i))
                                  for i, s in enumerate(many)])
        alone = seeded_sessions(engine, 9, seeds)[8]
        alone = alone.step(controls_of(8, 0), generator=torch.Generator().manual_seed(108))
    assert len(first) == 9 and (torch.stack(first[:8]) - reference[:, 0]).abs().max() <= 1e-5
    assert (first[8] - alone).abs().max() <= 1e-5
    assert sorted(stepper_for(engine).workspaces) == [1, 2, 4, 8]
    assert [bucket_for(n) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]


def test_bad_requests_change_no_session(tiny):
    engine, seeds, _, _ = tiny
    a, b = seeded_sessions(engine, 2, seeds)
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    other = tiny_engine().new_session()
    for requests, needle in [([(a, None, generator), (a, None, None)], "repeats a session"),
                             ([(a, None, generator), (other, None, None)], "request 1's session does not belong"),
                             ([(a, None, generator), (b, {"keys": ["W"]}, None)], "request 1's controls must be"),
                             ([(a, None, "seed")], "generator must be a torch.Generator"),
                             ([a], "must be \\(session, controls, generator\\)")]:
        with pytest.raises(WaypointError, match=needle):
            engine.step_many(requests)
        assert (a.frame_index, b.frame_index) == (1, 2) and torch.equal(generator.get_state(), state)
    assert engine.step_many([]) == []
    with one_thread():
        latents = engine.step_many([(a, None, generator), (b, None)])
    assert (a.frame_index, b.frame_index) == (2, 3) and all(torch.isfinite(x).all() for x in latents)


def test_prompted_sessions_with_prompts_of_different_lengths(tmp_path):
    """Waypoint-1: each session's own prompt (lengths 6, 4, 6) goes through its own cross-attention."""
    engine = load_engine(write_checkpoint(tmp_path / "wp1", tiny_config_dict("waypoint-1"), seed=2), quant=None,
                         compile=False)
    prompts = [torch.randn(n, engine.config.prompt_embedding_dim, generator=torch.Generator().manual_seed(n + i))
               for i, n in enumerate((6, 4, 6))]
    runs = []
    for mode in ("alone", "batched"):
        sessions = [engine.new_session() for _ in prompts]
        generators = [torch.Generator().manual_seed(i) for i in range(3)]
        for session, prompt in zip(sessions, prompts):
            session.set_prompt(prompt)
        with one_thread():
            if mode == "alone":
                frames = [[s.step(controls_of(i, f), generator=generators[i]) for i, s in enumerate(sessions)]
                          for f in range(3)]
            else:
                frames = [engine.step_many([(s, controls_of(i, f), generators[i]) for i, s in enumerate(sessions)])
                          for f in range(3)]
        runs.append(torch.stack([torch.stack(row) for row in frames]))
    assert (runs[0] - runs[1]).abs().max() <= 1e-5
    with pytest.raises(WaypointError, match="prompt"):
        engine.step_many([(engine.new_session(), None, None)])


def test_compiled_batched_forward_never_recompiles_for_new_players():
    """One graph per bucket: new sessions, other frame counters and fewer players (padding) reuse it."""
    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2})   # one local and one global layer
    state = random_state(config, seed=3)
    eager = build_engine(config, state, "cpu", "float32", None, compile=False)
    torch._dynamo.reset()
    compiled = build_engine(config, state, "cpu", "float32", None, compile=True)
    seeds = torch.randn(4, *config.latent_shape, generator=torch.Generator().manual_seed(4))
    with one_thread():
        batched(compiled, 4, seeds.flip(0), frames=1)                      # warm-up: compiles bucket 4
        with torch._dynamo.config.patch(error_on_recompile=True):
            got, _ = batched(compiled, 3, seeds, frames=3)
        expected, _ = unbatched(eager, 3, seeds, frames=3)
    assert (got - expected).abs().max() <= 1e-5
    torch._dynamo.reset()


def test_memory_estimate_counts_and_a_move_carries_the_batch_workspaces():
    from worldengine.memory import move_engine
    engine = tiny_engine()
    seeds = torch.randn(2, *engine.config.latent_shape, generator=torch.Generator().manual_seed(5))
    assert engine.memory_estimate()["batch"] == 0
    with one_thread():
        expected, _ = unbatched(engine, 2, seeds, frames=2)
        batched(engine, 2, seeds, frames=1)
        workspace = stepper_for(engine).workspaces[2]
        assert engine.memory_estimate()["batch"] == workspace.nbytes() > 0
        before = [t.data_ptr() for t in workspace.tensors()]
        move_engine(engine, "cpu", copy=True)          # an offload and back, reallocating everything
        assert all(t.data_ptr() != p for t, p in zip(workspace.tensors(), before))
        got, _ = batched(engine, 2, seeds, frames=2)
    assert (got - expected).abs().max() <= 1e-5
