"""FP8 (e4m3) W8A8 linear layers through ``torch._scaled_mm``, for GPUs with fp8 tensor cores.

Weights are stored as float8_e4m3fn ``weight_q`` [out_features, in_features] with one float32 scale
per output channel (`worldengine.quant.base`); activations are quantized per token at run time (dynamic,
symmetric). ``_scaled_mm`` accumulates the product, applies both scale vectors in its epilogue
("rowwise" scaling) and returns bfloat16, which is cast to the activation dtype. CUDA runs it on
compute capability 8.9+ (Ada, Hopper); CPU torch runs the same op in software, which is slow but lets
the math be tested anywhere. The engine and the benchmark only offer it on capable GPUs
(`require_fp8_device`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from worldengine.errors import WaypointError
from worldengine.quant.base import QuantLinearBase

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)   # 448
MIN_SCALE = 1e-12
# cuBLASLt's fp8 GEMM wants every dimension divisible by 16; activation rows are padded to it.
CUDA_ROW_MULTIPLE = 16
MIN_CAPABILITY = (8, 9)


def fp8_supported(device: torch.device | str) -> bool:
    """Whether ``device`` has fp8 tensor cores (CUDA compute capability >= 8.9)."""
    device = torch.device(device)
    return device.type == "cuda" and torch.cuda.get_device_capability(device) >= MIN_CAPABILITY


def require_fp8_device(device: torch.device | str) -> None:
    """Raise a WaypointError naming the device unless it can run fp8 (see `fp8_supported`)."""
    if not fp8_supported(device):
        raise WaypointError(f"quant 'fp8' needs a CUDA GPU of compute capability {MIN_CAPABILITY[0]}."
                            f"{MIN_CAPABILITY[1]} or newer (Ada, Hopper); this engine is on {device}. "
                            "Use 'int8' instead.")


def quantize_fp8_rows(x2d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row fp8: x2d [M, K] float -> (float8_e4m3fn [M, K], float32 scale [M, 1]),
    ``x2d ~= q.float() * scale``; the row's largest magnitude maps to 448."""
    xf = x2d.float()
    scale = (xf.abs().amax(dim=1, keepdim=True) / FP8_MAX).clamp(min=MIN_SCALE)
    return (xf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE), scale


def pad_rows(q: torch.Tensor, scale: torch.Tensor, multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad fp8 rows q [M, K] and their scales [M, 1] to a multiple of ``multiple`` rows with zero rows
    of scale 1 (they cost a few wasted rows and are sliced off after the GEMM)."""
    pad = -q.shape[0] % multiple
    if not pad:
        return q, scale
    # F.pad has no fp8 kernel; the bytes of 0.0 in e4m3 are 0 as well.
    padded = F.pad(q.view(torch.uint8), (0, 0, 0, pad)).view(FP8_DTYPE)
    return padded, F.pad(scale, (0, 0, 0, pad), value=1.0)


class Fp8Linear(QuantLinearBase):
    """y = (q(x) @ Wq^T) * sx[:, None] * sw[None, :] + b, with fp8 q(x) and Wq (`weight_q`).

    x: [..., K] float32 or bfloat16 -> y: [..., N] in x's dtype. K and N must be multiples of 16.
    """

    storage_dtype = FP8_DTYPE
    feature_multiple = 16
    kind = "fp8"
    quantize_weight = staticmethod(quantize_fp8_rows)

    def matmul_2d(self, x2d: torch.Tensor) -> torch.Tensor:
        rows = x2d.shape[0]
        q, act_scale = quantize_fp8_rows(x2d)
        if q.is_cuda:
            q, act_scale = pad_rows(q, act_scale, CUDA_ROW_MULTIPLE)
        out = torch._scaled_mm(q, self.weight_q.t(), scale_a=act_scale, scale_b=self.weight_scale[None],
                               out_dtype=torch.bfloat16)
        return out[:rows].float()
