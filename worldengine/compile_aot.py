"""The compiled step as an AOTInductor package: built once in a child process, loaded in milliseconds.

Why not only `torch.compile` in the playing process: even with inductor's caches warm, the parent
still traces the model with dynamo before it can run compiled code, and that Python holds the GIL
(measured on cpu-small + int8, 2 shared cores: 52 s to the first frame and 67 s to compiled speed on a
warm restart). An AOTInductor package is the compiled forward with its C++ wrapper and no Python
tracing left: `torch._inductor.aoti_load_package` opens it in well under a second (0.09 s for cpu-small),
the engine's own weights are handed to it (`load_constants(user_managed=True)`: no copy), and its
per-pass time matches `torch.compile`'s (cpu-small int8, one thread: 151-172 ms vs 156-176 ms, eager
201-219 ms). So the child process (`worldengine.compile_worker`, nice 10) exports the forward and
packages it; the parent loads it, checks it against eager on copies of the first call's inputs, and
switches. A later start with the same key loads the package straight away.

What makes a package valid is in its key (`package_key`): everything `compile_child.cache_key` holds
(config, dtype, device and ISA, per-layer int8 kernels, input shapes and flags, torch version), the
thread count (inductor's CPU code fixes its OpenMP team size when it is generated) and the values of
the tensors inductor bakes into the code as literals (0-d parameters such as the value-residual mix:
`load_constants` cannot replace those, so the child builds with their real values, while every other
weight is a zero placeholder there). Packages live beside the models (``<models>/.cache/compile/``,
counted by `compile.cache_size`, removed by `compile.clear_cache`) or, for an engine without a
folder, in inductor's cache folder.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch.utils._pytree import tree_leaves, tree_map_only

LOG = logging.getLogger("worldengine")
PACKAGE_SUFFIX = ".pt2"
INLINED_NUMEL = 16        # tensors this small may be inlined as literals by inductor (0-d ones are)
KV_BUFFERS_ARG = 5        # position of the layers' KV buffers in `WaypointDiT.forward`'s arguments
PREFIX = "model."         # the attribute `_Forward` holds the model under: constants are named by it
# A package must match eager on the check inputs within this (max |diff| / max |eager|). Measured:
# tiny engines float32 + int8 0.0017 (inductor rounds a few activation quantization steps apart
# from eager), bf16 a few ulps; cpu-small bf16 + int8 (`_int_mm`, 8 layers) 0.0222, which a bound
# of 0.02 refused; a package of another model (wrong inlined values, strided weights) was off by 1.4.
TOLERANCE = 5e-2


class _Forward(torch.nn.Module):
    """Exportable module whose forward is the DiT's per-frame forward (`WaypointDiT.forward`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        return self.model.forward(*args)


def named_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of `model`, named as in an exported `_Forward`."""
    named = {PREFIX + k: v for k, v in model.named_parameters()}
    named.update({PREFIX + k: v for k, v in model.named_buffers()})
    return named


def inlined_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The small tensors the child must build with their real values (detached CPU copies)."""
    return {k: v.detach().cpu().clone() for k, v in named_tensors(model).items() if v.numel() <= INLINED_NUMEL}


def package_key(base_key: str, model: torch.nn.Module) -> str:
    digest = hashlib.sha256(f"{base_key}|threads={torch.get_num_threads()}".encode())
    for name, tensor in sorted(inlined_tensors(model).items()):
        digest.update(name.encode())
        digest.update(tensor.float().numpy().tobytes())
    return digest.hexdigest()[:24]


def package_path(engine, key: str) -> Path:
    if engine.folder is not None:
        folder = Path(engine.folder)
        return folder.parent / ".cache" / "compile" / f"{folder.name}-{key}{PACKAGE_SUFFIX}"
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    return Path(cache_dir()) / "waypoint-aot" / f"{key}{PACKAGE_SUFFIX}"


def build(model: torch.nn.Module, inputs: tuple, path: Path) -> Path:
    """Export `model.forward` on `inputs` and write its AOTInductor package to `path` (atomically).

    Runs in the compile child. The package holds the compiled code only: its weights are supplied at
    load time (`aot_inductor.package_constants_in_so` off), so placeholder weights are fine here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False):
        plain = tree_map_only(torch.Tensor, lambda t: t.clone(), inputs)
        program = torch.export.export(_Forward(model), plain, strict=False)
    partial = path.with_name(path.stem + ".partial" + PACKAGE_SUFFIX)
    torch._inductor.aoti_compile_and_package(program, package_path=str(partial),
                                             inductor_configs={"aot_inductor.package_constants_in_so": False})
    partial.replace(path)
    return path


def load(model: torch.nn.Module, path: Path):
    """The package at `path` as a forward over `model`'s own weights (shared, not copied).

    Raises if the package asks for a weight the model does not have (a foreign or stale package)."""
    runner = torch._inductor.aoti_load_package(str(path))
    named = named_tensors(model)
    wanted = set(runner.get_constant_fqns())
    missing = sorted(wanted - set(named))
    if missing:
        raise ValueError(f"compiled package {path.name} needs weights this model lacks: {missing[:3]}")
    # The package reads each weight with the row-major strides it was built with; a weight that is a
    # strided view is handed over as a contiguous copy, which `forward` keeps alive (user-managed
    # constants are not owned by the runner).
    constants = {k: named[k].detach().contiguous() for k in wanted}
    runner.load_constants(constants, check_full_update=True, user_managed=True)

    def forward(*args):
        return runner(*args)
    forward.constants = constants
    forward.package = path
    return forward


def check(forward, eager, inputs) -> None:
    """Run `forward` and `eager` on separate copies of `inputs`; raise unless the velocity and every
    KV buffer they wrote agree within `TOLERANCE` (the package computes the same model)."""
    def copies():
        with torch.inference_mode(tree_leaves(inputs)[0].is_inference()):
            return tree_map_only(torch.Tensor, torch.clone, inputs)
    ours, reference = copies(), copies()
    with torch.inference_mode(tree_leaves(inputs)[0].is_inference()):
        pairs = [(forward(*ours), eager(*reference))]
    pairs += list(zip(tree_leaves(ours[KV_BUFFERS_ARG]), tree_leaves(reference[KV_BUFFERS_ARG])))
    for got, want in pairs:
        error = ((got.float() - want.float()).abs().max() / want.float().abs().max().clamp_min(1e-6)).item()
        if not error <= TOLERANCE:
            raise ValueError(f"compiled package disagrees with eager: relative error {error:.3g} > {TOLERANCE}")
