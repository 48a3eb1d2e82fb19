"""Hostile inputs to the engine (issue 15): configs with huge or mistyped fields, checkpoints whose header
does not fit the config or whose weights are not finite, tampered snapshots, abusive control tracks.
Each gives a WaypointError naming the field, allocates nothing big, and leaves a session usable."""
from __future__ import annotations

import json
import resource

import pytest
import torch
from safetensors.torch import load_file, save_file

from worldengine import controls as controls_module
from worldengine.checkpoint import header_shapes, read_safetensors
from worldengine.config import config_from_dict, load_config
from worldengine.controls import TRACK_FORMAT, Controls, ControlTrack
from worldengine.errors import WaypointError
from worldengine.synthetic import tiny_config_dict, write_tiny_checkpoint

SMALL = {"height": 2, "width": 4, "tokens_per_frame": 8}


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("n_layers", 10 ** 6), ("d_model", 10 ** 7), ("n_heads", 10 ** 5), ("height", 10 ** 5), ("width", 10 ** 5),
    ("local_window", 10 ** 6), ("global_window", 10 ** 9), ("patch", [10 ** 9, 10 ** 9]),
    ("scheduler_sigmas", [1.0 - i / 10 ** 5 for i in range(10 ** 5)] + [0.0]), ("n_frames", 10 ** 12),
    ("mlp_ratio", 10 ** 4), ("channels", 10 ** 6), ("n_buttons", 10 ** 6), ("base_fps", 10 ** 9),
])
def test_size_fields_have_upper_bounds(field, value):
    before = _max_rss_mb()
    with pytest.raises(WaypointError, match=field):
        config_from_dict({**tiny_config_dict(), field: value}, source="cfg.yaml")
    assert _max_rss_mb() - before < 200


def test_kv_cache_size_is_bounded_before_any_session():
    values = {**tiny_config_dict(), "n_layers": 512, "local_window": 4096, "height": 256, "width": 256,
              "tokens_per_frame": 65536, "d_model": 4096, "n_heads": 32, "n_kv_heads": 32}
    with pytest.raises(WaypointError, match="KV cache"):
        config_from_dict(values)


@pytest.mark.parametrize("field, value", [
    ("rope_theta", -1), ("rope_theta", float("nan")), ("rope_theta", float("inf")), ("rope_theta", "x"),
    ("value_residual", "no"), ("gated_attn", 1), ("moe", "false"), ("taehv_ae", None),
    ("global_attn_offset", "x"), ("rope_nyquist_frac", "x"), ("rope_nyquist_frac", 0),
    ("d_model", 64.0), ("n_layers", True), ("height", "8"), ("patch", "22"), ("patch", [2.5, 2]),
    ("scheduler_sigmas", ["1.0", "0.0"]), ("scheduler_sigmas", 5), ("inference_fps", "60"),
    ("model_type", ["waypoint-1.5"]), ("ae_uri", 5), ("n_frames", "512"), ("prompt_encoder_uri", 3),
])
def test_field_types_and_values_are_checked(field, value):
    with pytest.raises(WaypointError, match=field):
        config_from_dict({**tiny_config_dict(), field: value}, source="cfg.yaml")


def test_non_string_keys_and_valid_config_still_load(tmp_path):
    with pytest.raises(WaypointError, match="unknown config field"):
        config_from_dict({**tiny_config_dict(), 5: 1})
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(tiny_config_dict()))
    assert load_config(path).n_layers == 4


# ---- checkpoints -------------------------------------------------------------------------------
def _rewrite_config(folder, **changes):
    import yaml
    values = yaml.safe_load((folder / "config.yaml").read_text())
    (folder / "config.yaml").write_text(yaml.safe_dump({**values, **changes}))


@pytest.mark.parametrize("changes, words", [
    ({"n_layers": 400}, "n_layers is 400 but the checkpoint has 4 blocks"),
    ({"d_model": 128}, "patchify.weight"),
    ({"n_kv_heads": 4}, "k_proj"),
])
def test_config_is_checked_against_the_header_before_reading_tensors(tmp_path, monkeypatch, changes, words):
    folder = write_tiny_checkpoint(tmp_path / "m", model_type="waypoint-1.5", **SMALL)
    _rewrite_config(folder, **changes)
    config = load_config(folder)
    import safetensors
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("tensors were read"))
    with pytest.raises(WaypointError, match=words):
        read_safetensors(folder / "model.safetensors", config=config)


def test_load_engine_checks_the_header_before_reading_any_tensor(tmp_path, monkeypatch):
    from worldengine import load_engine
    folder = write_tiny_checkpoint(tmp_path / "m", model_type="waypoint-1.5", **SMALL)
    _rewrite_config(folder, n_layers=512)
    import safetensors
    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("tensors were read"))
    with pytest.raises(WaypointError, match="n_layers is 512 but the checkpoint has 4 blocks"):
        load_engine(folder)


def test_header_reader_refuses_garbage(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes((10 ** 12).to_bytes(8, "little") + b"{}")
    with pytest.raises(WaypointError, match="not a safetensors file"):
        header_shapes(path)
    path.write_bytes((5).to_bytes(8, "little") + b"[1,2]")
    with pytest.raises(WaypointError, match="not a safetensors file"):
        header_shapes(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_key(tmp_path, bad):
    from worldengine import load_engine
    folder = write_tiny_checkpoint(tmp_path / "m", model_type="waypoint-1.5", **SMALL)
    state = load_file(folder / "model.safetensors")
    key = "transformer.blocks.2.attn.out_proj.weight"
    state[key] = torch.full_like(state[key], bad)
    save_file(state, folder / "model.safetensors")
    with pytest.raises(WaypointError, match=key.replace(".", r"\.") + ".*NaN or infinite"):
        load_engine(folder)


# ---- snapshots ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from worldengine import load_engine
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("snap") / "m", model_type="waypoint-1.5", **SMALL)
    return load_engine(folder)


@pytest.fixture()
def saved(engine, tmp_path):
    session = engine.new_session()
    session.append_latent(torch.randn(engine.config.latent_shape, generator=torch.Generator().manual_seed(1)))
    session.step(seed=2)
    path = tmp_path / "world.safetensors"
    session.save_snapshot(path)
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    return path, load_file(path), metadata


def _tamper(path, tensors, metadata):
    save_file(tensors, str(path), metadata=metadata)
    return path


def _tampered_cases(tensors, metadata):
    kv = next(k for k in tensors if k.startswith("kv."))
    written = next(k for k in tensors if k.startswith("written."))
    nan_kv, inf_kv = dict(tensors), dict(tensors)
    nan_kv[kv] = torch.full_like(tensors[kv], float("nan"))
    inf_kv[kv] = tensors[kv].clone().index_fill_(0, torch.tensor([0]), float("inf"))
    cases = [(nan_kv, metadata, kv), (inf_kv, metadata, kv),
             ({**tensors, kv: tensors[kv].to(torch.int32)}, metadata, "dtype"),
             ({**tensors, kv: tensors[kv][..., :1].contiguous()}, metadata, kv),
             ({**tensors, written: tensors[written].to(torch.float32)}, metadata, written),
             ({**tensors, written: torch.ones(tensors[written].numel() * 3, dtype=torch.bool)}, metadata, written),
             ({**tensors, "last_latent": torch.zeros(3, 3)}, metadata, "last_latent"),
             ({**tensors, "evil": torch.zeros(1)}, metadata, "evil")]
    for field, value in [("frame_index", "-5"), ("frame_index", str(10 ** 30)), ("frame_index", "1.5"),
                         ("frame_index", "x"), ("extra", "{not json"), ("extra", "[1, 2]"),
                         ("frame_index", str(2 ** 40 + 1))]:
        cases.append((tensors, {**metadata, field: value}, field))
    cases.append((tensors, {k: v for k, v in metadata.items() if k != "fingerprint"}, "fingerprint"))
    all_written = {**tensors, written: torch.ones_like(tensors[written])}
    cases.append((all_written, {**metadata, "frame_index": "0"}, written))
    return cases


def test_tampered_snapshots_are_refused_and_the_session_is_intact(engine, saved, tmp_path):
    path, tensors, metadata = saved
    session = engine.new_session()
    session.load_snapshot(path)
    reference = session.snapshot()
    for number, (bad_tensors, bad_metadata, words) in enumerate(_tampered_cases(tensors, metadata)):
        bad = _tamper(tmp_path / f"bad{number}.safetensors", bad_tensors, bad_metadata)
        with pytest.raises(WaypointError, match=words.replace(".", r"\.")):
            session.load_snapshot(bad)
        assert session.frame_index == reference.frame_index
        now = session.snapshot().tensors
        assert all(torch.equal(now[k], v) for k, v in reference.tensors.items()), number
    first = session.step(seed=5)
    again = engine.new_session()
    again.load_snapshot(path)
    assert torch.equal(again.step(seed=5), first)


def test_in_memory_snapshot_fields_are_checked(engine):
    from worldengine.session import WorldSnapshot
    session = engine.new_session()
    good = session.snapshot()
    for index in (-1, 2 ** 41, 1.5, True, "3"):
        with pytest.raises(WaypointError, match="frame_index"):
            session.restore(WorldSnapshot(good.fingerprint, index, good.tensors))
    with pytest.raises(WaypointError, match="extra"):
        session.restore(WorldSnapshot(good.fingerprint, 0, good.tensors, extra=[1]))


# ---- controls and tracks -----------------------------------------------------------------------
@pytest.mark.parametrize("data, words", [
    ({"mouse": [1e308, 0]}, "mouse"), ({"mouse": [3.5e38, 0]}, "mouse"), ({"mouse": [0, -1.5e4]}, "mouse"),
    ({"mouse": [10 ** 400, 0]}, "mouse"), ({"mouse": "ab"}, "mouse"), ({"mouse": [True, 0]}, "mouse"),
    ({"buttons": "87"}, "buttons"), ({"buttons": ["87"]}, "buttons"), ({"buttons": {"87": 1}}, "buttons"),
    ({"keys": 5}, "keys"), ({"keys": "W"}, "keys"), ({"keys": [{"a": 1}]}, "key name"),
    ({"keys": ["²"]}, "key name"), ({"scroll": "1"}, "scroll"), ({"buttons": list(range(300))}, "256"),
])
def test_bad_controls_are_waypoint_errors(data, words):
    with pytest.raises(WaypointError, match=words):
        Controls.from_json(data)
    with pytest.raises(WaypointError, match=words):
        Controls.from_json(json.dumps(data))


def test_mouse_at_the_bound_is_accepted():
    assert Controls.from_json({"mouse": [1e4, -1e4]}).mouse == (1e4, -1e4)


def test_deep_nesting_is_refused_before_parsing():
    for text in ("[" * 100_000 + "]" * 100_000, '{"frames": ' + "[" * 50 + "]" * 50 + "}", "[" * 100_000):
        with pytest.raises(WaypointError, match="nesting depth"):
            ControlTrack.from_json(text)
    with pytest.raises(WaypointError, match="nesting depth"):
        Controls.from_json('{"keys": ' + "[" * 20 + "]" * 20 + "}")
    # brackets inside strings are not structure
    with pytest.raises(WaypointError, match="'format'"):
        ControlTrack.from_json(json.dumps({"format": "[{" * 50 + '\\"]', "frames": []}))
    assert len(ControlTrack.from_json(json.dumps({"format": TRACK_FORMAT, "frames": [{"keys": ["[", "]"]}]}))) == 1


@pytest.mark.parametrize("seed", [2 ** 64, 2 ** 70, -1, 1.5, "3", True])
def test_track_seed_must_be_in_range(seed):
    with pytest.raises(WaypointError, match="seed"):
        ControlTrack.from_json({"format": TRACK_FORMAT, "seed": seed, "frames": []})
    with pytest.raises(WaypointError, match="seed"):
        ControlTrack((), seed=seed)
    assert ControlTrack.from_json({"format": TRACK_FORMAT, "seed": 2 ** 64 - 1, "frames": []}).seed == 2 ** 64 - 1


def test_track_format_and_field_names_are_required():
    with pytest.raises(WaypointError, match="'format'"):
        ControlTrack.from_json({"seed": 1, "frames": []})
    with pytest.raises(WaypointError, match="'format'"):
        ControlTrack.from_json({"format": "waypoint-control-track/2", "frames": []})
    with pytest.raises(WaypointError, match="unknown control track field.*'frame'"):
        ControlTrack.from_json({"format": TRACK_FORMAT, "frames": [], "frame": []})
    assert len(ControlTrack.from_json([{}, {"keys": ["W"]}])) == 2   # the bare-list short form


def test_over_long_track_is_refused_before_building_controls(monkeypatch):
    text = "[" + "{}," * controls_module.MAX_TRACK_FRAMES + "{}]"
    monkeypatch.setattr(Controls, "from_json", classmethod(lambda cls, data: pytest.fail("parsed")))
    with pytest.raises(WaypointError, match="more than 1000000 frames"):
        ControlTrack.from_json(text)
    monkeypatch.setattr(controls_module, "MAX_TRACK_BYTES", 1000)
    with pytest.raises(WaypointError, match="larger than the cap of 1000 bytes"):
        ControlTrack.from_json(" " * 1001)


def test_track_files(tmp_path):
    with pytest.raises(WaypointError, match="cannot read control track file"):
        ControlTrack.from_file(tmp_path / "missing.json")
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": TRACK_FORMAT, "seed": 4, "frames": [{"keys": ["W"]}]}))
    assert ControlTrack.from_file(path).seed == 4
    path.write_text("{")
    with pytest.raises(WaypointError, match="t.json: not valid JSON"):
        ControlTrack.from_file(path)


def test_cli_missing_controls_file_is_one_line(tmp_path):
    import subprocess
    import sys
    folder = write_tiny_checkpoint(tmp_path / "m", model_type="waypoint-1.5", **SMALL)
    result = subprocess.run([sys.executable, "-m", "worldengine", "rollout", str(folder), "--controls",
                             str(tmp_path / "nope.json"), "--out", str(tmp_path / "o.gif")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "nope.json" in result.stderr
