"""`dtype=auto` on CPU: bfloat16 only where it measured clearly faster than float32 at the model's shapes."""
import json

import pytest
import torch

from worldengine.compile import BackgroundForward
from worldengine.engine import load_engine
from worldengine.hub import TOY_MODEL_DIR
from worldengine.quant import dtype as auto_dtype
from worldengine.quant import select
from worldengine.synthetic.presets import preset_config


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh verdict store; `seed(config, fp32_ms, bf16_ms)` records a measurement as if timed here."""
    path = tmp_path / "verdicts.json"
    monkeypatch.setenv(select.STORE_ENV, str(path))
    select.forget()

    def seed(config, fp32_ms, bf16_ms):
        key = auto_dtype.probe_key(config)
        times = {"float32": fp32_ms, "bfloat16": bf16_ms}
        path.write_text(json.dumps({" x ".join(map(str, key)): {"choice": min(times, key=times.get), "times_ms": times}}))
        select.forget()
        select._stored = None   # read the seeded file on the next lookup

    yield seed
    select.forget()


def toy_config():
    from worldengine.config import load_config
    return load_config(TOY_MODEL_DIR)


def test_bfloat16_only_when_clearly_faster(store):
    config = toy_config()
    store(config, fp32_ms=3.0, bf16_ms=1.1)          # an AMX machine: bf16 2.7x faster
    assert auto_dtype.cpu_auto_dtype(config) is torch.bfloat16
    store(config, fp32_ms=1.0, bf16_ms=0.9)          # 10 % faster: inside the margin, keep float32
    assert auto_dtype.cpu_auto_dtype(config) is torch.float32
    store(config, fp32_ms=1.0, bf16_ms=1.4)          # no bf16 hardware: float32
    assert auto_dtype.cpu_auto_dtype(config) is torch.float32


def test_explicit_and_accelerator_choices_are_not_measured(store, monkeypatch):
    monkeypatch.setattr(auto_dtype, "cpu_auto_dtype", lambda config: pytest.fail("measured"))
    config = toy_config()
    assert auto_dtype.resolve_dtype("float32", "cpu", config) is torch.float32
    assert auto_dtype.resolve_dtype("bfloat16", "cpu", config) is torch.bfloat16
    assert auto_dtype.resolve_dtype(torch.float16, "cpu", config) is torch.float16
    assert auto_dtype.resolve_dtype("auto", "cuda", config) is torch.bfloat16


def test_the_measurement_times_both_dtypes_and_is_kept_per_machine(store):
    config = preset_config("tiny")
    chosen = auto_dtype.cpu_auto_dtype(config)
    verdict = next(v for k, v in select.verdicts().items() if k.startswith("auto-dtype"))
    assert set(verdict["times_ms"]) == {"float32", "bfloat16"} and min(verdict["times_ms"].values()) > 0
    assert chosen is (torch.bfloat16 if verdict["times_ms"]["bfloat16"] <= auto_dtype.MARGIN * verdict["times_ms"]["float32"]
                      else torch.float32)
    stored = json.loads(select.store_path().read_text())
    assert any(k.startswith("auto-dtype") for k in stored)


def test_load_engine_auto_follows_the_measurement_and_compiles_bfloat16(store):
    store(toy_config(), fp32_ms=3.0, bf16_ms=1.0)
    engine = load_engine(TOY_MODEL_DIR, dtype="auto", quant="none")
    assert engine.dtype is torch.bfloat16
    # bf16 on CPU: compile=auto prepares a compiled step, used only once it measures faster than eager.
    assert engine.options["compile"] is True
    assert isinstance(engine.forward, BackgroundForward) and engine.forward.require_faster
    store(toy_config(), fp32_ms=1.0, bf16_ms=1.0)
    engine = load_engine(TOY_MODEL_DIR, dtype="auto", quant="none")
    assert engine.dtype is torch.float32 and engine.options["compile"] is False
    assert engine.forward == engine.model.forward
