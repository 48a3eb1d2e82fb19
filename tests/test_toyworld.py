"""Toy world: renderer, patch autoencoder, training forward == engine inference, shipped model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from worldengine.quant.select import one_thread

from tools.toyworld.metrics import horizontal_shift, turn_response
from tools.toyworld.render import KEY_W, World
from tools.toyworld.seqmodel import ClipForward, inference_to_canonical
from tools.toyworld.spec import MODEL_DIR, TOY_CONFIG
from worldengine.checkpoint import to_inference_layout
from worldengine.config import config_from_dict
from worldengine.controls import Controls
from worldengine.engine import WorldEngine, build_model
from worldengine.errors import WaypointError
from worldengine.model import WaypointDiT
from worldengine.ae.toy import ToyPatchAE, load_toy_ae


def test_renderer_turn_left_moves_scene_right_and_w_walks():
    world = World(3)
    first = world.render()
    assert first.shape == (3, 64, 128) and first.dtype == np.float32 and 0 <= first.min() <= first.max() <= 1
    world.step([], -0.6)                      # turn left: content moves right on screen
    assert horizontal_shift(first, world.render()) >= 4
    world.step([], 1.2)                       # net turn right
    assert horizontal_shift(first, world.render()) <= -4
    before = (world.player.x, world.player.y)
    world.step([KEY_W], 0.0)
    assert np.hypot(world.player.x - before[0], world.player.y - before[1]) > 0.05


def test_toy_ae_round_trip_and_file(tmp_path):
    frames = torch.from_numpy(np.stack([World(s).render() for s in range(6)]))
    ae = ToyPatchAE.fit(frames, patch=8, channels=16)
    latents = ae.encode(frames)
    assert latents.shape == (6, 16, 8, 16)
    assert ((ae.decode(latents) - frames) ** 2).mean() < 2e-3        # > 27 dB on its own frames
    ae.save(tmp_path / "toy_ae.safetensors")
    loaded = load_toy_ae(tmp_path / "toy_ae.safetensors")
    torch.testing.assert_close(loaded.encode(frames), latents)
    with pytest.raises(WaypointError, match="toy AE encodes"):
        loaded.encode(frames[:, :, :32])
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(WaypointError, match="bad.safetensors"):
        load_toy_ae(tmp_path / "bad.safetensors")


def test_clip_forward_matches_engine_kv_cache_inference():
    """The training forward over a clip equals L single-frame engine passes with the ring cache."""
    torch.manual_seed(0)
    config = config_from_dict({**TOY_CONFIG, "local_window": 3, "global_window": 4})
    model = WaypointDiT(config)
    model.denoise_step_emb.freq = torch.logspace(0, -1, 256, base=10000.0)
    for parameter in model.parameters():
        if parameter.ndim:
            torch.nn.init.normal_(parameter, std=0.1)
    length = 7
    clean, noisy = torch.randn(2, 1, length, *config.latent_shape)
    sigma_index = torch.randint(0, 4, (length,))
    sigma = torch.tensor(config.scheduler_sigmas)[sigma_index][None]
    controls = [Controls.from_keys(["W"] if i % 2 else ["A"], mouse=(0.2 * i - 0.5, 0.0)) for i in range(length)]
    ctrl = torch.stack([c.to_vector(config.n_buttons, torch.float32) for c in controls])[None]
    with torch.no_grad():
        clip = ClipForward(model, length)(clean, noisy, sigma, ctrl, 0)
    state = to_inference_layout(inference_to_canonical(model.state_dict(), config), config)
    session = WorldEngine(config, build_model(config, state, "cpu", torch.float32)).new_session()
    for i in range(length):
        velocity = session._run(noisy[0, i], int(sigma_index[i]), session._frame_inputs(controls[i]))
        torch.testing.assert_close(velocity, clip[0, i], atol=1e-4, rtol=1e-4)
        session.append_latent(clean[0, i], controls[i])


@pytest.fixture(scope="module")
def shipped():
    if not (MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"no trained toy model at {MODEL_DIR}")
    from tools.toyworld.metrics import load_toy

    with one_thread():  # the runner is shared; one thread keeps this test predictable
        yield load_toy(MODEL_DIR)


def test_shipped_model_turns_the_right_way(shipped):
    engine, ae = shipped
    assert engine.config.model_type == "waypoint-1.5" and engine.config.latent_shape == (8, 8, 16)
    left = turn_response(engine, ae, -0.5, frames=6)
    right = turn_response(engine, ae, 0.5, frames=6)
    assert left["renderer_px_per_frame"] > 3 and right["renderer_px_per_frame"] < -3
    assert left["model_px_per_frame"] > 1.0, left
    assert right["model_px_per_frame"] < -1.0, right
