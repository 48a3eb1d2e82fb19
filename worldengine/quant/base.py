"""Storage shared by the quantized linear layers (`worldengine.quant.int8`, `worldengine.quant.fp8`).

A layer keeps its weight as ``weight_q`` [out_features, in_features] in a one-byte dtype with one
float32 scale per output channel, ``weight_scale`` [out_features] (symmetric, zero point 0:
``weight ~= weight_q.float() * weight_scale[:, None]``), and an optional float32 bias. Subclasses name
the storage dtype, the feature multiple their GEMM needs, and the weight quantizer.
"""
from __future__ import annotations

import torch
from torch import nn

from worldengine.errors import WaypointError


class QuantLinearBase(nn.Module):
    storage_dtype: torch.dtype = torch.int8
    feature_multiple: int = 8
    kind: str = "int8"

    def __init__(self, in_features: int, out_features: int, has_bias: bool,
                 device: torch.device | str | None = None):
        super().__init__()
        if in_features % self.feature_multiple or out_features % self.feature_multiple:
            raise WaypointError(
                f"{self.kind} linear needs in/out features divisible by {self.feature_multiple}, got "
                f"in_features={in_features}, out_features={out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer(
            "weight_q", torch.zeros(out_features, in_features, dtype=self.storage_dtype, device=device))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32, device=device))
        if has_bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device))
        else:
            self.bias = None

    @staticmethod
    def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """weight [N, K] float -> (storage_dtype [N, K], float32 scale [N])."""
        raise NotImplementedError

    @classmethod
    def from_linear(cls, linear: nn.Linear, rows_hint: int | None = None, kernel: str | None = None):
        """Quantize a float ``nn.Linear`` (any float dtype, any device); the original is untouched.
        rows_hint: the activation row count the layer will mostly see (tokens per frame), for packing;
        kernel: which GEMM the layer uses where it has a choice (None: the layer measures)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, device=linear.weight.device)
        q, scale = cls.quantize_weight(linear.weight.detach())
        layer.weight_q.copy_(q)
        layer.weight_scale.copy_(scale.reshape(-1))
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach().float())
        layer.prepare(rows_hint, kernel)
        return layer

    def prepare(self, rows_hint: int | None = None, kernel: str | None = None) -> None:
        """Load-time work on the stored weight (kernel-specific packing); none by default."""

    def matmul_2d(self, x2d: torch.Tensor) -> torch.Tensor:
        """x2d [M, K] float -> float32 [M, N] without the bias: the layer's quantized product."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., K] float32 or bfloat16 -> [..., N] in x's dtype (bias added in float32)."""
        out = self.matmul_2d(x.reshape(-1, self.in_features))
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def stored_weight(self) -> torch.Tensor:
        """The quantized weight [N, K] in the storage dtype, however the layer keeps it."""
        return self.weight_q

    def dequantized_weight(self) -> torch.Tensor:
        """float32 [N, K] weight the stored one stands for (for error checks)."""
        return self.stored_weight().float() * self.weight_scale[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
