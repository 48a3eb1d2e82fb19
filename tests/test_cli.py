"""`python -m worldengine rollout`: seed image + control track file -> frames, end to end on CPU."""
import json

import numpy as np
import pytest
from PIL import Image

from worldengine.cli import main as cli_main
from worldengine.controls import Controls, ControlTrack


@pytest.fixture()
def seed_png(tmp_path):
    y, x = np.mgrid[0:90, 0:160]
    image = np.stack([x * 255 // 160, y * 255 // 90, (x + y) % 256], axis=-1).astype(np.uint8)
    path = tmp_path / "seed.png"
    Image.fromarray(image).save(path)
    return path


def write_track(path, seed=3):
    frames = (Controls.from_keys(["W"]), Controls.from_keys(["W"], mouse=(-0.3, 0.0)), Controls.from_keys(["A"]))
    path.write_text(json.dumps(ControlTrack(frames, seed).to_json()))
    return path


def read_pngs(folder):
    return np.stack([np.asarray(Image.open(p)) for p in sorted(folder.glob("frame_*.png"))])


def test_rollout_cli_writes_frames_and_is_deterministic(tiny_models_dir, seed_png, tmp_path):
    model = tiny_models_dir / "waypoint" / "small-wp15"
    track = write_track(tmp_path / "track.json")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["rollout", str(model), "--seed-image", str(seed_png), "--controls", str(track),
                "--frames", "2", "--out", str(out), "--fit", "crop"]
        assert cli_main(args) == 0
        runs.append(read_pngs(out))
    frames = runs[0]
    assert frames.shape[0] == 4 + 2 * 4              # the seed latent's 4 frames, then 4 per step
    assert frames.dtype == np.uint8 and frames.shape[-1] == 3
    assert frames.std() > 1 and np.abs(frames[-1].astype(int) - frames[4].astype(int)).max() > 0
    assert np.array_equal(runs[0], runs[1])


def test_rollout_cli_writes_animation(tiny_models_dir, seed_png, tmp_path, capsys):
    from worldengine.config import load_config
    model = tiny_models_dir / "waypoint" / "small-wp15"
    out = tmp_path / "clip.gif"
    assert cli_main(["rollout", str(model), "--seed-image", str(seed_png), "--frames", "1", "--out", str(out)]) == 0
    config = load_config(model / "config.yaml")
    fps = config.inference_fps / config.temporal_compression * 4      # TAEHV: 4 frames per latent
    with Image.open(out) as clip:
        assert clip.n_frames == 8
        assert clip.info["duration"] == max(2, round(100 / fps)) * 10  # the model's rate, not a fixed 30 ms
    captured = capsys.readouterr()
    assert "100%|" in captured.err and "1/1" in captured.err           # a tqdm bar, not "frame 1/1" text
    assert f"{fps:g} fps" in captured.out


def test_rollout_cli_checks_the_output_before_any_work(tiny_models_dir, tmp_path, capsys, monkeypatch):
    import worldengine.engine

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(worldengine.engine, "load_engine", no_loading)
    model = tiny_models_dir / "waypoint" / "small-wp15"
    assert cli_main(["rollout", str(model), "--out", str(tmp_path / "clip.avi")]) == 2
    assert "unknown output type '.avi'" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "av", None)        # PyAV not installed
    assert cli_main(["rollout", str(model), "--out", str(tmp_path / "clip.mp4")]) == 2
    assert "comfyui-waypoint[video]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_rollout_cli_help_explains_every_option():
    from worldengine.cli import build_parser
    rollout = build_parser()._subparsers._group_actions[0].choices["rollout"]
    for action in rollout._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help text"
        if action.default not in (None, False) and action.dest not in ("help", "checkpoint"):
            assert "%(default)s" in action.help, f"{action.option_strings} does not show its default"
    text = rollout.format_help()
    assert "fp8" in text and "seed.png" in text and "walks forward" in text


def test_rollout_cli_falls_back_in_one_line(tmp_path, capsys, monkeypatch):
    import worldengine.hub as hub
    if not (hub.TOY_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"the toy world is not shipped at {hub.TOY_MODEL_DIR}")

    def offline(source, models_dir=None):
        if source == hub.DEFAULT_MODEL:
            raise hub.WaypointError("could not download (ConnectError: ...)\nmany more lines from the Hub")
        return hub.Path(source)

    monkeypatch.setattr(hub, "resolve_model_folder", offline)
    out = tmp_path / "out" / "toy.gif"
    assert cli_main(["rollout", "--frames", "1", "--out", str(out), "--models-dir", str(tmp_path / "m")]) == 0
    printed = capsys.readouterr().out.splitlines()
    note = printed[0]
    assert "could not download (" not in "\n".join(printed) and "Hub" not in "\n".join(printed)
    for needed in ("toy world", "config.yaml", "model.safetensors", "taehv1_5.safetensors",
                   str(tmp_path / "m" / "Overworld--Waypoint-1.5-1B-360P")):
        assert needed in note
    with Image.open(out) as clip:
        assert clip.n_frames == 2 and clip.info["duration"] == 70    # toy world: 15 fps, 1 frame per step


def test_rollout_cli_reports_bad_input(tiny_models_dir, seed_png, tmp_path, capsys):
    model = tiny_models_dir / "waypoint" / "small-wp15"
    assert cli_main(["rollout", str(model), "--seed-image", str(seed_png), "--frames", "1", "--fit", "error",
                     "--out", str(tmp_path / "x")]) == 2
    assert "the image is 160x90 (16:9) but the model takes 2.00:1 at 128x64; choose" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "waypoint-control-track/1", "frames": [{"buttons": [999]}]}')
    assert cli_main(["rollout", str(model), "--controls", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "999" in capsys.readouterr().err
    assert cli_main(["rollout", str(tmp_path / "nowhere"), "--out", str(tmp_path / "z")]) == 2


def test_rollout_cli_waypoint1_with_prompt(tiny_models_dir, seed_png, tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    from worldengine.synthetic.prompt import write_tiny_umt5

    encoder = write_tiny_umt5(tmp_path / "umt5")          # width 32 = tiny Waypoint-1's prompt_embedding_dim
    model = tiny_models_dir / "waypoint" / "tiny-wp1"
    runs = {}
    for prompt in ("a foggy forest at dawn", "a neon city street in the rain"):
        out = tmp_path / prompt.split()[2]
        assert cli_main(["rollout", str(model), "--seed-image", str(seed_png), "--frames", "2", "--out", str(out),
                         "--prompt", prompt, "--prompt-encoder", str(encoder)]) == 0
        runs[prompt] = read_pngs(out)
    forest, city = runs.values()
    assert forest.shape[0] == 1 + 2                       # Waypoint-1: one frame per latent
    assert np.array_equal(forest[0], city[0])             # same seed frame; the prompt steers what follows
    assert not np.array_equal(forest[1:], city[1:])


def test_rollout_cli_toy_world(seed_png, tmp_path):
    from worldengine.hub import TOY_MODEL_DIR
    if not (TOY_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"the toy world is not shipped at {TOY_MODEL_DIR}")
    out = tmp_path / "toy"
    assert cli_main(["rollout", str(TOY_MODEL_DIR), "--frames", "3", "--out", str(out)]) == 0
    frames = read_pngs(out)
    per_latent = (frames.shape[0]) // 4                   # seed latent + 3 steps
    assert frames.shape[0] == 4 * per_latent and frames.std() > 1


def test_replay_cli_waypoint15_oracle(tmp_path):
    from oracles import ORACLES
    from safetensors.torch import load_file
    if not (ORACLES / "wp15_tiny").is_dir():
        pytest.skip(f"shared oracles not found at {ORACLES}")
    out = tmp_path / "latents.safetensors"
    assert cli_main(["replay", str(ORACLES / "wp15_tiny"), str(ORACLES / "wp15_fp32_30f.inputs.safetensors"),
                     "--out", str(out)]) == 0
    expected = load_file(str(ORACLES / "wp15_fp32_30f.expected.safetensors"))["latents"]
    assert (load_file(str(out))["latents"] - expected.float()).abs().max() < 1e-4


@pytest.mark.parametrize("preset", ["tiny", "tiny-wp1", "toyworld"])
def test_bench_cli_on_each_model_family(preset, tmp_path):
    from worldengine.synthetic.presets import PRESETS
    if preset not in PRESETS:
        pytest.skip("the toy world is not shipped")
    out = tmp_path / "bench.json"
    assert cli_main(["bench", "--preset", preset, "--frames", "1", "--warmup", "0", "--json", str(out)]) == 0
    run = json.loads(out.read_text())["runs"]["run"]
    assert run["frames"] == 1 and run["latent_fps"] > 0


def test_replay_cli_toy_world(tmp_path):
    """An oracle-format inputs file made from a toy-world rollout replays to the same latents."""
    import torch
    from safetensors.torch import load_file, save_file

    from worldengine.cli.replay import ORACLE_FORMAT
    from worldengine.engine import load_engine
    from worldengine.hub import TOY_MODEL_DIR
    if not (TOY_MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"the toy world is not shipped at {TOY_MODEL_DIR}")
    engine = load_engine(TOY_MODEL_DIR, quant="none", compile=False)
    generator = torch.Generator().manual_seed(5)
    seed = torch.randn(1, *engine.config.latent_shape, generator=generator)
    noise = torch.randn(3, *engine.config.latent_shape, generator=generator)
    controls = [Controls.from_keys(["W"]), Controls.from_keys(["A"], mouse=(0.2, 0.0)), Controls()]
    session = engine.new_session()
    session.append_latents(seed)
    expected = torch.stack([session.step(c, noise=n) for c, n in zip(controls, noise)])
    inputs = tmp_path / "inputs.safetensors"
    save_file({"seed_latents": seed, "noise": noise}, str(inputs),
              metadata={"format": ORACLE_FORMAT, "controls": json.dumps([c.to_json() for c in controls])})
    out = tmp_path / "latents.safetensors"
    assert cli_main(["replay", str(TOY_MODEL_DIR), str(inputs), "--out", str(out)]) == 0
    assert torch.allclose(load_file(str(out))["latents"], expected, atol=1e-5)
