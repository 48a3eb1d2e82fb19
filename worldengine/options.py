"""Every user-facing option list, in one place: the engine, the CLI, the bench and the nodes read these.

Each is a `Choice` (a string enum that parses with an error listing the choices). `values()` gives the
strings in display order (node combos, CLI `choices=`); the first is not necessarily the default, which
each caller states. Importing this module does not import torch (the node pack reads it at start-up).
"""
from __future__ import annotations

from worldengine.errors import Choice, WaypointError


class _Options(Choice):
    @classmethod
    def values(cls) -> list[str]:
        return [member.value for member in cls]


class DType(_Options):
    """Compute dtype of the model. auto: bfloat16 on accelerators; on CPU bfloat16 where it measured
    clearly faster than float32 at the model's shapes (AMX), else float32 (`worldengine.quant.dtype`)."""

    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"

    @classmethod
    def label(cls) -> str:
        return "dtype"


def torch_dtype(dtype, device="cpu"):
    """The torch dtype for an option value (or a torch dtype, passed through); resolves auto for `device`
    without measuring (float32 on CPU; `worldengine.quant.dtype.resolve_dtype` measures)."""
    import torch
    if isinstance(dtype, torch.dtype):
        return dtype
    choice = DType.parse(dtype)
    if choice is DType.AUTO:
        return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
    return getattr(torch, choice.value)


class Quant(_Options):
    """Linear-layer quantization. auto: int8 on CUDA; on CPU int8 only for the layers where it measured
    faster than float on this machine (else none); int8: W8A8 (int8 weights and per-token int8
    activations); int8wo: int8 weights only; fp8: e4m3 W8A8 (CUDA, compute capability 8.9+)."""

    AUTO = "auto"
    NONE = "none"
    INT8 = "int8"
    INT8WO = "int8wo"
    FP8 = "fp8"

    @classmethod
    def label(cls) -> str:
        return "quantization"


def parse_quant(quant: "str | Quant | None") -> Quant:
    """None and "none" both mean no quantization."""
    return Quant.NONE if quant is None else Quant.parse(quant)


class Compile(_Options):
    """torch.compile of the model forward. auto: on for CUDA (with CUDA graphs); on CPU only for a model
    where quant=auto chose int8 layers, and the compiled step is used only once it measures faster than
    eager; on: compile (in the background: eager frames until it is ready); off: eager only."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


def parse_compile(value: "str | bool | Compile | None") -> Compile:
    """None means auto; booleans (older saved workflows, `compile=True` callers) mean on / off."""
    if value is None:
        return Compile.AUTO
    if isinstance(value, bool):
        return Compile.ON if value else Compile.OFF
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return Compile.ON if value.lower() == "true" else Compile.OFF
    return Compile.parse(value)


class FitMode(_Options):
    """What to do with input whose aspect ratio is not the model's.

    crop: centre-crop to the content aspect, then resize; stretch: resize to the target, distorting;
    pad: letterbox with black to the content aspect, then resize; error: refuse.
    """

    CROP = "crop"
    STRETCH = "stretch"
    PAD = "pad"
    ERROR = "error"


class Preview(_Options):
    """What live play shows. latent: a false-colour view of the latent (cheap); decoded: the model's
    autoencoder; auto: decoded on accelerators, latent on CPU (decoding is slow there)."""

    AUTO = "auto"
    LATENT = "latent"
    DECODED = "decoded"


class Device(_Options):
    """Where the model runs. auto: the host's device (ComfyUI's, or CUDA when present)."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def torch_device(device):
    """A torch device for "cpu", "cuda", "cuda:N" (auto resolved by the caller's host); CUDA must exist."""
    import torch
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise WaypointError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise WaypointError(f"device {str(device)!r} was asked for but CUDA is not available here")
    return resolved
