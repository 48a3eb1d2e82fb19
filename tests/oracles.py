"""Where the shared parity oracles live, and a pytest skip when they are absent."""
from pathlib import Path

import pytest

ORACLES = Path(__file__).resolve().parents[1].parent / "shared" / "oracles"


def oracle_path(name: str) -> Path:
    path = ORACLES / name
    if not path.exists():
        pytest.skip(f"parity oracle {path} is absent (expected ../shared/oracles next to the repo)")
    return path


def oracle_reference(name: str) -> dict:
    """The oracle's reference outputs (``<name>/reference.safetensors``) as CPU tensors, or a skip."""
    from safetensors.torch import load_file

    path = oracle_path(name) / "reference.safetensors"
    if not path.is_file():
        pytest.skip(f"parity oracle {path} is absent")
    return load_file(str(path))


def quantized_rollout_errors(quant: str, frames: int = 100):
    """Per-frame relative RMS error [frames] of a ``quant`` rollout of the wp15_tiny oracle checkpoint
    against the float32 engine (float32 activations), plus the quantized engine. Both start from the
    wp15_fp32_30f seeds and cycle its controls with the same noise; run on one thread."""
    import torch

    from worldengine.quant.select import one_thread
    from worldengine.engine import load_engine
    from worldengine.cli.replay import read_rollout_inputs

    tensors, metadata = read_rollout_inputs(oracle_path("wp15_fp32_30f.inputs.safetensors"))

    def rollout(quant):
        engine = load_engine(oracle_path("wp15_tiny"), dtype=torch.float32, quant=quant)
        session = engine.new_session()
        for latent, controls in zip(tensors["seed_latents"], metadata["seed_controls"]):
            session.append_latent(latent, controls)
        generator = torch.Generator().manual_seed(0)
        controls = metadata["controls"]
        latents = [session.step(controls[i % len(controls)], generator=generator) for i in range(frames)]
        return engine, torch.stack(latents)

    with one_thread():
        (_, reference), (engine, quantized) = rollout(None), rollout(quant)
    return (quantized - reference).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1), engine
