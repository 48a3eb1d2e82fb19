"""FP8 (e4m3) W8A8 linears: per-layer error, padding, the engine's device gate, and a 100-frame rollout.

CPU torch runs `torch._scaled_mm` in software, so the math is checked here; the engine itself only
offers fp8 on CUDA GPUs of compute capability 8.9+ (the rollout test lifts that gate on purpose).
"""
import pytest
import torch
from torch import nn

import worldengine.quant.fp8 as fp8
from oracles import quantized_rollout_errors
from worldengine.cli.bench import parse_args
from worldengine.errors import WaypointError
from worldengine.quant.fp8 import FP8_DTYPE, Fp8Linear, pad_rows, quantize_fp8_rows
from worldengine.quant.int8 import quantize_linears

# Measured on Gaussian weights and inputs (K in 64..2048): 3.5-3.7 % relative error per layer, fp32
# and bf16 activations alike (int8 W8A8: 0.7-1.0 %); e4m3 keeps 3 mantissa bits.
LAYER_BOUND = 0.05
# Measured on the wp15_tiny rollout: fp8 vs float32 at most 1.90 % per frame (mean 1.50 %, first 10
# frames 1.56 %, last 10 1.53 %); bf16 + fp8 vs bf16 at most 2.05 %. Bound: 2x the worst frame.
ROLLOUT_FRAME_BOUND = 0.04


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("in_features", [64, 512])
def test_fp8_linear_tracks_float_linear(dtype, in_features):
    torch.manual_seed(in_features)
    linear = nn.Linear(in_features, 96, bias=True)
    x = torch.randn(3, 40, in_features)
    layer = Fp8Linear.from_linear(linear)
    assert layer.weight_q.dtype == FP8_DTYPE and layer.weight_q.element_size() == 1
    out = layer(x.to(dtype))
    assert out.dtype == dtype and out.shape == (3, 40, 96)
    expected = linear(x)
    error = (out.float() - expected).norm() / expected.norm()
    assert 0 < error < LAYER_BOUND, error
    weight_error = (layer.dequantized_weight() - linear.weight).norm() / linear.weight.norm()
    assert weight_error < LAYER_BOUND


def test_fp8_rows_scale_to_448_and_zero_rows_stay_finite():
    x = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 4.0]])
    q, scale = quantize_fp8_rows(x)
    assert q.dtype == FP8_DTYPE and scale.shape == (2, 1)
    assert q[1].float().abs().max() == 448 and torch.equal(q[0].float(), torch.zeros(4))
    assert torch.allclose(q[1].float() * scale[1], x[1], rtol=0.07)
    layer = Fp8Linear(16, 16, has_bias=False)
    assert torch.isfinite(layer(torch.zeros(2, 16))).all()


def test_pad_rows_adds_zero_rows_of_scale_one():
    q, scale = quantize_fp8_rows(torch.randn(5, 32))
    padded, padded_scale = pad_rows(q, scale, 16)
    assert padded.shape == (16, 32) and padded.dtype == FP8_DTYPE and padded_scale.shape == (16, 1)
    assert torch.equal(padded[:5].view(torch.uint8), q.view(torch.uint8))
    assert padded[5:].float().abs().sum() == 0 and torch.equal(padded_scale[5:], torch.ones(11, 1))
    same, same_scale = pad_rows(padded, padded_scale, 16)
    assert same is padded and same_scale is padded_scale


def test_fp8_refuses_feature_counts_cublas_cannot_run():
    with pytest.raises(WaypointError, match="divisible by 16.*in_features=24"):
        Fp8Linear(24, 32, has_bias=False)


def test_quantize_linears_fp8_replaces_the_large_linears_only():
    model = nn.Sequential()
    model.add_module("block", nn.Linear(64, 128))
    model.add_module("ctrl_emb", nn.Linear(64, 64))
    assert quantize_linears(model, mode="fp8") == ["block"]
    assert isinstance(model.block, Fp8Linear) and type(model.ctrl_emb) is nn.Linear


def test_engine_offers_fp8_only_on_fp8_gpus():
    from worldengine.cli.bench import build_engine, random_state
    from worldengine.config import config_from_dict
    from worldengine.synthetic.presets import preset_dict

    config = config_from_dict({**preset_dict("tiny"), "n_layers": 2})
    with pytest.raises(WaypointError, match="compute capability 8.9.*on cpu.*int8"):
        build_engine(config, random_state(config), "cpu", "float32", "fp8", compile=False)
    with pytest.raises(SystemExit):
        parse_args(["--quant", "fp8"])


def test_fp8_rollout_tracks_fp32_for_100_frames(monkeypatch):
    monkeypatch.setattr(fp8, "fp8_supported", lambda device: True)   # run the software GEMM on CPU
    per_frame, engine = quantized_rollout_errors("fp8")
    assert isinstance(engine.model.blocks[0].attn.qkv, Fp8Linear)
    assert 0 < per_frame.min() and per_frame.max() < ROLLOUT_FRAME_BOUND, per_frame
    assert per_frame[-20:].mean() < 1.5 * per_frame[:20].mean()  # no drift blow-up
