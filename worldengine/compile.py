"""Compile policy: one static-shape graph for the model forward, shared by every session of an engine.

The DiT forward (`WaypointDiT.forward`) is already a pure function of tensors with fixed shapes:
latent, per-sigma modulation, RoPE tables of the frame, the layers' KV buffers (mutated in place:
the frame's K/V go to the tail rows), key masks and the controller embedding. Denoise passes and
the sigma-0 cache pass call it with identical shapes, so a single `torch.compile(fullgraph=True,
dynamic=False)` graph serves both; controls, frame index and sigma only change tensor values, never
guards. Compiled artifacts land in inductor's on-disk cache, so a restart reuses them; beside the
models they are also kept as `torch.compiler` cache artifacts (`worldengine.compile_cache`).

`BackgroundForward` (the engine's default when compiling) serves frames from the eager forward at
once while a worker thread prepares the compiled step on copies of the first call's inputs, then
switches between two frames (why: docs/compile.md). On CPU that step is an AOTInductor package built
by a child process (`worldengine.compile_aot`), with `torch.compile` in the worker as the fallback;
on CUDA it is `torch.compile` with CUDA graphs. A failed compile leaves eager.

Only what is passed to `torch.compile` here changes; no process-wide torch setting is touched.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import warnings

import torch
from torch.utils._pytree import tree_map_only

from worldengine import compile_aot, compile_child

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



def _twins(tree):
    """`_twin` of every tensor in `tree`, one twin per distinct tensor: inputs that are the same tensor
    (layers sharing one key mask) stay shared, since dynamo guards on that aliasing and a twin set
    without it made the first real call recompile (15 s of one frame on cpu-small, bf16 + int8)."""
    made: dict[int, torch.Tensor] = {}

    def twin(tensor):
        if id(tensor) not in made:
            made[id(tensor)] = _twin(tensor)
        return made[id(tensor)]
    return tree_map_only(torch.Tensor, twin, tree)


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
            inputs = _twins((x, block_mods, *args))
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
            key, self.compiled = None, self._package(inputs, inference) if self.child else None
            packaged = self.compiled is not None
            if not packaged:
                key = self._prefill(inputs, inference)
                if self.cache is not None:
                    self.cache.load()
                self.compiled = compile_forward(self.engine, self.cuda_graphs)
                with torch.inference_mode(inference):
                    self.compiled(*inputs)                 # compiles; a second call replays what it built
                    self.compiled(*inputs)
            with torch.inference_mode(inference):
                slower = self._slower_than_eager(inputs) if self.require_faster else None
            if self.cache is not None and not packaged:
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

    def _package(self, inputs, inference: bool):
        """The AOTInductor package's forward (`worldengine.compile_aot`), built by the child if it is not
        on disk yet and checked against eager; None (logged) if it cannot be had: torch.compile then."""
        key = compile_aot.package_key(compile_child.cache_key(self.engine, inputs, False), self.engine.model)
        path = compile_aot.package_path(self.engine, key)
        try:
            if not path.is_file():
                LOG.info("[worldengine] compiled package: %s",
                         compile_child.build_package(self.engine, inputs, inference, path))
            if not path.is_file():
                return None
            forward = compile_aot.load(self.engine.model, path)
            compile_aot.check(forward, self.eager, inputs)
        except Exception as err:  # noqa: BLE001 - a package that cannot be used only costs torch.compile
            LOG.warning("[worldengine] compiled package %s not used (%s: %s); compiling in this process",
                        path.name, type(err).__name__, err)
            return None
        LOG.info("[worldengine] compiled package: loaded %s", path)
        return forward

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
