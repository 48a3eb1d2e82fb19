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
