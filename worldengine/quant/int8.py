"""INT8 linear layers: W8A8 (int8 x int8 -> int32 via ``torch._int_mm``) and weight-only int8.

Both keep their weights as int8 ``weight_q`` [out_features, in_features] with one float32 scale per
output channel (`worldengine.quant.base`; values in [-127, 127]), so they hold a quarter of the fp32
bytes and half of bf16. They run on CPU and CUDA, accept float32 or bfloat16 activations and return
the activation dtype. Every shape decision is made from static tensor sizes, so the layers trace
under ``torch.compile(fullgraph=True, dynamic=False)`` without graph breaks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.quant import onednn, select
from worldengine.errors import WaypointError
from worldengine.quant.fp8 import Fp8Linear
from worldengine.quant.base import QuantLinearBase

QMAX = 127.0
# Smallest scale we allow: an all-zero row (weight or token) quantizes to zeros instead of NaN.
MIN_SCALE = 1e-8
# cuBLASLt's int8 GEMM wants more than 16 rows; CPU has no such limit.
CUDA_MIN_ROWS = 17
DEFAULT_SKIP = ("ctrl_emb", "out_norm", "unpatchify")


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8 weights.

    weight: [N, K] float. Returns (int8 [N, K] in [-127, 127], float32 scale [N]) with
    ``weight ~= q * scale[:, None]``.
    """
    w = weight.detach().float()
    scale = (w.abs().amax(dim=1) / QMAX).clamp(min=MIN_SCALE)
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)
    return q.contiguous(), scale


def quantize_per_token(x2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-row (per-token) symmetric int8 activations.

    x2d: [M, K] float32/bfloat16. Returns (int8 [M, K], float32 scale [M, 1]).
    Computed in float32 so bf16 inputs round the same way as fp32 ones.
    """
    xf = x2d.float()
    scale = (xf.abs().amax(dim=1, keepdim=True) / QMAX).clamp(min=MIN_SCALE)
    q = torch.round(xf / scale).clamp(-QMAX, QMAX).to(torch.int8)
    return q, scale


class Int8Linear(QuantLinearBase):
    """W8A8 linear: y = (q(x) @ Wq^T) * sx[:, None] * sw[None, :] + b.

    x: [..., K] float32 or bfloat16 -> y: [..., N] in x's dtype. The int32 accumulator is scaled in
    float32 (the "epilogue"); under torch.compile inductor fuses the quantize and epilogue pointwise
    work around the GEMM: ``_int_mm`` on CUDA, oneDNN on a weight prepacked at load on CPU.
    """

    quantize_weight = staticmethod(quantize_weight)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_packed", None, persistent=False)
        self.register_buffer("weight_zero_point", None, persistent=False)
        self.f32_gemm = False

    def prepare(self, rows_hint: int | None = None, kernel: str | None = None) -> None:
        """On CPU, pack the weight once for oneDNN (`worldengine.quant.onednn`), tuned for ``rows_hint``
        activation rows, when oneDNN is the faster int8 kernel measured here (`measured_kernel`), or
        when ``kernel="onednn"`` asks for it; ``kernel="int_mm"`` keeps ``torch._int_mm``, ``kernel="f32"``
        widens to an fp32 GEMM (where the CPU has no fast int8 GEMM). The pack holds the same int8
        values, so the plain ``weight_q`` is dropped (int8 keeps half of bf16's bytes); `stored_weight`
        and the state dict read it back."""
        if self.weight_q is None or self.weight_q.device.type != "cpu":
            return
        if kernel is None:
            kernel = measured_kernel(self.in_features, self.out_features, rows_hint, torch.float32,
                                     among=INT8_KERNELS)
        self.f32_gemm = kernel == "f32"
        if kernel == "onednn" and onednn.available():
            self.weight_packed = onednn.pack_weight(self.weight_q, rows_hint)
            self.weight_zero_point = torch.zeros(self.out_features, dtype=torch.int64)
            self.weight_q = None
            self.rows_hint = rows_hint

    def stored_weight(self) -> torch.Tensor:
        return self.weight_q if self.weight_packed is None else self.weight_packed.to_dense().t()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.weight_q is None:
            destination[prefix + "weight_q"] = self.stored_weight()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        weight = state_dict.pop(prefix + "weight_q", None) if self.weight_q is None else None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if weight is not None:   # a packed layer: pack the loaded values instead
            if tuple(weight.shape) != (self.out_features, self.in_features):
                raise WaypointError(f"{prefix}weight_q has shape {tuple(weight.shape)}, expected "
                                    f"{(self.out_features, self.in_features)}")
            self.weight_packed = onednn.pack_weight(weight.to(torch.int8).contiguous(), self.rows_hint)

    def matmul_2d(self, x2d: torch.Tensor) -> torch.Tensor:
        rows = x2d.shape[0]
        q, act_scale = quantize_per_token(x2d)
        if self.weight_packed is not None:
            return onednn.int8_mm_packed(q, self.weight_packed, self.weight_scale,
                                              self.weight_zero_point) * act_scale
        if self.f32_gemm and not q.is_cuda:
            # CPUs without an int8 GEMM worth the name (AVX2 only: `_int_mm` ran at 1 GOP/s, fp32 at 48
            # GFLOP/s): the same integer products in an fp32 GEMM, exact while partial sums stay
            # below 2**24; the weight stays int8 in memory and is widened per call.
            acc = F.linear(q.float(), self.weight_q.float())
            return acc * act_scale * self.weight_scale
        if q.is_cuda and rows < CUDA_MIN_ROWS:
            # Padding rows are zeros: they cost a few wasted rows and are sliced off below.
            q = F.pad(q, (0, 0, 0, CUDA_MIN_ROWS - rows))
        acc = torch._int_mm(q, self.weight_q.t())[:rows]
        return acc.float() * act_scale * self.weight_scale


class Int8WeightOnlyLinear(QuantLinearBase):
    """Weight-only int8 linear: activations stay float; y = (x @ Wq^T) * sw + b in x's dtype.

    x: [..., K] float32 or bfloat16 -> [..., N] same dtype. Saves weight memory without the
    activation rounding of W8A8 (smaller error, less speed on int8-capable hardware).
    """

    quantize_weight = staticmethod(quantize_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_q.to(x.dtype)
        out = F.linear(x, w) * self.weight_scale.to(x.dtype)
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out


QUANT_CLASSES = {"int8": Int8Linear, "int8wo": Int8WeightOnlyLinear, "fp8": Fp8Linear}
# Row counts of the timing probe: the layer's own (tokens per frame) rounded up to a power of two,
# at most this many; GEMM time grows about linearly in rows beyond it for every kernel.
PROBE_MAX_ROWS = 128
# CPU int8 GEMMs an `Int8Linear` can run on ("f32": its int8 values widened to an fp32 GEMM).
INT8_KERNELS = ("f32", "int_mm", "onednn")


def measured_kernel(in_features: int, out_features: int, rows: int | None, dtype: torch.dtype,
                    among=("float",) + INT8_KERNELS) -> str:
    """The fastest of a CPU layer's kernels for this shape class, measured on whole layer forwards.

    "float": ``F.linear`` in ``dtype``; "f32": `Int8Linear` widening its int8 operands to an fp32 GEMM;
    "int_mm": `Int8Linear` on ``torch._int_mm``; "onednn": on a prepacked weight (timed only where
    `select.onednn_is_real_kernel`). Layer forwards, not bare GEMMs, so the per-token quantization
    and the epilogue count against int8. Cached per process by (rows bucket, in, out, dtype);
    `among` limits the answer to some of them (timings are shared).
    """
    rows = _rows_bucket(rows)
    key = ("linear", rows, in_features, out_features, str(dtype).removeprefix("torch."))
    return select.fastest(key, lambda: _probe_calls(in_features, out_features, rows, dtype), among)


def measured_gemm_kernel(in_features: int, out_features: int, rows: int | None, dtype: torch.dtype) -> str:
    """"int_mm" or "float": the faster bare GEMM for a layer of a CPU engine that will be compiled.

    Compiled, the per-token quantization and the epilogue of an `Int8Linear` fuse into the pointwise
    kernels around it, so what is left to compare is the GEMM itself: ``torch._int_mm`` on int8
    operands against ``F.linear`` in ``dtype``. (``_int_mm`` rather than oneDNN: the compiled CPU step
    is an AOTInductor package, which cannot take oneDNN's opaque prepacked weight.) Measured here:
    an AMX Xeon, one thread, bf16 at cpu-small's shapes: ``_int_mm`` 0.46-0.54x the bf16 time, and
    the whole compiled frame 100.8 vs 112.7 ms. Cached per process and machine like `measured_kernel`.
    """
    rows = _rows_bucket(rows)
    key = ("gemm", rows, in_features, out_features, str(dtype).removeprefix("torch."))
    return select.fastest(key, lambda: _gemm_calls(in_features, out_features, rows, dtype))


def _rows_bucket(rows: int | None) -> int:
    """The probe's row count: ``rows`` (default PROBE_MAX_ROWS) rounded up to a power of two, capped."""
    return min(PROBE_MAX_ROWS, 1 << max(0, (rows or PROBE_MAX_ROWS) - 1).bit_length())


def _probe_generator(in_features: int, out_features: int) -> torch.Generator:
    return torch.Generator().manual_seed(in_features * 7919 + out_features)


def _gemm_calls(in_features: int, out_features: int, rows: int, dtype: torch.dtype) -> dict:
    generator = _probe_generator(in_features, out_features)
    x = torch.randn(rows, in_features, generator=generator).to(dtype)
    weight = torch.randn(out_features, in_features, generator=generator).to(dtype)
    q = torch.randint(-127, 128, (rows, in_features), dtype=torch.int8, generator=generator)
    weight_q = torch.randint(-127, 128, (out_features, in_features), dtype=torch.int8, generator=generator)
    return {"float": lambda: F.linear(x, weight), "int_mm": lambda: torch._int_mm(q, weight_q.t())}


def _probe_calls(in_features: int, out_features: int, rows: int, dtype: torch.dtype) -> dict:
    generator = _probe_generator(in_features, out_features)
    linear = nn.Linear(in_features, out_features).to(dtype)
    x = torch.randn(rows, in_features, generator=generator).to(dtype)
    calls = {"float": lambda: linear(x)}
    f32 = Int8Linear.from_linear(linear, rows, kernel="f32")
    calls["f32"] = lambda: f32(x)
    int_mm = Int8Linear.from_linear(linear, rows, kernel="int_mm")
    calls["int_mm"] = lambda: int_mm(x)
    if select.onednn_is_real_kernel():
        packed = Int8Linear.from_linear(linear, rows, kernel="onednn")
        calls["onednn"] = lambda: packed(x)
    return calls


def quantize_linears(module: nn.Module, skip=DEFAULT_SKIP, min_features: int = 32,
                     mode: str = "int8", rows_hint: int | None = None, only_if_faster: bool = False,
                     compiled: bool = False) -> list[str]:
    """Replace eligible ``nn.Linear`` submodules of ``module`` in place; return their dotted names.

    Eligible: in and out features both divisible by ``min_features`` (and at least that large), and
    a dotted name that contains none of the ``skip`` strings (the reference keeps the controller
    embedding, output norm and unpatchify in float; a custom ``skip`` replaces that default). ``mode``: "int8" (W8A8), "int8wo"
    (weight-only) or "fp8" (e4m3 W8A8, see `worldengine.quant.fp8`). ``rows_hint``: the activation row count
    the layers will mostly see (tokens per frame); CPU int8 packs its weights for it.
    ``only_if_faster``: a CPU layer stays float where `measured_kernel` finds float the fastest (int8 only).
    ``compiled``: the CPU engine will run compiled; with ``only_if_faster`` the bare GEMMs decide
    (`measured_gemm_kernel`) and the int8 layers use ``_int_mm``.
    """
    if mode not in QUANT_CLASSES:
        raise WaypointError(f"unknown quant mode {mode!r}; expected one of {sorted(QUANT_CLASSES)}")
    layer_cls = QUANT_CLASSES[mode]
    targets = [
        (name, child) for name, child in module.named_modules()
        if type(child) is nn.Linear and _eligible(name, child, skip, min_features)
        and not (only_if_faster and mode == "int8" and _float_is_faster(child, rows_hint, compiled))
    ]
    kernel = "int_mm" if compiled and only_if_faster and mode == "int8" else None
    for name, child in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, layer_cls.from_linear(child, rows_hint, kernel))
    return [name for name, _ in targets]


def _float_is_faster(linear: nn.Linear, rows_hint: int | None, compiled: bool = False) -> bool:
    weight = linear.weight
    measure = measured_gemm_kernel if compiled else measured_kernel
    return weight.device.type == "cpu" and measure(
        linear.in_features, linear.out_features, rows_hint, weight.dtype) == "float"


def _eligible(name: str, linear: nn.Linear, skip, min_features: int) -> bool:
    if any(part in name for part in skip):
        return False
    sizes = (linear.in_features, linear.out_features)
    return all(s >= min_features and s % min_features == 0 for s in sizes)
