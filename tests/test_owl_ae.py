"""Waypoint-1 AE: oracle parity, weight-norm folding, the facade, loader errors."""

import shutil
from types import SimpleNamespace

import pytest
import torch

from worldengine.ae import load_autoencoder
from worldengine.errors import WaypointError
from worldengine.images import to_frames, to_uint8
from worldengine.ae.owl import fold_weight_norm, load_owl_ae, read_config
from oracles import ORACLES, oracle_reference
from worldengine.synthetic.ae import write_random_owl_ae

ORACLE = ORACLES / "owlae_tiny"
TOL = 1e-4


@pytest.fixture(scope="module")
def oracle():
    reference = oracle_reference("owlae_tiny")
    return load_owl_ae(ORACLE), reference


def test_encode_matches_oracle(oracle):
    model, ref = oracle
    latent = model.encode(to_frames(ref["image_uint8"]))
    assert latent.shape == (1, 16, 32, 32)
    assert (latent - ref["latent"]).abs().max() < TOL


def test_decode_matches_oracle(oracle):
    model, ref = oracle
    raw = model.decode_raw(ref["latent"][0])
    assert raw.shape == (1, 3, 360, 640)
    assert (raw - ref["decoded"]).abs().max() < TOL
    image = to_uint8(model.decode(ref["latent"]))[0]
    assert (image.int() - ref["decoded_uint8"].int()).abs().max() <= 1


def test_facade_round_trip_matches_oracle(oracle):
    _, ref = oracle
    ae = load_autoencoder(ORACLE)  # no config: whichever AE the folder holds
    assert (ae.kind, ae.frames_per_latent, ae.pixel_size, ae.latent_hw) == ("owl", 1, (360, 640), (32, 32))
    stream = ae.codec()
    latent = stream.encode(to_frames(ref["image_uint8"]))
    assert (latent - ref["latent"]).abs().max() < TOL
    frames = stream.decode(ref["latent"][0])
    assert frames.shape == (1, 3, 360, 640) and 0 <= frames.min() and frames.max() <= 1
    assert (to_uint8(frames)[0].int() - ref["decoded_uint8"].int()).abs().max() <= 1
    assert stream.get_state() == {}
    big = torch.nn.functional.interpolate(to_frames(ref["image_uint8"]), size=(720, 1280), mode="bilinear")
    assert torch.equal(stream.encode(big), ae.model.encode(big))  # 16:9 goes straight in
    with pytest.raises(WaypointError, match="choose a fit mode"):
        stream.encode(big[..., :720])


def test_weight_norm_fold_formula():
    g = torch.tensor([2.0, 0.5]).reshape(2, 1, 1, 1)
    v = torch.arange(1.0, 9.0).reshape(2, 1, 2, 2)
    folded = fold_weight_norm({"c.parametrizations.weight.original0": g,
                               "c.parametrizations.weight.original1": v, "c.bias": torch.zeros(2)}, "test")
    expected = torch.stack([g[i] * v[i] / v[i].norm() for i in range(2)])
    assert set(folded) == {"c.weight", "c.bias"}
    assert torch.allclose(folded["c.weight"], expected)
    with pytest.raises(WaypointError, match="original0"):
        fold_weight_norm({"c.parametrizations.weight.original1": v}, "test")


def test_random_writer_loads_and_decodes(tmp_path):
    folder = write_random_owl_ae(tmp_path / "ae", seed=2)
    ae = load_autoencoder(tmp_path, config=None)  # found in the ae/ subfolder
    assert ae.kind == "owl" and ae.source == folder
    frames = ae.decoder().decode(torch.randn(16, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert frames.shape == (1, 3, 360, 640)
    assert 0.2 < frames.mean() < 0.8 and frames.std() > 0.05  # not collapsed onto the clamp


def test_missing_and_broken_files(tmp_path):
    folder = write_random_owl_ae(tmp_path / "m")
    (folder / "decoder.safetensors").unlink()
    config = SimpleNamespace(uses_taehv=False, latent_shape=(16, 32, 32), ae_uri=None)
    with pytest.raises(WaypointError, match="decoder.safetensors"):
        load_autoencoder(folder, config)
    with pytest.raises(WaypointError, match="decoder.safetensors"):
        load_owl_ae(folder)
    (folder / "decoder_conf.yml").write_text("channels: 3\n")
    with pytest.raises(WaypointError, match="model:"):
        read_config(folder / "decoder_conf.yml")
    (folder / "decoder_conf.yml").write_text("model:\n  channels: 3\n")
    with pytest.raises(WaypointError, match="model.latent_channels"):
        read_config(folder / "decoder_conf.yml")


def test_wrong_shapes_are_named(tmp_path, oracle):
    model, _ = oracle
    with pytest.raises(WaypointError, match=r"\[T, 3, H, W\].*\(1, 4, 360, 640\)"):
        model.encode(torch.rand(1, 4, 360, 640))
    with pytest.raises(WaypointError, match="16, h, w"):
        model.decode(torch.rand(1, 8, 32, 32))
    from safetensors.torch import load_file, save_file
    folder = tmp_path / "bad"
    shutil.copytree(ORACLE, folder)
    state = load_file(str(ORACLE / "decoder.safetensors"))
    state["conv_in.proj.bias"] = torch.zeros(32)
    save_file(state, str(folder / "decoder.safetensors"))
    with pytest.raises(WaypointError, match=r"'conv_in.proj.bias' has shape \(32,\).*\(64,\)"):
        load_owl_ae(folder)


def test_toy_ae_through_facade(tmp_path):
    """The offline toy world's per-frame AE loads through the same facade (found before any other AE)."""
    from worldengine.ae.toy import ToyPatchAE
    clip = torch.rand(8, 3, 64, 128, generator=torch.Generator().manual_seed(0))
    ToyPatchAE.fit(clip, 8, 16).save(tmp_path / "toy_ae.safetensors")
    ae = load_autoencoder(tmp_path, SimpleNamespace(uses_taehv=False, latent_shape=(16, 8, 16), ae_uri=None))
    assert (ae.kind, ae.frames_per_latent, ae.pixel_size, ae.latent_hw) == ("toy", 1, (64, 128), (8, 16))
    stream = ae.codec()
    latents = stream.encode(clip[:2])
    assert latents.shape == (2, 16, 8, 16)
    assert stream.decode(latents[0]).shape == (1, 3, 64, 128)
    assert stream.encode(torch.rand(1, 3, 128, 256)).shape == (1, 16, 8, 16)  # fitted to 64x128
    with pytest.raises(WaypointError, match="do not match"):
        load_autoencoder(tmp_path, SimpleNamespace(uses_taehv=False, latent_shape=(16, 4, 8), ae_uri=None))
