"""Compile policy: one static-shape graph for the model forward, shared by every session of an engine.

The DiT forward (`WaypointDiT.forward`) is already a pure function of tensors with fixed shapes:
latent, per-sigma modulation, RoPE tables of the frame, the layers' KV buffers (mutated in place:
the frame's K/V go to the tail rows), key masks and the controller embedding. Denoise passes and
the sigma-0 cache pass call it with identical shapes, so a single `torch.compile(fullgraph=True,
dynamic=False)` graph serves both; controls, frame index and sigma only change tensor values, never
guards. Compiled artifacts land in inductor's on-disk cache, so a restart reuses them; beside the
models they are also kept as `torch.compiler` cache artifacts (`CompileCache`).

`BackgroundForward` (the engine's default when compiling) serves frames from the eager forward at
once while a worker thread compiles and warms the graph up on copies of the first call's inputs,
then switches between two frames (why a thread: docs/compile.md). A failed compile leaves eager.

Only what is passed to `torch.compile` here changes; no process-wide torch setting is touched.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import platform
import shutil
import threading
import warnings
from pathlib import Path

import torch
from torch.utils._pytree import tree_map_only

from worldengine import compile_child

LOG = logging.getLogger("worldengine")
COMPILING, COMPILED, EAGER = "eager, compiling…", "compiled", "eager"

CUDA_GRAPH_MODE = "reduce-overhead"


def compile_forward(engine, cuda_graphs: bool | None = None):
    """A drop-in replacement for `engine.model.forward`, compiled once for this engine.

    cuda_graphs: inductor "reduce-overhead" mode (CUDA graphs); default on for a CUDA engine. Forced
    on for a CPU engine it exercises the same wrapper and static-buffer marking while inductor
    itself skips graph capture (CPU tensors). The first call of each new input signature compiles
    (tens of seconds on CPU); afterwards frames, controls, sigmas and sessions reuse the graph.
    """
    device = torch.device(engine.device)
    if cuda_graphs is None:
        cuda_graphs = device.type == "cuda"
    # Inductor's defaults on CPU: "freezing", "max_autotune" and "cpp_wrapper" were each measured on
    # cpu-small (bf16 + int8, 2 threads) and none beat them (docs/benchmarks.md).
    kwargs = {"fullgraph": True, "dynamic": False}
    if cuda_graphs:
        kwargs["mode"] = CUDA_GRAPH_MODE
    compiled = torch.compile(engine.model.forward, **kwargs)

    def forward(x, *args, **kwargs):
        # Seed latents arrive as ordinary tensors while denoise steps create theirs inside
        # inference mode; dynamo guards on that difference, so hand it one kind only (a [C,H,W]
        # copy is cheap) instead of compiling the graph twice.
        if torch.is_inference_mode_enabled() and not x.is_inference():
            x = x.clone()
        if not cuda_graphs:
            return compiled(x, *args, **kwargs)
        # Each replay reuses the graph's output buffer, while callers may keep a velocity across
        # passes (step traces): start a new graph generation and hand out a copy of the [C,H,W] output.
        torch.compiler.cudagraph_mark_step_begin()
        return compiled(x, *args, **kwargs).clone()

    forward.compiled = compiled
    forward.cuda_graphs = cuda_graphs
    return forward


def mark_static_buffers(engine, tensors) -> None:
    """Mark a session's KV and mask buffers as fixed-address graph inputs when `engine` uses CUDA graphs.

    The graph writes each frame's K/V into the KV buffers in place; inductor refuses to capture a
    graph that mutates ordinary inputs ("skipping cudagraphs due to mutated inputs") but accepts
    static ones. Unguarded: another session's buffers make the graph re-record, not recompile.
    """
    if getattr(engine.forward, "cuda_graphs", False):
        for tensor in tensors:
            torch._dynamo.mark_static_address(tensor, guard=False)



def _twin(tensor: torch.Tensor) -> torch.Tensor:
    """A copy with what dynamo guards on kept: shape, strides, dtype, device, inference-ness and static marks."""
    with torch.inference_mode(tensor.is_inference()):
        twin = tensor.clone()
    static = getattr(tensor, "_dynamo_static_input_type", None)
    if static is not None:
        torch._dynamo.mark_static_address(twin, guard=static == "guarded")
    return twin


class BackgroundForward:
    """`engine.forward` that runs eager until a compiled step, prepared in a worker thread, is ready.

    The first call starts the worker on copies of its inputs (the KV buffers are written in place, so
    the worker never touches a live session's). Each calling thread takes the compiled step after its
    own next sigma-0 cache pass, i.e. between two of its frames, never inside one; within `one_path()`
    it does not switch at all. `status` is "eager, compiling…", then "compiled" or
    "eager (compile failed: …)" / "eager (auto: …)"; `wait()` blocks until the worker is done.
    require_faster: switch only if the compiled step measured faster than eager on the warm-up inputs.
    """

    def __init__(self, engine, cuda_graphs: bool | None = None, require_faster: bool = False, cache=None,
                 child: bool | None = None):
        self.engine, self.require_faster, self.cache = engine, require_faster, cache
        cuda = torch.device(engine.device).type == "cuda"
        self.cuda_graphs = cuda if cuda_graphs is None else cuda_graphs
        # CPU: a cold compile runs in a low-priority child first (`worldengine.compile_child`: it keeps
        # the GIL and the cores for the frames being played); CUDA keeps the thread (one GPU context).
        self.child = not cuda if child is None else child
        self.eager, self.compiled, self.status = engine.model.forward, None, COMPILING
        self._ready = False                  # the compiled step is built, warmed up and allowed
        self._path = threading.local()       # per calling thread: .compiled (bool), .pinned (one_path)
        self.compiled_calls = 0              # passes the compiled step ran (tests, bench)
        self._cache_pass_mods = engine.sigma_conditioning[-1].block_mods
        self._thread, self._done = None, threading.Event()

    @property
    def _use_compiled(self) -> bool:
        """Whether this thread's next pass runs the compiled step."""
        return getattr(self._path, "compiled", False)

    @contextlib.contextmanager
    def one_path(self):
        """Every pass this thread runs inside stays on the path it had on entry, or on the compiled
        one when that is ready: entered between two frames (one node run), so all of the run's frames
        come from one path (only a compiled step that fails mid-run falls back to eager)."""
        pinned = getattr(self._path, "pinned", False)
        if not pinned:
            self._path.compiled = self._use_compiled or self._ready
        self._path.pinned = True
        try:
            yield self
        finally:
            self._path.pinned = pinned
            if not pinned and self._ready:
                self._path.compiled = True   # the end of a run is a frame edge too

    def __call__(self, x, block_mods, *args):
        if self._thread is None:
            inputs = tree_map_only(torch.Tensor, _twin, (x, block_mods, *args))
            self._thread = threading.Thread(target=self._prepare, args=(inputs, torch.is_inference_mode_enabled()),
                                            name="waypoint-compile", daemon=True)
            self._thread.start()
        if self._use_compiled and self._ready:
            try:
                out = self.compiled(x, block_mods, *args)
                self.compiled_calls += 1
                return out
            except Exception as err:  # noqa: BLE001 - e.g. graph capture failing on this GPU: keep playing
                self._fail(err)       # (a rerun is safe: a pass only rewrites this frame's KV tail)
        out = self.eager(x, block_mods, *args)
        if self._ready and block_mods is self._cache_pass_mods and not getattr(self._path, "pinned", False):
            self._path.compiled = True   # this thread's next call starts a new frame
            LOG.info("[worldengine] switched to the compiled step")
        return out

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker has finished (or failed); False on timeout or before the first call."""
        return self._thread is not None and self._done.wait(timeout)

    def _prepare(self, inputs, inference: bool):
        try:
            key = self._prefill(inputs, inference)
            if self.cache is not None:
                self.cache.load()
            self.compiled = compile_forward(self.engine, self.cuda_graphs)
            with torch.inference_mode(inference):
                self.compiled(*inputs)                     # compiles; a second call replays what it built
                self.compiled(*inputs)
            with torch.inference_mode(inference):
                slower = self._slower_than_eager(inputs) if self.require_faster else None
            if self.cache is not None:
                self.cache.save()
            if key is not None:
                compile_child.mark_warm(key)
            if slower:
                self.status = f"{EAGER} (auto: compiled not faster here: {slower})"
            else:
                self.status, self._ready = COMPILED, True
            LOG.info("[worldengine] compile finished: %s", self.status)
        except Exception as err:  # noqa: BLE001 - any compile failure leaves the engine on eager
            self._fail(err)
        finally:
            self._done.set()

    def _prefill(self, inputs, inference: bool) -> str | None:
        """Fill inductor's caches from a child process unless they are known warm; the cache key."""
        if not self.child:
            return None
        key = compile_child.cache_key(self.engine, inputs, self.cuda_graphs)
        if self.cache is not None and self.cache.path.is_file():
            return key   # its artifacts are loaded next: a warm compile here is quicker than a child
        LOG.info("[worldengine] compile cache: %s", compile_child.prefill(self.engine, inputs, inference,
                                                                          self.cuda_graphs, key))
        return key

    def _slower_than_eager(self, inputs) -> str | None:
        from worldengine.quant.select import best_time
        compiled_s = best_time(lambda: self.compiled(*inputs))
        eager_s = best_time(lambda: self.eager(*inputs))
        return None if compiled_s < eager_s else f"{compiled_s * 1e3:.1f} vs {eager_s * 1e3:.1f} ms per pass"

    def _fail(self, err: Exception):
        self._ready = False   # every thread: eager from its next pass
        self.status = f"{EAGER} (compile failed: {type(err).__name__}: {str(err).strip()[:200]})"
        warnings.warn(f"torch.compile failed, running eager: {type(err).__name__}: {err}", RuntimeWarning)
        LOG.warning("[worldengine] %s", self.status)


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
    def for_engine(cls, engine, quant: str, cuda_graphs: bool) -> "CompileCache | None":
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
    """(bytes, files) of the compile artifacts under ``models_dir/.cache/compile``."""
    files = [f for f in (Path(models_dir) / ".cache" / "compile").glob("*.bin") if f.is_file()]
    return sum(f.stat().st_size for f in files), len(files)


def clear_cache(models_dir) -> int:
    """Delete ``models_dir/.cache/compile``; returns the bytes freed."""
    total, _ = cache_size(models_dir)
    shutil.rmtree(Path(models_dir) / ".cache" / "compile", ignore_errors=True)
    return total


def _size_text(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.1f} MB"
