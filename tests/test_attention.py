"""Attention candidates (worldengine.attn): per-call accuracy against today's SDPA call at the masks the
ring cache really builds, the int8 KV representation, and a 100-frame rollout with int8 attention
swapped in for SDPA (through a stand-in for `layers.F`), and the load-time choice (`attn.choose`)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from worldengine import layers
from worldengine.attn import REFERENCE, candidates, error_bound, int8_attention, quantize_kv
from worldengine.attn.int8 import int8_attention_dense
from worldengine.attn.sdpa import visible_runs
from worldengine.cli.bench import build_engine, random_state
from worldengine.cli.bench_attention import attention_inputs, relative_error, ring_masks
from worldengine.controls import Controls
from worldengine.errors import WaypointError
from worldengine.synthetic.presets import preset_config


def _masks(config, frames):
    """(frame, kind, mask) for each query frame and ring kind, as RingKVCache builds them."""
    return [(f, kind, mask) for f in frames for kind, mask in ring_masks(config, f).items()]


@pytest.mark.parametrize("preset,frames", [("tiny", [0, 1, 2, 3, 5, 8, 20]), ("cpu-small", [9, 131])])
def test_every_candidate_is_within_its_bound_at_the_engine_masks(preset, frames):
    config = preset_config(preset)
    group = config.n_heads // config.n_kv_heads
    for frame, kind, mask in _masks(config, frames):
        q, k, v = attention_inputs(config, mask.numel(), seed=frame)
        found = candidates(config.tokens_per_frame, group, kind[0], mask.numel())
        ref = found[REFERENCE](q, k, v, mask)
        for name, fn in found.items():
            y = fn(q, k, v, mask)
            assert y.shape == q.shape and y.dtype == q.dtype, name
            err = relative_error(y, ref)
            assert err <= error_bound(name), (preset, frame, kind, name, err)


def test_the_bound_catches_a_candidate_that_ignores_the_mask():
    config = preset_config("tiny")
    (_, _, mask), = [m for m in _masks(config, [3]) if m[1][0] == 1]
    assert not mask.all()
    q, k, v = attention_inputs(config, mask.numel(), seed=0)
    ref = candidates(config.tokens_per_frame, 2, 1, mask.numel())[REFERENCE]
    unmasked = ref(q, k, v, torch.ones_like(mask))
    assert relative_error(unmasked, ref(q, k, v, mask)) > error_bound("int8")


def test_visible_runs_lists_the_contiguous_visible_ranges():
    mask = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1], dtype=torch.bool)
    assert visible_runs(mask) == [(0, 2), (4, 5), (6, 8)]
    assert visible_runs(torch.ones(4, dtype=torch.bool)) == [(0, 4)]


def test_int8_kv_quantized_per_block_equals_quantizing_each_slot_when_written():
    gen = torch.Generator().manual_seed(0)
    k = torch.randn(2, 4 * 8, 16, generator=gen) + 3.0   # a large common component: what smoothing removes
    v = torch.randn(2, 4 * 8, 16, generator=gen)
    whole = quantize_kv(k, v, block=8)
    for slot in range(4):
        rows = slice(slot * 8, (slot + 1) * 8)
        one = quantize_kv(k[:, rows], v[:, rows], block=8)
        assert torch.equal(one.k_q, whole.k_q[:, rows]) and torch.equal(one.v_q, whole.v_q[:, rows])
        assert torch.allclose(one.k_mean[:, 0], whole.k_mean[:, slot])
    back = whole.k_q.float() * whole.k_scale[..., None] + whole.k_mean.repeat_interleave(8, dim=1)
    assert relative_error(back, k) < 2e-3
    assert torch.allclose(whole.k_mean.mean(), torch.tensor(3.0), atol=0.2)


def test_int8_kv_and_attention_reject_mismatched_shapes():
    with pytest.raises(WaypointError, match="multiple of the block size 8"):
        quantize_kv(torch.zeros(2, 12, 16), torch.zeros(2, 12, 16), block=8)
    with pytest.raises(WaypointError, match="does not match keys"):
        int8_attention(torch.zeros(3, 8, 16), quantize_kv(torch.zeros(2, 8, 16), torch.zeros(2, 8, 16), 8),
                       torch.ones(8, dtype=torch.bool))


def test_int8_attention_is_exact_where_quantization_is_lossless():
    """Keys/values already on the int8 grid, one-hot attention: the integer path must reproduce SDPA."""
    tokens, dh = 4, 16
    k = torch.zeros(1, 2 * tokens, dh)
    k[0, torch.arange(2 * tokens), torch.arange(2 * tokens)] = 127.0
    v = torch.randint(-127, 128, (1, 2 * tokens, dh)).float()
    q = k[:, [3, 6]].clone()                        # each query matches one key by a wide margin
    mask = torch.ones(2 * tokens, dtype=torch.bool)
    got = int8_attention_dense(q, k, v, mask, block=tokens)
    assert torch.allclose(got, v[:, [3, 6]], atol=0.5)


class _PatchedF:
    """Stands in for `torch.nn.functional` inside layers.py: SDPA goes to `attention` (per batch item),
    everything else to torch."""

    def __init__(self, attention):
        self.attention, self.calls = attention, 0

    def __getattr__(self, name):
        return getattr(F, name)

    def scaled_dot_product_attention(self, q, k, v, attn_mask=None):
        self.calls += 1
        masks = attn_mask.reshape(attn_mask.shape[0], -1)
        return torch.stack([self.attention(q[b], k[b], v[b], masks[b % masks.shape[0]]) for b in range(q.shape[0])])


def _rollout(engine, frames: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    session = engine.new_session()
    session.append_latent(torch.randn(engine.config.latent_shape, generator=gen))
    return [session.step(Controls(buttons=frozenset({i % 7}), mouse=(0.05 * (i % 3 - 1), 0.0)), generator=gen)
            for i in range(frames)]


@pytest.mark.parametrize("frames", [pytest.param(100, marks=pytest.mark.slow), 30])
def test_int8_attention_rollout_stays_within_one_percent_of_bf16(monkeypatch, frames):
    # 100 frames is the bound (slow: `torch._int_mm` runs at ~1 GOP/s on AVX2-only CPUs, so it
    # takes minutes there); 30 frames is the bounded version the default suite runs.
    config = preset_config("tiny")
    engine = build_engine(config, random_state(config, 0), "cpu", "bfloat16", None, False)
    reference = _rollout(engine, frames)
    patched = _PatchedF(lambda q, k, v, m: int8_attention_dense(q, k, v, m, block=config.tokens_per_frame))
    monkeypatch.setattr(layers, "F", patched)
    got = _rollout(engine, frames)
    assert patched.calls == (1 + frames * len(config.scheduler_sigmas)) * config.n_layers
    errors = [relative_error(a, b) for a, b in zip(got, reference)]
    assert max(errors) <= 0.01, max(errors)
    quarter = frames // 4
    first, last = sum(errors[:quarter]) / quarter, sum(errors[-quarter:]) / quarter
    assert last <= 2 * first + 1e-3, (first, last)   # no drift: the error does not grow with the context


def test_load_time_choice_keeps_the_float_path_and_sets_accurate_kernels():
    from worldengine.attn.choose import choices
    config = preset_config("tiny")
    state = random_state(config, 0)
    plain = build_engine(config, state, "cpu", "bfloat16", "none", False)
    assert plain.options["attention"] == {}
    assert all(block.attn.attn_kernel is None for block in plain.model.blocks)
    engine = build_engine(config, state, "cpu", "bfloat16", "int8", False)
    kinds = {f"{d}x{b}" for d, b in (config.ring(i) for i in range(config.n_layers))}
    assert set(engine.options["attention"]) == kinds
    for key, result in choices().items():
        assert result["errors"][result["choice"]] <= error_bound(result["choice"]), key
        assert result["times_ms"][result["choice"]] <= result["times_ms"][REFERENCE], key
    for i, block in enumerate(engine.model.blocks):
        dilation, buckets = config.ring(i)
        choice = engine.options["attention"][f"{dilation}x{buckets}"]
        assert (block.attn.attn_kernel is None) == (choice == REFERENCE)


def test_a_set_attention_kernel_is_the_one_the_engine_calls():
    config = preset_config("tiny")
    engine = build_engine(config, random_state(config, 0), "cpu", "bfloat16", None, False)
    reference = _rollout(engine, 3)
    calls = []

    def counting(q, k, v, mask):
        calls.append(q.shape)
        return int8_attention_dense(q, k, v, mask, block=config.tokens_per_frame)

    for block in engine.model.blocks:
        block.attn.attn_kernel = counting
    got = _rollout(engine, 3)
    assert len(calls) == (1 + 3 * len(config.scheduler_sigmas)) * config.n_layers
    assert 0 < max(relative_error(a, b) for a, b in zip(got, reference)) <= 0.01
