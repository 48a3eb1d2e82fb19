"""Compiled artifacts on disk, beside the models: `torch.compiler` cache artifacts and AOTInductor packages.

Both live in ``<models folder>/.cache/compile/`` (``*.bin``: `CompileCache`; ``*.pt2``: the packages of
`worldengine.compile_aot`), keyed by what makes them valid. `cache_size` shows what is kept there and
`clear_cache` removes it (a later start compiles again).
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
from pathlib import Path

import torch

LOG = logging.getLogger("worldengine")
ARTIFACT_PATTERNS = ("*.bin", "*.pt2")


class CompileCache:
    """`torch.compiler` cache artifacts of one engine, in ``<models folder>/.cache/compile/``.

    The file name holds a hash of what makes the artifacts valid: model fingerprint, device kind and
    capability (GPU name + compute capability, or the CPU's vector ISA), dtype, quant, CUDA graphs and
    the torch version. `load()` feeds them to inductor's caches before compiling (a second start
    skips the slow codegen); `save()` writes them after a successful compile. Failures only log.
    """

    def __init__(self, models_dir: Path, name: str, parts: dict):
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.path = Path(models_dir) / ".cache" / "compile" / f"{name}-{digest}.bin"

    @classmethod
    def for_engine(cls, engine, quant: str, cuda_graphs: bool) -> CompileCache | None:
        if engine.folder is None or not hasattr(torch.compiler, "save_cache_artifacts"):
            return None
        device = torch.device(engine.device)
        capability = ([torch.cuda.get_device_name(device), torch.cuda.get_device_capability(device)]
                      if device.type == "cuda" else [platform.machine(), torch.backends.cpu.get_cpu_capability()])
        parts = {"model": engine.fingerprint, "device": device.type, "capability": capability,
                 "dtype": str(engine.dtype), "quant": quant, "cuda_graphs": cuda_graphs, "torch": torch.__version__}
        return cls(Path(engine.folder).parent, Path(engine.folder).name, parts)

    def load(self) -> None:
        if self.path.is_file():
            try:
                torch.compiler.load_cache_artifacts(self.path.read_bytes())
                LOG.info("[worldengine] compile cache: loaded %s (%s)", self.path, _size_text(self.path))
            except Exception as err:  # noqa: BLE001 - a stale or foreign file only costs a full compile
                LOG.warning("[worldengine] compile cache %s not usable (%s); compiling from scratch", self.path, err)

    def save(self) -> None:
        try:
            artifacts = torch.compiler.save_cache_artifacts()
            if artifacts is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".partial")
            partial.write_bytes(artifacts[0])
            partial.replace(self.path)
            total, files = cache_size(self.path.parent.parent.parent)
            LOG.info("[worldengine] compile cache: saved %s; %d file(s), %.1f MB in %s (clear_cache() or delete "
                     "the folder to clear)", self.path.name, files, total / 2**20, self.path.parent)
        except Exception as err:  # noqa: BLE001 - a read-only models folder must not stop play
            LOG.warning("[worldengine] compile cache not saved to %s: %s", self.path, err)


def cache_size(models_dir) -> tuple[int, int]:
    """(bytes, files) of the compiled artifacts under ``models_dir/.cache/compile``."""
    folder = Path(models_dir) / ".cache" / "compile"
    files = [f for pattern in ARTIFACT_PATTERNS for f in folder.glob(pattern) if f.is_file()]
    return sum(f.stat().st_size for f in files), len(files)


def clear_cache(models_dir) -> int:
    """Delete ``models_dir/.cache/compile``; returns the bytes freed."""
    total, _ = cache_size(models_dir)
    shutil.rmtree(Path(models_dir) / ".cache" / "compile", ignore_errors=True)
    return total


def _size_text(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB"
