"""Waypoint-1 prompt encoder: a tiny random UMT5 + tiny tokenizer built on the fly (no network)."""


import pytest
from oracles import ORACLES
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from worldengine.errors import WaypointError  # noqa: E402
from worldengine.prompt_encoder import (DEFAULT_PROMPT, PromptEncoder,  # noqa: E402
                                        resolve_encoder_folder)
from worldengine.synthetic.prompt import CORPUS, write_tiny_umt5  # noqa: E402

MAX_LEN = 16
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_tiny_umt5(tmp_path_factory.mktemp("tiny_umt5"))


@pytest.fixture()
def encoder(tiny_folder):
    return PromptEncoder.from_pretrained(tiny_folder, max_length=MAX_LEN)


def test_shapes_mask_and_zero_padding(encoder):
    emb, pad = encoder.encode("a foggy forest at dawn")
    assert emb.shape == (MAX_LEN, 32) and emb.dtype == torch.float32
    assert pad.shape == (MAX_LEN,) and pad.dtype == torch.bool
    n_real = int((~pad).sum())
    assert 2 <= n_real < MAX_LEN
    assert pad[n_real:].all() and not pad[:n_real].any()  # right padding
    assert torch.count_nonzero(emb[pad]) == 0
    assert (emb[~pad].abs().sum(dim=-1) > 0).all()


def test_matches_reference_protocol(encoder, tiny_folder):
    """Same numbers as tokenizer(max_length padding) -> UMT5EncoderModel -> × mask."""
    text = "a desert canyon with red rocks"
    tok = transformers.AutoTokenizer.from_pretrained(str(tiny_folder))
    model = transformers.UMT5EncoderModel.from_pretrained(str(tiny_folder)).eval()
    batch = tok([text], padding="max_length", truncation=True, max_length=MAX_LEN,
                return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    expected = hidden * batch["attention_mask"][..., None]
    emb, pad = encoder.encode(text)
    torch.testing.assert_close(emb, expected[0], rtol=0, atol=0)
    assert torch.equal(pad, batch["attention_mask"][0] == 0)


def test_prompts_differ_and_cache_reproduces(encoder):
    a1, _ = encoder.encode("a snowy mountain village at night")
    b, _ = encoder.encode("an underwater cave with glowing plants")
    assert not torch.allclose(a1, b)
    a1.add_(1.0)  # callers mutating a result must not corrupt the cache
    a2, _ = encoder.encode("a snowy mountain village at night")
    assert len(encoder._cache) == 2
    assert not torch.equal(a1, a2)
    a3, _ = encoder.encode("a snowy mountain village at night")
    assert torch.equal(a2, a3)


def test_default_prompt_and_truncation(encoder):
    default, _ = encoder.encode(None)
    explicit, _ = encoder.encode(DEFAULT_PROMPT)
    assert torch.equal(default, explicit)
    blank, _ = encoder.encode("   ")
    assert torch.equal(blank, explicit)
    long_emb, long_pad = encoder.encode(" ".join(CORPUS))
    assert long_emb.shape == (MAX_LEN, 32) and not long_pad.any()


def test_cache_is_bounded(tiny_folder):
    enc = PromptEncoder.from_pretrained(tiny_folder, max_length=MAX_LEN, cache_size=2)
    for text in CORPUS[:4]:
        enc.encode(text)
    assert len(enc._cache) == 2


def test_missing_folder_and_offline_repo_raise_waypoint_error(tmp_path):
    with pytest.raises(WaypointError, match="not found"):
        resolve_encoder_folder(tmp_path / "nope")
    with pytest.raises(WaypointError, match="no config.json"):
        PromptEncoder.from_pretrained(tmp_path)
    with pytest.raises(WaypointError, match="hub"):
        resolve_encoder_folder("overworld-test/definitely-not-here", local_files_only=True)
    with pytest.raises(WaypointError, match="must be a string"):
        PromptEncoder(None, torch.nn.Linear(1, 1)).encode(3)


def test_models_dir_lookup(tiny_folder):
    found = resolve_encoder_folder(tiny_folder.name, models_dir=tiny_folder.parent)
    assert found == tiny_folder.parent / tiny_folder.name
    with pytest.raises(WaypointError, match="not found"):
        resolve_encoder_folder("not_a_model", models_dir=tiny_folder.parent)


# --- Waypoint-1 text-conditioned rollout (tiny wp1 oracle checkpoint + tiny UMT5, P = 32) ---

@pytest.fixture(scope="module")
def wp1_engine(request):
    engine_mod = pytest.importorskip("worldengine.engine")
    folder = ORACLES / "wp1_tiny"
    if not folder.is_dir():
        pytest.skip(f"wp1_tiny oracle checkpoint not found at {folder}")
    return engine_mod.load_engine(folder)


def _rollout(engine, encoder, prompts: list[str], frames: int = 2) -> torch.Tensor:
    """Set prompts[0], seed one latent, then step; prompts[i] (if given) is set before step i."""
    from worldengine import Controls
    session = engine.new_session()
    gen = torch.Generator().manual_seed(7)
    session.set_prompt(encoder.encode(prompts[0])[0])
    session.append_latent(torch.randn(engine.config.latent_shape, generator=gen))
    out = []
    for i in range(frames):
        if 0 < i < len(prompts) and prompts[i] is not None:
            session.set_prompt(encoder.encode(prompts[i])[0])
        out.append(session.step(Controls(mouse=(0.1, 0.0)), generator=gen))
    assert session.frame_index == frames + 1
    return torch.stack(out)


def test_wp1_rollout_follows_prompt(wp1_engine, encoder):
    assert wp1_engine.config.prompt_embedding_dim == encoder.embedding_dim
    forest = _rollout(wp1_engine, encoder, ["a foggy forest at dawn"], frames=1)
    city = _rollout(wp1_engine, encoder, ["a neon city street in the rain"], frames=1)
    again = _rollout(wp1_engine, encoder, ["a foggy forest at dawn"], frames=1)
    assert torch.equal(forest, again)
    assert (forest - city).abs().max() > 1e-3


def test_wp1_prompt_changes_mid_rollout_without_reset(wp1_engine, encoder):
    steady = _rollout(wp1_engine, encoder, ["a foggy forest at dawn"])
    switched = _rollout(wp1_engine, encoder, ["a foggy forest at dawn",
                                              "a neon city street in the rain"])
    assert torch.equal(steady[:1], switched[:1])  # same world until the caption changes
    assert (steady[1] - switched[1]).abs().max() > 1e-3
