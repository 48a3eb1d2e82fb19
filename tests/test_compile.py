"""Compiled engine forward: same rollout as eager, one graph for every frame, control and session."""
import torch

from worldengine.cli.bench import build_engine, control_cycle, random_state
from worldengine.compile import compile_forward
from worldengine.config import config_from_dict
from worldengine.synthetic.presets import preset_dict


def _rollout(engine, frames: int, controls, session=None):
    session = session or engine.new_session()
    generator = torch.Generator().manual_seed(7)
    session.append_latent(torch.randn(engine.config.latent_shape, generator=generator))
    return torch.stack([session.step(controls[i % len(controls)], generator=generator) for i in range(frames)])


def test_compiled_rollout_matches_eager_without_recompiles():
    # Two tiny layers keep compile time low and still cover both kinds: layer 0 local + controller
    # fusion, layer 1 global (dilated ring) with value residual.
    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2})
    state = random_state(config, seed=3)
    controls = control_cycle(config.n_buttons)   # button count, mouse and scroll change every frame
    eager = build_engine(config, state, "cpu", "float32", "int8", compile=False)
    expected = _rollout(eager, 6, controls)

    torch._dynamo.reset()
    compiled = build_engine(config, state, "cpu", "float32", "int8", compile=True)
    warm = compiled.new_session()
    _rollout(compiled, 1, controls, warm)                  # warm-up: compiles the one graph
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = _rollout(compiled, 6, controls)              # a new session, new controls, 7 frame indices
        warm.reset()
        _rollout(compiled, 2, controls[3:], warm)          # a reset session
    # Inductor may round a few activation quantization steps differently from eager (x*(1/s) vs x/s),
    # so the int8 rollouts agree closely but not bit for bit.
    diff = (got - expected).abs()
    assert diff.mean() < 2e-3 and diff.max() < 5e-2, (diff.mean(), diff.max())
    torch._dynamo.reset()


def test_cuda_graph_wrapper_marks_session_buffers_static_and_never_recompiles():
    # On CPU inductor skips graph capture, but everything around it runs: reduce-overhead mode, the
    # output copy, and unguarded static marks on every session's KV and mask buffers (a guarded mark
    # would recompile for each new session and trip error_on_recompile below).
    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2})
    state = random_state(config, seed=4)
    controls = control_cycle(config.n_buttons)
    eager = build_engine(config, state, "cpu", "float32", None, compile=False)
    expected = _rollout(eager, 3, controls)

    torch._dynamo.reset()
    engine = build_engine(config, state, "cpu", "float32", None, compile=False)
    engine.forward = compile_forward(engine, cuda_graphs=True)
    first = engine.new_session()
    assert engine.forward.cuda_graphs
    assert all(getattr(t, "_dynamo_static_input_type", None) == "unguarded"
               for t in [*first.cache.buffers, *first.cache.mask_buffers.values()])
    assert not hasattr(eager.new_session().cache.buffers[0], "_dynamo_static_input_type")
    _rollout(engine, 1, controls, first)
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = _rollout(engine, 3, controls)
    assert (got - expected).abs().max() < 1e-4
    torch._dynamo.reset()
