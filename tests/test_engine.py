"""Engine behaviour on tiny checkpoints written on the fly in the published layouts."""
import math
import resource

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from worldengine.quant.select import one_thread
from worldengine import Controls, ControlTrack, WaypointError, keycode, load_config, load_engine
from worldengine.config import config_from_dict
from worldengine.synthetic import tiny_config_dict, write_checkpoint, write_tiny_checkpoint


@pytest.fixture(scope="module")
def wp15(tmp_path_factory):
    return write_tiny_checkpoint(tmp_path_factory.mktemp("wp15"), with_ae=False)


@pytest.fixture(scope="module")
def engine(wp15):
    return load_engine(wp15)


def rollout(session, frames, seed=0):
    generator = torch.Generator().manual_seed(seed)
    keys = [["W"], ["A", "Shift"], [], ["LMB"]]
    return [session.step(Controls.from_keys(keys[i % 4], mouse=(0.1 * i, -0.05)), generator=generator)
            for i in range(frames)]


# ---- config ------------------------------------------------------------------------------------
def test_config_derived_values():
    config = config_from_dict(tiny_config_dict())
    assert config.latent_shape == (8, 16, 32) and config.d_head == 16 and config.ts_mult == 2
    assert [config.is_global_layer(i) for i in range(4)] == [False, True, False, True]
    assert [config.has_ctrl_fusion(i) for i in range(4)] == [True, False, False, True]
    assert config.ring(1) == (2, 4) and config.ring(0) == (1, 4)
    wp1 = config_from_dict(tiny_config_dict("waypoint-1"))
    assert wp1.ts_mult == 1 and [wp1.has_cross_attn(i) for i in range(4)] == [True, False, False, True]
    assert [wp1.is_global_layer(i) for i in range(4)] == [True, False, True, False]


@pytest.mark.parametrize("change,needle", [
    ({"model_type": "waypoint-9"}, "model_type"),
    ({"noise_conditioning": "magic"}, "noise_conditioning"),
    ({"d_model": 65}, "d_model"),
    ({"scheduler_sigmas": [1.0, 0.5]}, "scheduler_sigmas"),
    ({"warp_drive": True}, "warp_drive"),
    ({"n_heads": 3, "n_kv_heads": 2}, "n_heads"),
])
def test_bad_config_names_field_and_file(tmp_path, change, needle):
    values = {**tiny_config_dict(), **change}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(WaypointError, match=needle) as info:
        load_config(tmp_path)
    assert "config.yaml" in str(info.value)


def test_missing_required_field(tmp_path):
    values = tiny_config_dict()
    del values["global_attn_offset"], values["d_model"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(WaypointError, match="d_model"):
        load_config(tmp_path)


# ---- controls ----------------------------------------------------------------------------------
def test_controls_vector_layout_and_validation():
    controls = Controls.from_keys(["W", "Shift", "LMB"], mouse=(0.25, -0.5), scroll=-1)
    vector = controls.to_vector(256, torch.float32)
    assert vector.shape == (259,) and vector[0] == 0.25 and vector[1] == -0.5 and vector[-1] == -1
    assert sorted((vector[2:-1] == 1).nonzero().flatten().tolist()) == [1, 16, 87]
    assert keycode("space") == 32 and keycode("Left") == 37 and keycode("LShift") == 160
    for bad in (dict(buttons={999}), dict(buttons={True}), dict(buttons={87.5}), dict(buttons="W"),
                dict(mouse=(float("nan"), 0)), dict(scroll=2), dict(mouse=(1,))):
        with pytest.raises(WaypointError):
            Controls(**bad)
    with pytest.raises(WaypointError, match="key name"):
        Controls.from_keys(["Warp"])
    track = ControlTrack((controls, Controls()), seed=7)
    assert ControlTrack.from_json(track.to_json()) == track
    with pytest.raises(WaypointError, match="frame 1"):
        ControlTrack.from_json({"format": "waypoint-control-track/1", "frames": [{}, {"scroll": 5}]})


# ---- checkpoints -------------------------------------------------------------------------------
def test_published_and_native_layouts_load_the_same_model(tmp_path):
    from worldengine.synthetic import random_canonical_state

    config = config_from_dict(tiny_config_dict())
    state = random_canonical_state(config, seed=3)
    raw_folder = write_checkpoint(tmp_path / "raw", tiny_config_dict(), state=state)
    native_folder = write_checkpoint(tmp_path / "native", tiny_config_dict(model_type="waypoint-1.5") | {},
                                     state=state)
    assert "transformer.blocks.0.dit_mlp.fc1.weight" in load_file(raw_folder / "model.safetensors")
    # Same weights in the canonical layout under model_type waypoint-1 (no remap).
    values = tiny_config_dict()
    values["model_type"] = "waypoint-1"
    native = write_checkpoint(tmp_path / "canonical", values, state=state)
    a, b = load_engine(raw_folder).new_session(), load_engine(native).new_session()
    assert all(torch.equal(x, y) for x, y in zip(rollout(a, 3), rollout(b, 3)))
    assert native_folder.exists()


def test_shape_mismatch_names_key_and_shapes(tmp_path, wp15):
    tensors = load_file(wp15 / "model.safetensors")
    tensors["transformer.blocks.2.attn.k_proj.weight"] = torch.zeros(7, 64, dtype=torch.bfloat16)
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.yaml").write_text((wp15 / "config.yaml").read_text())
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(WaypointError, match=r"blocks\.2\.attn\.k_proj.*\(7, 64\).*\(32, 64\)"):
        load_engine(folder)


def test_missing_and_truncated_weights(tmp_path, wp15):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.yaml").write_text((wp15 / "config.yaml").read_text())
    with pytest.raises(WaypointError, match="model.safetensors"):
        load_engine(folder)
    data = (wp15 / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WaypointError, match="complete"):
        load_engine(folder)
    tensors = load_file(wp15 / "model.safetensors")
    del tensors["out_norm.fc.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(WaypointError, match="out_norm.fc.weight"):
        load_engine(folder)


def test_offline_repo_id_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WaypointError) as info:
        load_engine("Overworld/Waypoint-1.5-1B-360P", models_dir=tmp_path)
    message = str(info.value)
    assert "config.yaml" in message and "model.safetensors" in message and str(tmp_path) in message


# ---- sessions ----------------------------------------------------------------------------------
def test_sessions_share_weights_not_state(engine):
    seed = torch.randn(engine.config.latent_shape, generator=torch.Generator().manual_seed(1))
    a, b = engine.new_session(), engine.new_session()
    a.append_latent(seed)
    first = rollout(a, 3)
    b.append_latent(seed)
    rollout(b, 5, seed=9)             # interleaved work on another world
    c = engine.new_session()
    c.append_latent(seed)
    assert all(torch.equal(x, y) for x, y in zip(first, rollout(c, 3)))
    assert a.frame_index == 4 and b.frame_index == 6


def test_snapshot_restore_memory_and_disk(engine, tmp_path):
    session = engine.new_session()
    session.append_latent(torch.zeros(engine.config.latent_shape))
    rollout(session, 6)
    snap = session.snapshot()
    session.save_snapshot(tmp_path / "branch.safetensors")
    ahead = rollout(session, 8, seed=4)
    session.restore(snap)
    assert all(torch.equal(x, y) for x, y in zip(ahead, rollout(session, 8, seed=4)))
    fresh = engine.new_session()
    fresh.load_snapshot(tmp_path / "branch.safetensors")
    assert fresh.frame_index == 7
    assert all(torch.equal(x, y) for x, y in zip(ahead, rollout(fresh, 8, seed=4)))


def test_snapshot_of_another_model_is_refused(engine, tmp_path):
    other = load_engine(write_tiny_checkpoint(tmp_path / "other", with_ae=False, seed=5))
    session = other.new_session()
    rollout(session, 1)
    session.save_snapshot(tmp_path / "other.safetensors")
    mine = engine.new_session()
    rollout(mine, 2)
    with pytest.raises(WaypointError, match="different model"):
        mine.load_snapshot(tmp_path / "other.safetensors")
    assert mine.frame_index == 2
    rollout(mine, 1)                  # still usable


def test_bad_inputs_leave_session_usable(engine):
    session = engine.new_session()
    rollout(session, 2)
    with pytest.raises(WaypointError, match="shape"):
        session.step(noise=torch.zeros(3, 3, 3))
    with pytest.raises(WaypointError, match="NaN"):
        session.append_latent(torch.full(engine.config.latent_shape, float("nan")))
    with pytest.raises(WaypointError, match="999"):
        session.step(Controls.from_json({"buttons": [999]}))
    with pytest.raises(WaypointError):
        session.step(Controls(mouse=(math.inf, 0.0)))
    assert session.frame_index == 2
    assert torch.isfinite(rollout(session, 1)[0]).all()


def test_prompt_conditioned_model_needs_and_uses_prompt(tmp_path):
    engine = load_engine(write_tiny_checkpoint(tmp_path / "wp1", "waypoint-1", with_ae=False))
    session = engine.new_session()
    with pytest.raises(WaypointError, match="prompt"):
        session.step()
    prompts = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(0))
    outs = []
    for prompt in (prompts[0], prompts[1], prompts[0]):
        session.reset()
        session.set_prompt(prompt)
        outs.append(rollout(session, 2))
    assert all(torch.equal(x, y) for x, y in zip(outs[0], outs[2]))
    assert not torch.allclose(outs[0][1], outs[1][1])
    with pytest.raises(WaypointError, match="32"):
        session.set_prompt(torch.zeros(4, 31))


def test_long_rollout_keeps_memory_flat(tmp_path):
    """A 10 000-frame rollout on a minimal config: bounded cache, no growth in resident memory."""
    values = tiny_config_dict(d_model=32, n_layers=2, n_heads=2, n_kv_heads=1, channels=4, height=2, width=4,
                              tokens_per_frame=8, local_window=4, global_window=8)
    engine = load_engine(write_checkpoint(tmp_path / "mini", values))
    session = engine.new_session()
    cache_bytes = sum(b.numel() * b.element_size() for b in session.cache.buffers)
    generator = torch.Generator().manual_seed(0)
    controls = Controls.from_keys(["W"])
    rss = []
    with one_thread():
        for frame in range(10_000):
            latent = session.step(controls, generator=generator)
            if frame % 2_000 == 1_999:
                rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert torch.isfinite(latent).all() and session.frame_index == 10_000
    assert sum(b.numel() * b.element_size() for b in session.cache.buffers) == cache_bytes
    assert rss[-1] - rss[0] < 20_000, f"peak RSS grew by {rss[-1] - rss[0]} KiB: {rss}"


@pytest.mark.parametrize("overrides", [
    {"moe": True, "moe_top_k": 2, "moe_n_experts": 4},
    {"noise_conditioning": None},                      # untied per-block modulation, no bias_in
    {"n_kv_heads": 4, "patch": [1, 1], "height": 16, "width": 32, "tokens_per_frame": 512},
    {"d_model": 128, "n_heads": 2, "n_kv_heads": 1},   # d_head 64: several RoPE x/y frequencies
])
def test_config_variants_load_and_roll_out(tmp_path, overrides):
    values = tiny_config_dict(**overrides)
    engine = load_engine(write_checkpoint(tmp_path / "variant", values, seed=2))
    session = engine.new_session()
    frames = rollout(session, 3)
    assert all(torch.isfinite(f).all() and f.shape == engine.config.latent_shape for f in frames)
    if overrides.get("noise_conditioning", "wan") is None:
        assert engine.model.shared_cond_proj is None and engine.model.blocks[0].bias_in is None


def test_corrupt_snapshot_file_is_refused_and_session_kept(engine, tmp_path):
    session = engine.new_session()
    rollout(session, 2)
    session.save_snapshot(tmp_path / "snap.safetensors")
    tensors = load_file(tmp_path / "snap.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "snap.safetensors"), "pt") as handle:
        metadata = handle.metadata()
    del tensors["kv.1"]
    save_file(tensors, str(tmp_path / "cut.safetensors"), metadata=metadata)
    rollout(session, 1)
    before = session.snapshot()
    with pytest.raises(WaypointError, match="kv.1"):
        session.load_snapshot(tmp_path / "cut.safetensors")
    assert session.frame_index == 3
    after = session.snapshot()
    assert all(torch.equal(before.tensors[k], after.tensors[k]) for k in before.tensors)
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WaypointError, match="not a world snapshot"):
        session.load_snapshot(tmp_path / "other.safetensors")
    assert session.frame_index == 3 and torch.isfinite(session.step(seed=11)).all()
    assert torch.equal(engine.new_session().step(seed=11), engine.new_session().step(seed=11))
