"""`quant=auto` / `compile=auto`: the defaults pick the fastest path measured on this machine."""
import pytest
import torch

from worldengine.compile import BackgroundForward
from worldengine.engine import load_engine
from worldengine.errors import WaypointError
from worldengine.hub import TOY_MODEL_DIR
from worldengine.options import Compile, Quant, parse_compile
from worldengine.quant import int8
from worldengine.quant.int8 import Int8Linear


def _int8_layers(engine):
    return [m for m in engine.model.modules() if isinstance(m, Int8Linear)]


def test_auto_keeps_the_toy_world_eager_and_float_on_cpu():
    # d_model 64, 32 tokens per frame: every int8 layer measured slower than float (quantizing the
    # activations costs more than the tiny GEMM saves), so auto gives the plain eager float engine.
    engine = load_engine(TOY_MODEL_DIR)
    assert engine.options["quant"] == "none (auto: int8 slower here)"
    assert engine.options["compile"] is False and engine.options["int8_layers"] == 0
    assert engine.forward == engine.model.forward and engine.compile_status == "eager"
    assert _int8_layers(engine) == []


def test_explicit_choices_win_over_the_measurement():
    # An explicit quant on CPU leaves compile=auto off: the auto compile follows the auto measurement.
    engine = load_engine(TOY_MODEL_DIR, quant="int8")
    assert engine.options["quant"] == "int8" and len(_int8_layers(engine)) == engine.options["int8_layers"] > 0
    assert engine.compile_status == "eager" and engine.options["compile"] is False
    engine = load_engine(TOY_MODEL_DIR, quant="none", compile=True)
    assert isinstance(engine.forward, BackgroundForward) and not engine.forward.require_faster
    assert engine.compile_status == "eager, compiling…"   # nothing stepped yet: no compile has started


def test_auto_uses_int8_and_a_checked_compile_where_int8_measured_faster(monkeypatch):
    # A machine where int8 wins (stand-in: the measurement says so): auto quantizes and compiles in
    # the background, and switches only to a compiled step that measures faster than eager.
    monkeypatch.setattr(int8, "measured_kernel", lambda *args, **kwargs: "int_mm")
    engine = load_engine(TOY_MODEL_DIR)
    assert engine.options["quant"] == "int8" and engine.options["int8_layers"] == len(_int8_layers(engine)) > 0
    assert engine.options["compile"] is True
    assert isinstance(engine.forward, BackgroundForward) and engine.forward.require_faster


def test_parse_compile_accepts_old_booleans_and_names_the_choices():
    assert [parse_compile(v) for v in (None, True, False, "true", "OFF", "auto")] == [
        Compile.AUTO, Compile.ON, Compile.OFF, Compile.ON, Compile.OFF, Compile.AUTO]
    with pytest.raises(WaypointError, match="auto, on, off"):
        parse_compile("fast")
    assert Quant.values()[0] == "auto"


def test_live_status_names_the_running_path():
    from worldengine.live.frames import LatentPreview
    from worldengine.live.session import LiveSession
    engine = load_engine(TOY_MODEL_DIR)
    seed = engine.new_session()
    seed.append_latent(torch.zeros(engine.config.latent_shape))
    live = LiveSession(engine, seed.snapshot(), 0, lambda name: LatentPreview(engine.config.latent_shape[0]),
                       lambda frame: None)
    assert live.status()["compile"] == "eager"
    live.close()


def test_f32_kernel_gives_the_int_mm_result():
    # The "f32" int8 kernel (CPUs without a fast int8 GEMM) widens the same int8 operands to an fp32
    # GEMM: exact integer products, fp32 sums; it must give what int32 accumulation gives.
    generator = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(2048, 512)
    x = torch.randn(128, 2048, generator=generator) * 3
    widened = Int8Linear.from_linear(linear, 128, kernel="f32")
    exact = Int8Linear.from_linear(linear, 128, kernel="int_mm")
    assert widened.f32_gemm and not exact.f32_gemm
    with torch.inference_mode():
        got, want = widened(x), exact(x)
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
        assert torch.equal(widened(x.bfloat16()), exact(x.bfloat16()))


def test_kernel_verdicts_persist_on_disk_and_a_restart_reuses_them(tmp_path, monkeypatch):
    # A restart makes the same choice without timing (choices that flip between runs on a busy machine
    # would change the compiled package's key); a changed candidate list is measured again.
    from worldengine.quant import select
    monkeypatch.setenv(select.STORE_ENV, str(tmp_path / "verdicts.json"))
    select.forget()
    calls = []

    def candidates(names):
        return lambda: {name: (lambda name=name: calls.append(name)) for name in names}
    first = select.fastest(("probe", 1), candidates(["a", "b"]))
    assert calls and (tmp_path / "verdicts.json").is_file()
    select._stored, calls[:] = None, []                 # a new process: memory empty, store on disk
    select._verdicts.clear()
    assert select.fastest(("probe", 1), candidates(["a", "b"])) == first and calls == []
    assert select.fastest(("probe", 1, "x"), candidates(["a"])) == "a" and calls   # a new key is timed
    calls[:] = []
    select._verdicts.clear()
    select.fastest(("probe", 1), candidates(["a", "b", "c"]))      # another candidate: timed again
    assert sorted(set(calls)) == ["a", "b", "c"]
    select.forget()


def test_a_compiled_cpu_engine_chooses_int8_by_bare_gemm_and_keeps_int_mm(monkeypatch):
    # bf16 on CPU compiles (compile=auto): the quantize and epilogue fuse, so the bare GEMMs decide and
    # the int8 layers stay on _int_mm (the AOT package cannot take oneDNN's opaque packed weight).
    monkeypatch.setattr(int8, "measured_kernel", lambda *a, **k: pytest.fail("eager layer timing used"))
    monkeypatch.setattr(int8, "measured_gemm_kernel", lambda *a, **k: "int_mm")
    engine = load_engine(TOY_MODEL_DIR, dtype="bfloat16")
    layers = _int8_layers(engine)
    assert engine.options["compile"] is True and engine.options["int8_layers"] == len(layers) > 0
    assert all(layer.weight_packed is None and not layer.f32_gemm for layer in layers)
    monkeypatch.setattr(int8, "measured_gemm_kernel", lambda *a, **k: "float")
    engine = load_engine(TOY_MODEL_DIR, dtype="bfloat16")
    assert _int8_layers(engine) == [] and engine.options["quant"] == "none (auto: int8 slower here)"


def test_bare_gemm_measurement_names_a_kernel_and_is_cached():
    from worldengine.quant import select
    choice = int8.measured_gemm_kernel(64, 128, 32, torch.bfloat16)
    verdict = select.verdicts()["gemm x 32 x 64 x 128 x bfloat16"]
    assert choice in ("float", "int_mm") and set(verdict["times_ms"]) == {"float", "int_mm"}
    assert choice == min(verdict["times_ms"], key=verdict["times_ms"].get)
