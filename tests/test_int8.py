"""INT8 linears: accuracy vs float, replacement rules, compile without graph breaks or recompiles."""
import time

import pytest
import torch
from oracles import quantized_rollout_errors
from torch import nn

from worldengine.quant import onednn, select
from worldengine.errors import WaypointError
from worldengine.quant.int8 import (Int8Linear, Int8WeightOnlyLinear, measured_kernel, quantize_linears,
                                    quantize_per_token, quantize_weight)

# Relative Frobenius error of one layer vs the fp32 Linear on Gaussian weights and inputs, measured
# over K in {64, 512, 2048}: W8A8 0.7–0.95 %, weight-only 0.38–0.55 % (bf16 activations included).
# The bounds leave ~1.6x head-room.
W8A8_REL_BOUND = 0.015
WEIGHT_ONLY_REL_BOUND = 0.009


def rel_err(y, ref):
    return ((y.float() - ref.float()).norm() / ref.float().norm()).item()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("in_f,out_f", [(64, 128), (512, 1536), (2048, 512)])
def test_int8_linear_close_to_fp32(dtype, in_f, out_f):
    torch.manual_seed(in_f + out_f)
    linear = nn.Linear(in_f, out_f)
    x = torch.randn(2, 64, in_f)
    ref = linear(x)
    for cls, bound in ((Int8Linear, W8A8_REL_BOUND), (Int8WeightOnlyLinear, WEIGHT_ONLY_REL_BOUND)):
        y = cls.from_linear(linear)(x.to(dtype))
        assert y.dtype == dtype and y.shape == (2, 64, out_f)
        assert rel_err(y, ref) < bound, (cls.__name__, rel_err(y, ref))


def test_int8_storage_and_rounding():
    torch.manual_seed(0)
    linear = nn.Linear(64, 32, bias=False).to(torch.bfloat16)
    layer = Int8Linear.from_linear(linear)
    stored = layer.stored_weight()
    assert stored.dtype == torch.int8 and stored.shape == (32, 64)
    assert stored.abs().max().item() == 127  # every row uses the full range
    assert layer.bias is None
    # Dequantized weights are within half a step of the originals.
    step = layer.weight_scale[:, None]
    assert ((layer.dequantized_weight() - linear.weight.float()).abs() <= step / 2 + 1e-6).all()
    # State dict holds int8 storage only, no float weight copy.
    assert set(layer.state_dict()) == {"weight_q", "weight_scale"}


def test_zero_rows_and_tokens_do_not_make_nan():
    w = torch.zeros(16, 32)
    q, scale = quantize_weight(w)
    assert (q == 0).all() and torch.isfinite(scale).all()
    x = torch.zeros(3, 32)
    qx, sx = quantize_per_token(x)
    assert (qx == 0).all() and torch.isfinite(sx).all()
    linear = nn.Linear(32, 16)
    out = Int8Linear.from_linear(linear)(torch.zeros(5, 32))
    assert torch.allclose(out, linear.bias.detach(), atol=1e-6)


def test_small_row_count_and_exact_integer_path():
    # Weights and inputs that are exact small integers quantize without loss, so the int8 GEMM must
    # reproduce the float result exactly, whatever the row count (1 row exercises the small-M path).
    linear = nn.Linear(32, 8, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randint(-127, 128, (8, 32)).float())
        linear.weight[:, 0] = 127.0
    layer = Int8Linear.from_linear(linear)
    for rows in (1, 16, 17, 40):
        x = torch.randint(-127, 128, (rows, 32)).float()
        x[:, 0] = 127.0
        assert torch.equal(layer(x), linear(x))


@pytest.mark.skipif(not onednn.available(), reason="this torch build has no oneDNN int8 linear")
@pytest.mark.parametrize("rows,rows_hint", [(1, None), (128, 128), (5, 128)])
def test_prepacked_cpu_weights_give_the_int_mm_result(rows, rows_hint):
    # On CPU the weight can be packed once for oneDNN at load (for rows_hint rows, but any row count
    # works) and kept only in packed form; an unpacked layer on plain `_int_mm` is the reference.
    # (Whether oneDNN is used by default is measured: see test_slow_kernels_are_refused.)
    torch.manual_seed(rows)
    linear = nn.Linear(512, 256, bias=True)
    layer = Int8Linear.from_linear(linear, rows_hint, kernel="onednn")
    assert layer.weight_packed is not None and layer.weight_packed.is_mkldnn and layer.weight_q is None
    plain = Int8Linear(512, 256, has_bias=True)          # never prepared: stays on `_int_mm`
    plain.load_state_dict(layer.state_dict())             # the state dict gives back the int8 values
    assert plain.weight_packed is None and torch.equal(plain.weight_q, quantize_weight(linear.weight)[0])
    x = torch.randn(rows, 512)
    assert torch.allclose(layer(x), plain(x), rtol=1e-6, atol=1e-6), (layer(x) - plain(x)).abs().max()
    repacked = Int8Linear.from_linear(nn.Linear(512, 256), rows_hint, kernel="onednn")
    repacked.load_state_dict(layer.state_dict())          # loading into a packed layer repacks
    assert torch.equal(repacked(x), layer(x))
    wrong = {**layer.state_dict(), "weight_q": torch.zeros(8, 512, dtype=torch.int8)}
    with pytest.raises(WaypointError, match=r"weight_q has shape \(8, 512\), expected \(256, 512\)"):
        repacked.load_state_dict(wrong)


def _slowed(monkeypatch, owner, name, seconds=0.05):
    real = getattr(owner, name)

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)
    monkeypatch.setattr(owner, name, slow)


def test_slow_kernels_are_refused(monkeypatch):
    # A kernel is used only when it measured fastest: a oneDNN op that takes 50 ms per call (as its
    # reference kernel does at real sizes) is never packed for, and where both int8 kernels are
    # slow, `only_if_faster` keeps the float layer. Sleeps of 50 ms against sub-ms products.
    select.forget()
    monkeypatch.setattr(onednn, "available", lambda: True)
    _slowed(monkeypatch, onednn, "int8_mm_packed")
    assert not select.onednn_is_real_kernel()
    layer = Int8Linear.from_linear(nn.Linear(128, 256))
    assert layer.weight_packed is None and layer.weight_q is not None
    assert set(select.verdicts()["linear x 128 x 128 x 256 x float32"]["times_ms"]) == {"float", "f32", "int_mm"}
    _slowed(monkeypatch, torch, "_int_mm")
    select.forget()
    model = nn.Sequential(nn.Linear(128, 256), nn.Linear(256, 128))
    assert quantize_linears(model, rows_hint=64, only_if_faster=True) == []
    assert all(type(m) is nn.Linear for m in model)
    assert measured_kernel(128, 256, 64, torch.float32) == "float"
    select.forget()


def test_fast_int8_kernel_is_used_where_it_wins(monkeypatch):
    # The other way round: a float matmul slowed to 50 ms loses, so the layer becomes int8.
    select.forget()
    _slowed(monkeypatch, torch.nn.functional, "linear")
    model = nn.Sequential(nn.Linear(128, 256))
    assert quantize_linears(model, rows_hint=64, only_if_faster=True) == ["0"]
    assert isinstance(model[0], Int8Linear)
    select.forget()


def test_bad_feature_sizes_raise():
    with pytest.raises(WaypointError, match="in_features=30"):
        Int8Linear.from_linear(nn.Linear(30, 16))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv_proj = nn.Linear(64, 192)
        self.out_proj = nn.Linear(64, 64)
        self.ctrl_emb = nn.Linear(64, 64)
        self.tiny = nn.Linear(64, 16)        # out features below min_features
        self.odd = nn.Linear(64, 48)         # 48 % 32 != 0
        self.mlp = nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 64))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Block(), Block()])
        self.out_norm = nn.Module()
        self.out_norm.fc = nn.Linear(64, 128)
        self.unpatchify = nn.Linear(64, 64)


def test_quantize_linears_skip_rules():
    model = Model()
    names = quantize_linears(model)
    expected = [f"blocks.{i}.{n}" for i in range(2) for n in ("qkv_proj", "out_proj", "mlp.0", "mlp.2")]
    assert names == expected
    assert isinstance(model.blocks[1].mlp[2], Int8Linear)
    for kept in (model.blocks[0].ctrl_emb, model.blocks[0].tiny, model.blocks[0].odd,
                 model.out_norm.fc, model.unpatchify):
        assert type(kept) is nn.Linear
    assert quantize_linears(model) == []  # already quantized: nothing left to replace
    model2 = Model()
    # A custom skip list replaces the default one.
    assert quantize_linears(model2, skip=("blocks",), mode="int8wo") == ["out_norm.fc", "unpatchify"]
    assert isinstance(model2.unpatchify, Int8WeightOnlyLinear)
    assert "blocks.0.ctrl_emb" in quantize_linears(model2, skip=(), mode="int8wo")
    with pytest.raises(WaypointError, match="fp4"):
        quantize_linears(Model(), mode="fp4")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_compile_fullgraph_no_recompiles(dtype):
    torch.manual_seed(0)
    stack = nn.Sequential(nn.Linear(64, 128), nn.SiLU(), nn.Linear(128, 64), nn.SiLU(),
                          nn.Linear(64, 64, bias=False))
    stack[4] = Int8WeightOnlyLinear.from_linear(stack[4])
    assert quantize_linears(stack) == ["0", "2"]
    torch._dynamo.reset()
    compiled = torch.compile(stack, fullgraph=True, dynamic=False)  # fullgraph: a break raises
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    with torch.no_grad():
        for step in range(4):
            x = torch.randn(128, 64, dtype=dtype)
            # Warm-up is the first call; after it any recompile (new guard failure) raises.
            with torch._dynamo.config.patch(error_on_recompile=step > 0):
                out = compiled(x)
            assert out.dtype == dtype
            assert torch.allclose(out.float(), stack(x).float(), rtol=tol, atol=tol)
    torch._dynamo.reset()


# Per-frame relative RMS error of a 100-frame int8 (float32 activations) rollout of wp15_tiny vs the
# float32 engine, measured at most 0.49 % per frame, mean 0.40 %, with no growth (last 10 frames mean
# 0.40 %); bf16 vs float32 on the same rollout is up to 5.7 %. Bound: 2x the worst frame.
ROLLOUT_FRAME_BOUND = 0.01


def test_int8_rollout_tracks_fp32_for_100_frames():
    per_frame, _ = quantized_rollout_errors("int8")
    assert per_frame.max() < ROLLOUT_FRAME_BOUND, per_frame
    assert per_frame.min() > 0  # the int8 path really ran
    assert per_frame[-20:].mean() < 1.5 * per_frame[:20].mean()  # no drift blow-up
