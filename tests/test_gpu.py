"""The GPU suite (`-m gpu`, run by tools/gpu_check.sh): parity, quantization error, compile + CUDA graphs,
start-up and step latency on one CUDA device. Every test skips, with the reason, where CUDA is absent."""
import math

import pytest
import torch
from oracles import oracle_path
from test_engine_parity import CASES
from test_fp8 import LAYER_BOUND as FP8_LAYER_BOUND
from test_int8 import W8A8_REL_BOUND, rel_err
from torch import nn

from worldengine import load_engine
from worldengine.cli.bench import build_engine, control_cycle, random_state
from worldengine.config import config_from_dict
from worldengine.synthetic.presets import preset_dict

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="no CUDA device here: the GPU suite skips")]


def _fp8_capable() -> bool:
    return CUDA and torch.cuda.get_device_capability() >= (8, 9)


@pytest.mark.parametrize("name,checkpoint,dtype,bound", CASES)
def test_oracle_parity_on_cuda(name, checkpoint, dtype, bound):
    # The CPU tolerances (tests/test_engine_parity.py) hold on CUDA too.
    from safetensors.torch import load_file

    from worldengine.cli.replay import read_rollout_inputs, replay
    engine = load_engine(oracle_path(checkpoint), device="cuda", dtype=dtype, quant="none", compile="off")
    tensors, metadata = read_rollout_inputs(oracle_path(f"{name}.inputs.safetensors"))
    expected = load_file(oracle_path(f"{name}.expected.safetensors"))
    error = (replay(engine, tensors, metadata)["latents"] - expected["latents"]).abs()
    assert error.max() <= bound, (name, error.max())


@pytest.mark.parametrize("mode", ["int8", "fp8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantized_layer_error_bounds_on_cuda(mode, dtype):
    from worldengine.quant.fp8 import Fp8Linear
    from worldengine.quant.int8 import Int8Linear
    if mode == "fp8" and not _fp8_capable():
        pytest.skip("this GPU has no fp8 GEMM (compute capability below 8.9)")
    torch.manual_seed(0)
    linear = nn.Linear(2048, 512).cuda()
    x = torch.randn(4, 64, 2048, device="cuda")
    layer = (Int8Linear if mode == "int8" else Fp8Linear).from_linear(linear)
    error = rel_err(layer(x.to(dtype)), linear(x))
    assert error < (W8A8_REL_BOUND if mode == "int8" else FP8_LAYER_BOUND), error


def _rollout(engine, frames, controls, session=None):
    session = session or engine.new_session()
    generator = torch.Generator().manual_seed(7)
    session.append_latent(torch.randn(engine.config.latent_shape, generator=generator))
    return torch.stack([session.step(controls[i % len(controls)], generator=generator) for i in range(frames)])


@pytest.mark.parametrize("quant", [None, "int8"])
def test_compile_with_cuda_graphs_never_recompiles_on_cuda(quant):
    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2})
    state = random_state(config, seed=3)
    controls = control_cycle(config.n_buttons)
    expected = _rollout(build_engine(config, state, "cuda", "bfloat16", quant, compile=False), 6, controls)
    torch._dynamo.reset()
    engine = build_engine(config, state, "cuda", "bfloat16", quant, compile=True)
    assert engine.forward.cuda_graphs
    warm = engine.new_session()
    _rollout(engine, 1, controls, warm)
    with torch._dynamo.config.patch(error_on_recompile=True):
        got = _rollout(engine, 6, controls)          # new session, every control kind, 7 frame indices
        warm.reset()
        _rollout(engine, 2, controls[3:], warm)
    diff = (got - expected).abs()
    assert diff.mean() < 2e-2 and diff.max() < 0.25, (diff.mean(), diff.max())   # bf16 (+int8) rounding
    torch._dynamo.reset()


def test_startup_figures_on_cuda():
    # Background compile on the GPU: frames at once, then the compiled (CUDA graph) step.
    from worldengine.cli.startup import measure
    torch._dynamo.reset()
    figures = measure("tiny", "cuda", "bfloat16", "auto", "auto", frames=3, timeout_s=300)
    print("startup", figures)
    assert figures["options"]["quant"] == "int8" and figures["compile_status"] == "compiled", figures
    assert figures["first_frame_s"] is not None and figures["compiled_speed_s"] is not None
    assert math.isfinite(figures["p50_after_ms"])
    torch._dynamo.reset()


def test_live_step_latency_on_cuda():
    # Live play on a background-compiled engine: frames flow while it compiles, and the HUD status
    # names the path. The step time is printed for the report, not held against a number.
    from test_live import start_live

    from worldengine.engine import WorldEngine, apply_speed_options, build_model
    torch._dynamo.reset()
    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2})
    engine = WorldEngine(config, build_model(config, random_state(config), torch.device("cuda"), torch.bfloat16))
    apply_speed_options(engine, quant="int8", compile="on")
    seed = engine.new_session()
    seed.append_latent(torch.randn(config.latent_shape, generator=torch.Generator().manual_seed(3)))
    live, got = start_live(engine, seed.snapshot())
    live.play()
    got.wait(3, timeout=120)
    assert engine.forward.wait(timeout=300) and engine.compile_status == "compiled", engine.compile_status
    got.wait(len(got.frames) + 10, timeout=120)
    status = live.status()
    live.close()
    print("live step on cuda:", status["step_ms"], "ms;", status["latent_fps"], "latent FPS;", status["compile"])
    assert status["compile"] == "compiled" and status["step_ms"] > 0
    torch._dynamo.reset()
