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

