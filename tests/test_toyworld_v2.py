"""Toy world version 2: the 256x144 game, the 4-frames-per-latent autoencoder, resumable training state."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tools.toyworld.ckpt import load_training_state, save_training_state
from tools.toyworld.episodes import play, random_actions
from tools.toyworld.evaluate import shift
from tools.toyworld.game import KEY_W, World
from tools.toyworld.recipe import self_generated_context
from tools.toyworld.seqmodel import ClipForward
from tools.toyworld.spec import TOY2_CONFIG
from tools.toyworld.train import new_model
from worldengine.ae.toy import ToyTAE, ToyTAEDecoderStream, load_toy_ae, save_tae
from worldengine.config import config_from_dict
from worldengine.errors import WaypointError
from worldengine.quant.select import one_thread


def test_game_is_16_9_deterministic_and_follows_the_controls():
    first = World(5).render()
    assert first.shape == (3, 144, 256) and first.dtype == np.float32 and 0 <= first.min() <= first.max() <= 1
    np.testing.assert_array_equal(first, World(5).render())
    assert not np.array_equal(first, World(6).render())
    world = World(5)
    world.step([], -0.5)                                   # turn left: the scene moves right
    assert shift(first, world.render(), slice(0, 86), 2) >= 4
    world.step([], 1.0)
    assert shift(first, world.render(), slice(0, 86), 2) <= -4
    before = (world.player.x, world.player.y)
    world.step([KEY_W], 0.0)
    assert np.hypot(world.player.x - before[0], world.player.y - before[1]) > 0.05


def test_metrics_tell_the_versions_apart(tmp_path):
    from tools.toyworld.metrics import is_version_2
    from worldengine.ae.toy import ToyPatchAE

    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    ToyPatchAE.fit(torch.rand(4, 3, 64, 128), patch=8, channels=8).save(tmp_path / "v1" / "toy_ae.safetensors")
    save_tae(ToyTAE(), tmp_path / "v2" / "toy_ae.safetensors")
    assert not is_version_2(tmp_path / "v1") and is_version_2(tmp_path / "v2")


def test_policy_holds_controls_for_whole_latents():
    keys, mouse = random_actions(np.random.default_rng(0), 12)
    assert keys.shape == (12, 4) and mouse.shape == (12,)
    frames = play(World(1), keys[:2], mouse[:2])
    assert frames.shape == (8, 3, 144, 256)


def test_tae_shapes_stream_state_and_file(tmp_path):
    with one_thread():
        torch.manual_seed(0)
        ae = ToyTAE().eval()
        frames = torch.rand(12, 3, 144, 256)
        with torch.no_grad():
            latents = ae.encode(frames)
            assert latents.shape == (3, 16, 9, 16)
            whole = ae.decode_sequence(latents)
        assert whole.shape == (12, 3, 144, 256) and 0 <= whole.min() and whole.max() <= 1
        stream = ToyTAEDecoderStream(ae)
        first = stream.decode(latents[0])
        state = stream.get_state()
        resumed = ToyTAEDecoderStream(ae)
        resumed.load_state(state)
        torch.testing.assert_close(torch.cat([first, resumed.decode(latents[1:])]), whole)
        assert resumed.frames_out == 12
        with pytest.raises(WaypointError, match="4N"):
            ae.encode(frames[:3])
        save_tae(ae, tmp_path / "toy_ae.safetensors")
        loaded = load_toy_ae(tmp_path / "toy_ae.safetensors")
        torch.testing.assert_close(loaded.encode(frames), latents, atol=0.05, rtol=0.05)   # fp16 on disk


def test_training_state_round_trip_keeps_adam_moments(tmp_path):
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    save_training_state(tmp_path / "s.safetensors", model, optimizer, {"steps": 7, "seconds": 1.5})
    other = torch.nn.Linear(4, 3)
    other_opt = torch.optim.AdamW(other.parameters(), lr=1e-2)
    assert load_training_state(tmp_path / "s.safetensors", other, other_opt) == {"steps": 7, "seconds": 1.5}
    torch.testing.assert_close(other.weight, model.weight)
    torch.testing.assert_close(other_opt.state[other.weight]["exp_avg"], optimizer.state[model.weight]["exp_avg"])


def test_self_generated_context_keeps_the_seed_latent():
    with one_thread():
        config = config_from_dict({**TOY2_CONFIG, "d_model": 64, "n_heads": 2, "n_kv_heads": 1, "n_layers": 2})
        clip = ClipForward(new_model(config).eval(), 3)
        x0 = torch.randn(1, 3, *config.latent_shape)
        ctrl = torch.zeros(1, 3, config.n_buttons + 3)
        generator = torch.Generator().manual_seed(0)
        context = self_generated_context(clip, x0, ctrl, 0, 1, torch.tensor(config.scheduler_sigmas), generator, 0.0)
        torch.testing.assert_close(context[:, 0], x0[:, 0])
        assert context.shape == x0.shape and not torch.allclose(context[:, 1:], x0[:, 1:])


def test_engine_runs_a_version_2_folder_at_4_frames_per_latent(tmp_path):
    """A v2 folder (random DiT + random AE) loads through the engine's AE facade: one latent step gives
    4 frames, a single seed image fills one latent, and the decoder stream's state round-trips."""
    from worldengine.cli.rollout import default_track, rollout_frames
    from worldengine.engine import load_engine
    from worldengine.synthetic import write_checkpoint

    with one_thread():
        torch.manual_seed(0)
        write_checkpoint(tmp_path, dict(TOY2_CONFIG))
        save_tae(ToyTAE(), tmp_path / "toy_ae.safetensors")
        engine = load_engine(tmp_path)
        ae = engine.require_autoencoder()
        assert ae.kind == "toy" and ae.frames_per_latent == engine.config.frames_per_latent == 4
        seed = torch.rand(1, 144, 256, 3).permute(0, 3, 1, 2)           # an image file's layout: not contiguous
        frames = rollout_frames(engine, seed, default_track(2))
        assert frames.shape == (12, 144, 256, 3) and frames.dtype == torch.uint8   # seed latent + 2 steps
        codec = ae.codec()
        latents = torch.randn(2, 16, 9, 16)
        first = codec.decode(latents[0])
        resumed = ae.codec()
        resumed.load_state(codec.get_state())
        torch.testing.assert_close(resumed.decode(latents[1]), codec.decode(latents[1]))
        assert first.shape == (4, 3, 144, 256)


def _report(model_psnr, spread, turn_px):
    table = {"model": {"psnr": model_psnr}, "repeat_last": {"psnr": 13.0}}
    reference = {"model": {"psnr": 10.0}, "repeat_last": {"psnr": 12.0}}
    return {"next_frame": {"h128": table}, "reference_next_frame": {"h128": reference},
            "response": {"turn_left": {"model_px_per_frame": turn_px, "game_px_per_frame": 6.0}},
            "drift": {"model_last": {"spread": spread}, "game_last": {"spread": 0.1}, "game_all": {"spread": 0.16}},
            "continuation": {"psnr_frame30_same_world": 15.0, "psnr_frame30_other_world": 11.0}}


def test_acceptance_bars_pass_and_fail_on_the_figures():
    from tools.toyworld.acceptance import verdict

    good = verdict(_report(model_psnr=14.0, spread=0.09, turn_px=5.0))
    assert all(good[name]["pass"] for name in ("psnr_above_repeat_h128", "psnr_above_v1_h128", "gain_above_v1_h128",
                                               "response_turn_left", "spread_last100_vs_game_last100",
                                               "continues_its_scene_frame30"))
    assert not good["spread_last100_vs_game_all"]["pass"]          # 0.09 < 0.8 * 0.16
    bad = verdict(_report(model_psnr=11.0, spread=0.02, turn_px=3.0))
    assert not bad["psnr_above_repeat_h128"]["pass"] and bad["psnr_above_v1_h128"]["pass"]
    assert not bad["gain_above_v1_h128"]["pass"]                    # -2 dB vs v1's -2 dB: not above
    assert not bad["response_turn_left"]["pass"] and bad["response_turn_left"]["ratio"] == pytest.approx(0.5)
    assert not bad["spread_last100_vs_game_last100"]["pass"]
    assert "response_walk_forward" not in bad                      # a section not measured gives no bar
