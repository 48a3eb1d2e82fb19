"""Fill inductor's caches in a child process, so the process that plays frames never compiles cold.

A cold compile of cpu-small is minutes of Python (dynamo, AOT autograd, inductor codegen) on this
2-core machine. In a worker thread of the playing process it holds the GIL most of that time, and
every eager op of the frames being played waits for it (each aten call releases and retakes the
GIL); on CPU it also competes for the cores. So `prefill` (called from `BackgroundForward`'s worker
thread, which just waits on the child) runs the same compile in ``python -m worldengine.compile_worker``
at a low CPU priority (nice 10): a rebuilt engine of the same config, dtype
and per-layer quantization kernels, with zero weights (compiled code does not depend on weight
values), called on copies of the first forward's inputs (same shapes, strides, dtypes,
inference-ness, static marks). The child shares the parent's inductor cache folder
(TORCHINDUCTOR_CACHE_DIR), so the parent's own compile afterwards is a cache hit: dynamo tracing and
loading compiled code, seconds instead of minutes.

Costs: a second copy of the weights in memory while the child runs (zeros, the engine's dtype), and
a child start-up (importing torch). Skipped when the caches are known warm: a marker written after
a successful compile under `cache_key` in the inductor cache folder, or the engine's
`torch.compiler` artifacts beside the models (`CompileCache`). A failing child only logs: the
parent compiles in its worker thread as before.

The same child also builds the AOTInductor package of `worldengine.compile_aot` (`build_package`),
which CPU engines try first: loading it needs no compile in the parent at all.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils._pytree import tree_flatten, tree_map_only

LOG = logging.getLogger("worldengine")
CHILD_TIMEOUT_S = 3600.0


def layer_plan(model: torch.nn.Module) -> dict[str, list]:
    """{dotted name: [quantized class name, kernel]} of every quantized linear of `model`; kernel is
    "onednn" / "f32" / "int_mm" for `Int8Linear` on CPU (what `Int8Linear.prepare` chose), else None."""
    from worldengine.quant.base import QuantLinearBase
    plan = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantLinearBase):
            kernel = None
            if hasattr(module, "weight_packed") and module.weight_packed is not None:
                kernel = "onednn"
            elif getattr(module, "f32_gemm", False):
                kernel = "f32"
            elif hasattr(module, "weight_packed"):
                kernel = "int_mm"
            plan[name] = [type(module).__name__, kernel]
    return plan


def attention_plan(engine) -> dict[str, str]:
    """{"dilation x buckets": attention kernel} that `worldengine.attn.choose` set on this engine."""
    return dict(getattr(engine, "options", {}).get("attention") or {})


def _leaf_flags(inputs) -> list:
    """Per tensor leaf of the forward's inputs: [is_inference, dynamo static mark or None]."""
    leaves, _ = tree_flatten(inputs)
    return [[t.is_inference(), getattr(t, "_dynamo_static_input_type", None)] if isinstance(t, torch.Tensor)
            else None for t in leaves]


def cache_key(engine, inputs, cuda_graphs: bool) -> str:
    """What makes compiled code valid for this engine: config, dtype, device and its capability, the
    quantized layers and their kernels, the attention kernels, the inputs' shapes/dtypes/flags, CUDA
    graphs, torch version."""
    device = torch.device(engine.device)
    capability = (torch.cuda.get_device_capability(device) if device.type == "cuda"
                  else torch.backends.cpu.get_cpu_capability())
    leaves, _ = tree_flatten(inputs)
    shapes = [[list(t.shape), list(t.stride()), str(t.dtype)] if isinstance(t, torch.Tensor) else repr(t)
              for t in leaves]
    parts = [engine.config.to_dict(), str(engine.dtype), device.type, capability, layer_plan(engine.model),
             attention_plan(engine), shapes, _leaf_flags(inputs), cuda_graphs, torch.__version__]
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _marker(key: str) -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    return Path(cache_dir()) / "waypoint-warm" / key


def is_warm(key: str) -> bool:
    return _marker(key).is_file()


def mark_warm(key: str) -> None:
    """Record that compiled code for `key` is in inductor's cache (after a successful compile)."""
    try:
        marker = _marker(key)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(torch.__version__)
    except OSError as err:   # a read-only cache folder only costs a child next time
        LOG.warning("[worldengine] compile cache marker not written: %s", err)


def prefill(engine, inputs, inference: bool, cuda_graphs: bool, key: str) -> str:
    """Run the compile in a low-priority child process (blocks the calling worker thread, not the
    GIL). Returns what happened, for the log: "warm", "filled in N s" or "child failed: …"."""
    if is_warm(key):
        return "warm"
    return run_child(engine, inputs, inference, cuda_graphs, {}, "filled")


def build_package(engine, inputs, inference: bool, path: Path) -> str:
    """Build the AOTInductor package of this engine's forward at `path` in the child
    (`worldengine.compile_aot`); returns "built in N s" or "child failed: …"."""
    from worldengine.compile_aot import inlined_tensors
    extra = {"package": str(path), "inlined": inlined_tensors(engine.model)}
    return run_child(engine, inputs, inference, False, extra, "built")


def run_child(engine, inputs, inference: bool, cuda_graphs: bool, extra: dict, verb: str) -> str:
    """``python -m worldengine.compile_worker SPEC`` on a spec of this engine and `inputs` (+ `extra`);
    "<verb> in N s" or "child failed: …"."""
    import time
    with tempfile.TemporaryDirectory(prefix="waypoint-compile-") as folder:
        spec = Path(folder) / "spec.pt"
        with torch.inference_mode(False):   # plain copies: what torch.load(weights_only=True) reads back
            plain = tree_map_only(torch.Tensor, lambda t: t.detach().clone(), inputs)
        torch.save({"config": engine.config.to_dict(), "dtype": str(engine.dtype).removeprefix("torch."),
                    "device": str(engine.device), "plan": layer_plan(engine.model), "attention": attention_plan(engine),
                    "rows_hint": engine.config.tokens_per_frame, "inputs": plain, "flags": _leaf_flags(inputs),
                    "inference": inference, "cuda_graphs": cuda_graphs, "threads": torch.get_num_threads(),
                    **extra}, spec)
        root = str(Path(__file__).resolve().parents[1])   # the folder holding the worldengine package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "worldengine.compile_worker", str(spec)], env=env,
                                  check=False, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"child failed: {type(err).__name__}: {err}"
    if done.returncode:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return f"child failed (exit {done.returncode}): {' | '.join(tail)[:300]}"
    return f"{verb} in {time.perf_counter() - start:.1f} s"
