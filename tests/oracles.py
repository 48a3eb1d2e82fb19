"""Where the shared parity oracles live, and a pytest skip when they are absent."""
from pathlib import Path

import pytest

ORACLES = Path(__file__).resolve().parents[1].parent / "shared" / "oracles"


def oracle_path(name: str) -> Path:
    path = ORACLES / name
    if not path.exists():
        pytest.skip(f"parity oracle {path} is absent (expected ../shared/oracles next to the repo)")
    return path
