"""CPU int8 GEMM on weights prepacked once for oneDNN, for `worldengine.quant.int8.Int8Linear`.

``torch._int_mm`` on CPU re-lays-out its weight operand on every call; for the weights of a whole
model pass, which do not stay in cache, that costs about half the GEMM time (measured at 2 threads
on cpu-small's and Waypoint-1.5-1B's Linear sizes: 1216 GOP/s with ``_int_mm``, 2349 GOP/s from a
prepacked weight). oneDNN's quantized linear takes a prepacked weight but only one activation scale
per call, so it runs here with scale 1 and zero point 0 on activations already quantized per token;
the per-token scales are applied to its float32 output by the caller, exactly as after ``_int_mm``.

The call is wrapped in a custom op so that torch.compile keeps it as one opaque kernel (inductor's
own lowering of the oneDNN op insists on weights frozen into the graph as constants).
"""
from __future__ import annotations

import functools

import torch


@functools.cache
def available() -> bool:
    """Whether this torch build runs the oneDNN quantized linear on this CPU (x86 builds do). Checked
    once with a tiny exact product, so a build that registers the ops but cannot run them here (other
    CPU architectures) falls back to ``_int_mm`` instead of failing mid-rollout."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")):
        return False
    try:
        weight = torch.arange(-128, 128, dtype=torch.int8).view(16, 16)
        q = torch.ones(2, 16, dtype=torch.int8)
        out = int8_mm_packed(q, pack_weight(weight, 2), torch.ones(16), torch.zeros(16, dtype=torch.int64))
        return torch.equal(out, weight.float().sum(1).expand(2, 16))
    except Exception:  # noqa: BLE001 - any failure means: use the portable path
        return False


def pack_weight(weight_q: torch.Tensor, rows_hint: int | None = None) -> torch.Tensor:
    """int8 [N, K] CPU weight -> opaque oneDNN tensor for `int8_mm_packed` (same int8 values).

    rows_hint: the activation row count most calls will have; oneDNN picks the layout for it (any
    row count still works). In isolation it measured 2271 vs 1821 GOP/s at 128 x 2048 x 8192 with vs
    without; whole Waypoint-1.5-1B frames showed no difference beyond noise.
    """
    shape = [rows_hint, weight_q.shape[1]] if rows_hint else None
    return torch.ops.onednn.qlinear_prepack(weight_q, shape)


@torch.library.custom_op("waypoint::int8_mm_packed", mutates_args=())
def int8_mm_packed(q: torch.Tensor, packed: torch.Tensor, weight_scale: torch.Tensor,
                   weight_zero_point: torch.Tensor) -> torch.Tensor:
    """(q [M, K] int8 @ weight^T) * weight_scale[None, :] as float32 [M, N]; exact int32 accumulation.

    packed from `pack_weight`; weight_scale float32 [N]; weight_zero_point int64 zeros [N].
    """
    return torch.ops.onednn.qlinear_pointwise(q, 1.0, 0, packed, weight_scale, weight_zero_point, None,
                                              1.0, 0, torch.float32, "none", [], "")


@int8_mm_packed.register_fake
def _(q, packed, weight_scale, weight_zero_point):
    return q.new_empty((q.shape[0], weight_scale.shape[0]), dtype=torch.float32)
