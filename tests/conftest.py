"""Shared test fixtures: repository paths, oracles, tiny model folders. Keep this generic; put
fixtures that only one test file needs in that file."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Small Waypoint-1.5 geometry: 2x4 tokens (latent 32x4x8, frames 64x128) keeps the real-size
# TAEHV fast on a 2-core CPU while exercising every code path of the 360P model.
SMALL_WP15 = {"channels": 32, "height": 2, "width": 4, "tokens_per_frame": 8}


@pytest.fixture(autouse=True, scope="session")
def _session_kernel_store(tmp_path_factory):
    """Kernel verdicts (worldengine.quant.select) persist on disk; a test session keeps its own store, so
    tests that swap kernels never write the user's and never read choices another run measured."""
    import os
    previous = os.environ.get("WAYPOINT_KERNEL_CACHE")
    os.environ["WAYPOINT_KERNEL_CACHE"] = str(tmp_path_factory.mktemp("kernels") / "verdicts.json")
    yield
    if previous is None:
        os.environ.pop("WAYPOINT_KERNEL_CACHE", None)
    else:
        os.environ["WAYPOINT_KERNEL_CACHE"] = previous


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def oracles_dir() -> Path:
    from oracles import oracle_path

    return oracle_path("")


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    """A models folder holding `waypoint/` with tiny random models (built once per test session):
    `tiny-wp15` (oracle size, 360P-style 256x512 frames), `small-wp15` (latent 8x16, 128x256
    frames), `tiny-wp1` (Waypoint-1 with a narrow AE), `no-ae-wp15` (no autoencoder files)."""
    import shutil

    from worldengine.synthetic import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("models")
    waypoint = root / "waypoint"
    write_tiny_checkpoint(waypoint / "tiny-wp15", model_type="waypoint-1.5")
    # same random TAEHV (writing one takes seconds), smaller DiT geometry
    write_tiny_checkpoint(waypoint / "small-wp15", model_type="waypoint-1.5", with_ae=False, **SMALL_WP15)
    shutil.copy(waypoint / "tiny-wp15" / "taehv1_5.safetensors", waypoint / "small-wp15")
    write_tiny_checkpoint(waypoint / "tiny-wp1", model_type="waypoint-1")
    write_tiny_checkpoint(waypoint / "no-ae-wp15", model_type="waypoint-1.5", with_ae=False)
    return root


@pytest.fixture
def without_nudenet(monkeypatch):
    """Makes `import nudenet` fail as on an install without the optional `[safety]` extra."""
    import builtins
    real_import = builtins.__import__

    def refuse_nudenet(name, *args, **kwargs):
        if name == "nudenet":
            raise ImportError("No module named 'nudenet'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", refuse_nudenet)
