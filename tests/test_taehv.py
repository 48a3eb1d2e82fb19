"""TAEHV 1.5: oracle parity (streaming + batch), stream state, loader errors, the AE facade."""

from types import SimpleNamespace

import pytest
import torch

from worldengine.ae import find_autoencoder_files, load_autoencoder
from worldengine.cli.bench_ae import measure_decode_fps
from worldengine.errors import WaypointError
from worldengine.ae.taehv import load_taehv, read_state_dict
from worldengine.ae.taehv_causal import TAEHVCausalDecoder, TAEHVCausalEncoder
from oracles import ORACLES, oracle_reference
from worldengine.synthetic.ae import random_taehv_state, write_random_taehv

ORACLE = ORACLES / "taehv_tiny"
TOL = 1e-4


@pytest.fixture(scope="module")
def oracle():
    reference = oracle_reference("taehv_tiny")
    return load_taehv(ORACLE / "taehv1_5.safetensors"), reference


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    return write_random_taehv(tmp_path_factory.mktemp("taehv") / "taehv1_5.safetensors", seed=3)


@pytest.fixture(scope="module")
def random_state():
    return random_taehv_state(seed=1)


@pytest.fixture(scope="module")
def random_model(random_ckpt):
    return load_taehv(random_ckpt)


def _clip(seed: int, frames: int = 12) -> torch.Tensor:
    return torch.rand((frames, 3, 32, 64), generator=torch.Generator().manual_seed(seed))


def test_streaming_encode_matches_oracle(oracle):
    model, ref = oracle
    stream = TAEHVCausalEncoder(model)
    latents = torch.cat([stream.encode(ref["frames"][i:i + 4]) for i in range(0, 12, 4)])
    assert latents.shape == ref["latents"].shape
    assert (latents - ref["latents"]).abs().max() < TOL
    assert stream.frames_seen == 12


def test_streaming_decode_matches_oracle(oracle):
    model, ref = oracle
    stream = TAEHVCausalDecoder(model)
    chunks = [stream.decode(latent) for latent in ref["latents"]]
    assert [c.shape[0] for c in chunks] == [4, 4, 4]
    frames = torch.cat(chunks)
    assert (frames - ref["decoded"]).abs().max() < TOL
    as_uint8 = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    assert (as_uint8.int() - ref["decoded_uint8"].int()).abs().max() <= 1


def test_batch_paths_match_oracle(oracle):
    model, ref = oracle
    assert (model.encode_video(ref["frames"]) - ref["latents"]).abs().max() < TOL
    assert (model.decode_video(ref["latents"]) - ref["decoded"]).abs().max() < TOL


def test_warmup_matters(oracle):
    model, ref = oracle
    cold = model.decode_video(ref["latents"], warmup=False)
    assert cold.shape[0] == 12 - 3  # only the 3 startup frames are dropped
    assert (cold[-4:] - ref["decoded"][-4:]).abs().max() > 1e-3


def test_stream_equals_batch_any_chunking(random_model):
    clip = _clip(0)
    batch = random_model.encode_video(clip)
    stream = TAEHVCausalEncoder(random_model)
    chunked = torch.cat([stream.encode(clip[:8]), stream.encode(clip[8:])])
    assert (chunked - batch).abs().max() < 1e-5
    decoded_batch = random_model.decode_video(batch)
    decoder = TAEHVCausalDecoder(random_model)
    decoded = torch.cat([decoder.decode(batch[:2]), decoder.decode(batch[2])])
    assert decoded.shape == decoded_batch.shape == (12, 3, 32, 64)
    assert (decoded - decoded_batch).abs().max() < 1e-5


def test_decoder_without_warmup_trims_three_frames(random_model):
    latents = random_model.encode_video(_clip(1))
    decoder = TAEHVCausalDecoder(random_model, warmup=False)
    counts = [decoder.decode(latent).shape[0] for latent in latents]
    assert counts == [1, 4, 4]


def test_stream_state_round_trip(random_model):
    clip = _clip(2)
    encoder, decoder = TAEHVCausalEncoder(random_model), TAEHVCausalDecoder(random_model)
    first = encoder.encode(clip[:4])
    decoder.decode(first[0])
    enc_state, dec_state = encoder.get_state(), decoder.get_state()
    assert all(isinstance(v, (torch.Tensor, int)) for v in {**enc_state, **dec_state}.values())
    expected_latent = encoder.encode(clip[4:8])
    expected_frames = decoder.decode(expected_latent[0])

    fresh_encoder, fresh_decoder = TAEHVCausalEncoder(random_model), TAEHVCausalDecoder(random_model)
    fresh_encoder.load_state(enc_state)
    fresh_decoder.load_state(dec_state)
    assert torch.equal(fresh_encoder.encode(clip[4:8]), expected_latent)
    assert torch.equal(fresh_decoder.decode(expected_latent[0]), expected_frames)
    # without the state the next chunk differs (the memory matters)
    assert not torch.allclose(TAEHVCausalEncoder(random_model).encode(clip[4:8]), expected_latent)
    encoder.reset()
    assert encoder.get_state() == {"frames_seen": 0}


def test_bad_state_is_rejected(random_model):
    with pytest.raises(WaypointError, match="memory.1"):
        TAEHVCausalEncoder(random_model).load_state({"memory.1": torch.zeros(1, 64, 2, 2), "frames_seen": 0})
    with pytest.raises(WaypointError, match="frames_to_drop"):
        TAEHVCausalDecoder(random_model).load_state({"warmed": 1, "frames_out": 0})


def test_three_frames_where_four_are_needed(random_model):
    with pytest.raises(WaypointError, match="got 3 frames"):
        TAEHVCausalEncoder(random_model).encode(_clip(3, frames=3))


def test_wrong_channel_counts(random_model):
    with pytest.raises(WaypointError, match=r"\[T, 3, H, W\].*\(4, 4, 32, 64\)"):
        random_model.encode_video(torch.rand(4, 4, 32, 64))
    with pytest.raises(WaypointError, match="32, h, w"):
        TAEHVCausalDecoder(random_model).decode(torch.rand(16, 2, 4))


def test_pth_state_dict_loads_like_safetensors(tmp_path, random_model):
    pth = write_random_taehv(tmp_path / "taehv1_5.pth", seed=3)
    from_pth = load_taehv(pth)
    for (key, a), b in zip(random_model.state_dict().items(), from_pth.state_dict().values()):
        assert torch.equal(a, b), key


class _NotATensor:
    pass


def test_pth_with_non_tensor_objects_is_refused(tmp_path):
    with_string = tmp_path / "strings.pth"
    torch.save({"encoder.0.weight": torch.zeros(1), "note": "hello"}, with_string)
    with pytest.raises(WaypointError, match="'note' is a str"):
        read_state_dict(with_string)
    with_object = tmp_path / "object.pth"
    torch.save({"encoder.0.weight": torch.zeros(1), "extra": _NotATensor()}, with_object)
    with pytest.raises(WaypointError, match="weights_only"):
        load_taehv(with_object)
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(WaypointError, match="holds a list"):
        read_state_dict(not_a_dict)


def test_strict_keys_and_shapes(tmp_path, random_state):
    from safetensors.torch import save_file
    state = dict(random_state)
    bad_shape = dict(state, **{"encoder.17.weight": torch.zeros(16, 64, 3, 3)})
    save_file(bad_shape, str(tmp_path / "shape.safetensors"))
    with pytest.raises(WaypointError, match=r"'encoder.17.weight' has shape \(16, 64, 3, 3\).*\(32, 64, 3, 3\)"):
        load_taehv(tmp_path / "shape.safetensors")
    missing = {k: v for k, v in state.items() if k != "decoder.22.bias"}
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(WaypointError, match="missing key 'decoder.22.bias'"):
        load_taehv(tmp_path / "missing.safetensors")
    save_file(dict(state, extra=torch.zeros(1)), str(tmp_path / "extra.safetensors"))
    with pytest.raises(WaypointError, match="unexpected key 'extra'"):
        load_taehv(tmp_path / "extra.safetensors")


def test_patch_tgrow_keeps_last_rows(tmp_path, random_state):
    from safetensors.torch import save_file
    state = dict(random_state)
    real = state["decoder.7.conv.weight"]  # TGrow stride 1: [256, 256, 1, 1]
    state["decoder.7.conv.weight"] = torch.cat([torch.full_like(real, 9.0), real])  # a stride-2 checkpoint
    save_file(state, str(tmp_path / "taehv1_5.safetensors"))
    model = load_taehv(tmp_path / "taehv1_5.safetensors")
    assert torch.equal(model.decoder[7].conv.weight, real)


def test_facade_finds_files_and_streams(tmp_path, random_ckpt):
    folder = tmp_path / "model"
    (folder / "taehv").mkdir(parents=True)
    (folder / "taehv" / "taehv1_5.safetensors").symlink_to(random_ckpt)
    config = SimpleNamespace(uses_taehv=True, latent_shape=(32, 2, 4), ae_uri="Overworld-Models/taehv1_5")
    assert find_autoencoder_files(folder, config).kind == "taehv"
    ae = load_autoencoder(folder, config)
    assert (ae.frames_per_latent, ae.pixel_size, ae.output_size) == (4, (32, 64), (32, 64))
    stream = ae.codec()
    clip = _clip(4, frames=8)
    latents = stream.encode(clip)
    assert latents.shape == (2, 32, 2, 4)
    assert torch.equal(latents, ae.model.encode_video(clip))
    frames = stream.decode(latents[0])
    assert frames.shape == (4, 3, 32, 64)
    state = stream.get_state()
    assert {"encoder.frames_seen", "decoder.frames_to_drop", "decoder.warmed"} <= set(state)
    other = ae.codec()
    other.load_state(state)
    assert torch.equal(other.decode(latents[1]), stream.decode(latents[1]))
    with pytest.raises(WaypointError, match="choose a fit mode"):
        stream.encode(torch.rand(4, 3, 64, 64))
    assert stream.encode(torch.rand(4, 3, 64, 64), fit="crop").shape == (1, 32, 2, 4)


def test_facade_missing_files_say_where(tmp_path):
    config = SimpleNamespace(uses_taehv=True, latent_shape=(32, 16, 32), ae_uri="Overworld-Models/taehv1_5")
    with pytest.raises(WaypointError, match=r"taehv1_5.safetensors.*Overworld-Models/taehv1_5"):
        load_autoencoder(tmp_path, config)


def test_measure_decode_fps_counts_frames(random_model, random_ckpt):
    ae = load_autoencoder(random_ckpt.parent, latent_hw=(2, 4))
    result = measure_decode_fps(ae, n_latents=2)
    assert result["frames"] == 8 and result["frames_per_s"] > 0
