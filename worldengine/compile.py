"""Compile policy: one static-shape graph for the model forward, shared by every session of an engine.

The DiT forward (`WaypointDiT.forward`) is already a pure function of tensors with fixed shapes:
latent, per-sigma modulation, RoPE tables of the frame, the layers' KV buffers (mutated in place:
the frame's K/V go to the tail rows), key masks and the controller embedding. Denoise passes and
the sigma-0 cache pass call it with identical shapes, so a single `torch.compile(fullgraph=True,
dynamic=False)` graph serves both; controls, frame index and sigma only change tensor values, never
guards. Compiled artifacts land in inductor's on-disk cache, so a restart reuses them.

Only what is passed to `torch.compile` here changes; no process-wide torch setting is touched.
"""
from __future__ import annotations

import torch

# Inductor options per device. "freezing" would fold weights into constants (faster CPU GEMM
# prepacking) but is off: it bakes one engine's weights into the graph, so a second engine with the
# same config could not share it, and it copies every weight once more.
CPU_OPTIONS: dict = {}
CUDA_GRAPH_MODE = "reduce-overhead"


def compile_forward(engine, cuda_graphs: bool | None = None):
    """A drop-in replacement for `engine.model.forward`, compiled once for this engine.

    cuda_graphs: use CUDA graphs (inductor "reduce-overhead") on a CUDA engine; default on for CUDA.
    The first call of each new input signature compiles (tens of seconds on CPU); afterwards frames,
    controls, sigmas and sessions reuse the graph without recompiling.
    """
    device = torch.device(engine.device)
    if cuda_graphs is None:
        cuda_graphs = device.type == "cuda"
    kwargs = {"fullgraph": True, "dynamic": False}
    if device.type == "cuda" and cuda_graphs:
        kwargs["mode"] = CUDA_GRAPH_MODE
    elif CPU_OPTIONS:
        kwargs["options"] = dict(CPU_OPTIONS)
    compiled = torch.compile(engine.model.forward, **kwargs)

    def forward(x, *args, **kwargs):
        # Seed latents arrive as ordinary tensors while denoise steps create theirs inside
        # inference mode; dynamo guards on that difference, so hand it one kind only (a [C,H,W]
        # copy is cheap) instead of compiling the graph twice.
        if torch.is_inference_mode_enabled() and not x.is_inference():
            x = x.clone()
        return compiled(x, *args, **kwargs)

    forward.compiled = compiled
    return forward


def compile_engine_steps(engine, cuda_graphs: bool | None = None):
    """Route every denoise step and cache pass of `engine`'s sessions through one compiled graph.

    Idempotent: an engine that is already compiled is left as it is. Returns the engine.
    """
    if getattr(engine.forward, "compiled", None) is None:
        engine.forward = compile_forward(engine, cuda_graphs)
    return engine
