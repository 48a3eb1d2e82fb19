"""The compiled step as an AOTInductor package (worldengine.compile_aot): built once, loaded over the
engine's own weights, checked against eager, reused by a restart without compiling again."""
import copy

import pytest
import torch

from worldengine import compile_aot, compile_child
from worldengine.cli.bench import build_engine, control_cycle, random_state
from worldengine.config import config_from_dict
from worldengine.synthetic.presets import preset_dict

# Two tiny layers: layer 0 local + controller fusion, layer 1 global with value residual (a 0-d
# parameter, which inductor inlines as a literal).
CONFIG = config_from_dict({**preset_dict("tiny"), "n_layers": 2})


def _first_inputs(engine):
    """The inputs of the engine's first forward (a seed pass), as BackgroundForward sees them."""
    captured, eager = [], engine.forward
    engine.forward = lambda *args: captured.append(args) or eager(*args)
    session = engine.new_session()
    session.append_latent(torch.randn(CONFIG.latent_shape, generator=torch.Generator().manual_seed(1)))
    engine.forward = eager
    return captured[0]


def _placeholder_copy(model, keep_inlined: bool):
    """What the compile child builds from: zero weights, the inlined small tensors real (or zeroed too)."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in compile_aot.named_tensors(twin).values():
            if not (keep_inlined and tensor.numel() <= compile_aot.INLINED_NUMEL):
                tensor.zero_()
    return twin


@pytest.fixture(scope="module")
def int8_engine_and_package(tmp_path_factory):
    engine = build_engine(CONFIG, random_state(CONFIG, seed=11), "cpu", "float32", "int8", compile=False)
    inputs = _first_inputs(engine)
    path = tmp_path_factory.mktemp("aot") / "tiny.pt2"
    compile_aot.build(_placeholder_copy(engine.model, keep_inlined=True), inputs, path)
    return engine, inputs, path


def test_package_built_on_placeholder_weights_runs_the_real_model(int8_engine_and_package):
    engine, inputs, path = int8_engine_and_package
    forward = compile_aot.load(engine.model, path)
    compile_aot.check(forward, engine.model.forward, inputs)   # velocity and KV buffers
    # A whole rollout through the package follows the eager one (int8 tolerance as for torch.compile).
    controls = control_cycle(CONFIG.n_buttons)

    def rollout(step_forward):
        engine.forward = step_forward
        session = engine.new_session()
        generator = torch.Generator().manual_seed(7)
        session.append_latent(torch.randn(CONFIG.latent_shape, generator=generator))
        return torch.stack([session.step(controls[i % len(controls)], generator=generator) for i in range(4)])
    expected = rollout(engine.model.forward)
    got = rollout(forward)
    engine.forward = engine.model.forward
    diff = (got - expected).abs()
    assert diff.mean() < 2e-3 and diff.max() < 5e-2, (diff.mean(), diff.max())
    assert not torch.equal(got[0], got[1])   # frames move: the KV writes of the package land in the ring


def test_a_package_built_with_the_wrong_inlined_values_is_refused(int8_engine_and_package, tmp_path):
    # The value-residual mix is baked into the code: built from zeros it computes another model, which
    # the check against eager catches (and BackgroundForward then compiles in-process instead).
    engine, inputs, _ = int8_engine_and_package
    path = compile_aot.build(_placeholder_copy(engine.model, keep_inlined=False), inputs, tmp_path / "bad.pt2")
    with pytest.raises(ValueError, match="disagrees with eager") as refused:
        compile_aot.check(compile_aot.load(engine.model, path), engine.model.forward, inputs)
    assert float(str(refused.value).split("error ")[1].split(" ")[0]) > 5 * compile_aot.TOLERANCE   # no near miss


def test_a_weight_held_as_a_strided_view_still_matches(int8_engine_and_package):
    # The package is built on the child's row-major weights; the playing engine's copy of a weight may be
    # a permuted view (the published 4-D unpatchify is remapped by a permute): it must still compute the
    # same model (before the fix: relative error ~1.5, and the package was refused for every such model).
    engine, inputs, path = int8_engine_and_package
    strided = copy.deepcopy(engine.model)
    weight = strided.unpatchify.weight
    strided.unpatchify.weight = torch.nn.Parameter(weight.detach().t().contiguous().t(), requires_grad=False)
    assert not strided.unpatchify.weight.is_contiguous()
    compile_aot.check(compile_aot.load(strided, path), strided.forward, inputs)


def test_build_model_places_remapped_views_row_major():
    from worldengine.engine import build_model
    state = dict(random_state(CONFIG, seed=3))
    state["unpatchify.weight"] = state["unpatchify.weight"].t().contiguous().t()   # as a permute leaves it
    model = build_model(CONFIG, state, torch.device("cpu"), torch.float32)
    assert all(t.is_contiguous() for t in compile_aot.named_tensors(model).values())


def test_a_foreign_package_is_refused_by_name(int8_engine_and_package):
    _, _, path = int8_engine_and_package
    other = build_engine(CONFIG, random_state(CONFIG, seed=11), "cpu", "float32", None, compile=False)
    with pytest.raises(ValueError, match="needs weights this model lacks"):
        compile_aot.load(other.model, path)   # float layers: no int8 weight_q / weight_scale


def test_the_key_follows_inlined_values_and_threads(int8_engine_and_package):
    engine, inputs, _ = int8_engine_and_package
    base = compile_child.cache_key(engine, inputs, False)
    key = compile_aot.package_key(base, engine.model)
    assert compile_aot.package_key(base, engine.model) == key
    changed = copy.deepcopy(engine.model)
    with torch.no_grad():
        changed.blocks[1].attn.v_lamb.add_(0.25)
    assert compile_aot.package_key(base, changed) != key
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert compile_aot.package_key(base, engine.model) != key
    finally:
        torch.set_num_threads(threads)


def test_a_restart_loads_the_package_without_compiling(int8_engine_and_package, tmp_path, monkeypatch):
    # BackgroundForward on a CPU engine: the package on disk under its key is loaded and checked, no
    # child runs and torch.compile is never called; the switch comes at the next frame edge.
    import worldengine.compile as compile_mod
    from worldengine.engine import WorldEngine, apply_speed_options, build_model
    engine, _, built = int8_engine_and_package
    restarted = WorldEngine(CONFIG, build_model(CONFIG, dict(random_state(CONFIG, seed=11)), torch.device("cpu"),
                                                torch.float32), tmp_path / "model")
    apply_speed_options(restarted, quant="int8", compile="on", background=True)
    key = compile_aot.package_key(compile_child.cache_key(restarted, _first_inputs(engine), False), restarted.model)
    path = compile_aot.package_path(restarted, key)
    path.parent.mkdir(parents=True)
    path.write_bytes(built.read_bytes())
    monkeypatch.setattr(compile_child, "run_child", lambda *a, **k: pytest.fail("a child was started"))
    monkeypatch.setattr(compile_mod, "compile_forward", lambda *a, **k: pytest.fail("torch.compile was called"))
    session = restarted.new_session()
    generator = torch.Generator().manual_seed(7)
    session.append_latent(torch.randn(CONFIG.latent_shape, generator=generator))
    assert restarted.forward.wait(timeout=120) and restarted.compile_status == "compiled"
    assert restarted.forward.compiled.package == path
    passes = len(restarted.sigma_conditioning)
    # The switch comes at a frame edge: after the seed pass if the package was ready before it ended
    # (a race with the loader thread), else after the first frame; never inside a frame.
    session.step(generator=generator)
    first = restarted.forward.compiled_calls
    session.step(generator=generator)
    assert first in (0, passes) and restarted.forward.compiled_calls - first == passes
