"""Folders the pack ships beside the engine (a leaf module: anything may import it)."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The offline world this pack ships (trained by tools/toyworld), used when the default model is absent.
TOY_MODEL_DIR = REPO_ROOT / "models" / "toyworld"
