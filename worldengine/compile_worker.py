"""The child process of `worldengine.compile_child.prefill`: ``python -m worldengine.compile_worker SPEC``.

Rebuilds the engine SPEC describes (config, dtype, device, per-layer quantized classes and kernels)
with zero weights, marks copies of the first forward's inputs as the parent had them, and compiles
that forward once with `worldengine.compile.compile_forward`, at nice 10 and the parent's thread count
(inductor's generated CPU code is keyed by it), into the inductor cache folder it shares with the
parent; or, when SPEC names a package, exports that forward and writes its AOTInductor package there
(`worldengine.compile_aot.build`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch.utils._pytree import tree_flatten, tree_unflatten

from worldengine.compile import compile_forward
from worldengine.compile_aot import build, named_tensors

CHILD_NICE = 10


def rebuild(spec: dict):
    """The engine the spec describes, with zero weights and the same quantized layers, linear and
    attention kernels."""
    from worldengine.attn.choose import apply_attention
    from worldengine.config import config_from_dict
    from worldengine.engine import WorldEngine, build_model
    from worldengine.model import WaypointDiT
    from worldengine.quant import int8
    config, device, dtype = config_from_dict(spec["config"]), torch.device(spec["device"]), getattr(torch, spec["dtype"])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in WaypointDiT(config).state_dict().items()}
    model = build_model(config, {k: torch.zeros(s, device=device) for k, s in shapes.items()}, device, dtype)
    classes = {cls.__name__: cls for cls in int8.QUANT_CLASSES.values()}
    for name, (class_name, kernel) in spec["plan"].items():
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        linear = getattr(parent, attr)
        layer = classes[class_name].from_linear(linear, spec["rows_hint"], kernel)
        setattr(parent, attr, layer)
    engine = WorldEngine(config, model)
    apply_attention(engine, spec.get("attention", {}))
    return engine


def _twins(spec: dict):
    leaves, structure = tree_flatten(spec["inputs"])
    twins = []
    for leaf, flags in zip(leaves, spec["flags"]):
        if flags is not None:
            with torch.inference_mode(flags[0]):
                leaf = leaf.clone()
            if flags[1] is not None:
                torch._dynamo.mark_static_address(leaf, guard=flags[1] == "guarded")
        twins.append(leaf)
    return tree_unflatten(twins, structure)


def _exit_with_parent() -> None:
    """Linux: end this child when the thread that started it goes (a killed player leaves no compile)."""
    try:
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def main(argv=None) -> int:
    _exit_with_parent()
    os.nice(CHILD_NICE)
    spec = torch.load((argv or sys.argv[1:])[0], weights_only=True)
    torch.set_num_threads(spec["threads"])   # as the parent: inductor's generated code may depend on it
    engine = rebuild(spec)
    inputs = _twins(spec)
    if "package" in spec:   # an AOTInductor package (worldengine.compile_aot), with the real inlined values
        named = named_tensors(engine.model)
        with torch.no_grad():
            for name, value in spec["inlined"].items():
                named[name].copy_(value)
        build(engine.model, inputs, Path(spec["package"]))
        return 0
    compiled = compile_forward(engine, spec["cuda_graphs"])
    with torch.inference_mode(spec["inference"]):
        compiled(*inputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
