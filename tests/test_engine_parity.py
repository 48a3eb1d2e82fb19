"""Parity with Overworld's reference outputs (../shared/oracles), through the API and the replay CLI."""
import pytest
import torch
from safetensors.torch import load_file

from oracles import oracle_path
from worldengine import load_engine
from worldengine.cli import main as cli_main
from worldengine.cli.replay import read_rollout_inputs, replay

CASES = [  # (oracle, checkpoint, dtype, max abs bound)
    ("wp15_fp32_30f", "wp15_tiny", "float32", 1e-4),
    ("wp1_fp32_12f", "wp1_tiny", "float32", 1e-4),
    ("wp15_bf16_12f", "wp15_tiny", "bfloat16", 0.1),
]


@pytest.mark.parametrize("name,checkpoint,dtype,bound", CASES)
def test_rollout_matches_reference(name, checkpoint, dtype, bound):
    engine = load_engine(oracle_path(checkpoint), dtype=dtype)
    tensors, metadata = read_rollout_inputs(oracle_path(f"{name}.inputs.safetensors"))
    expected = load_file(oracle_path(f"{name}.expected.safetensors"))
    roundtrip = int(metadata["state_roundtrip_from"]) if "state_roundtrip_from" in metadata else None
    trace = []
    out = replay(engine, tensors, metadata, trace_first=trace, roundtrip_from=roundtrip)
    error = (out["latents"] - expected["latents"]).abs()
    assert error.max() <= bound, f"{name}: max abs error {error.max():.3g} per frame {error.flatten(1).amax(1)}"
    if dtype == "bfloat16":
        assert error.mean() <= 0.01
    steps_x = torch.stack([x for x, _ in trace])
    steps_v = torch.stack([v for _, v in trace])
    assert (steps_x - expected["first_frame_steps_x"]).abs().max() <= bound
    assert (steps_v - expected["first_frame_steps_v"]).abs().max() <= bound
    assert torch.equal(engine.sigmas.float(), expected["step_sigmas"])
    if roundtrip is not None:
        assert torch.equal(out["roundtrip_latents"], out["latents"][roundtrip:])  # bit-exact branch
        assert (out["roundtrip_latents"] - expected["roundtrip_latents"]).abs().max() <= bound


def test_replay_cli_reproduces_oracle(tmp_path):
    out = tmp_path / "latents.safetensors"
    code = cli_main(["replay", str(oracle_path("wp1_tiny")), str(oracle_path("wp1_fp32_12f.inputs.safetensors")),
                     "--out", str(out)])
    assert code == 0
    expected = load_file(oracle_path("wp1_fp32_12f.expected.safetensors"))["latents"]
    assert (load_file(out)["latents"] - expected).abs().max() <= 1e-4


def test_attention_bias_of_published_layout_is_ignored():
    """wp15_tiny holds different attn_/mlp_cond_head.bias_in: the MLP one must drive both halves."""
    engine = load_engine(oracle_path("wp15_tiny"))
    from worldengine.checkpoint import read_safetensors

    raw = read_safetensors(oracle_path("wp15_tiny") / "model.safetensors")
    mlp_bias = raw["transformer.blocks.1.mlp_cond_head.bias_in"].float()
    assert not torch.equal(mlp_bias, raw["transformer.blocks.1.attn_cond_head.bias_in"].float())
    assert torch.equal(engine.model.blocks[1].bias_in, mlp_bias)
