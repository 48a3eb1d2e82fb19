"""Orthogonal x/y/t rotary position embedding of Waypoint models.

Per head of size dh there are dh/2 rotation pairs: dh/8 for x, dh/8 for y, dh/4 for time.
Rotated outputs are laid out [all rotated even dims | all rotated odd dims], as the reference does.
"""
from __future__ import annotations

import math

import torch

from worldengine.config import WaypointConfig


def _bf16_round_if(values: torch.Tensor, round_to_bf16: bool) -> torch.Tensor:
    # The reference keeps these tables in fp32 but rounds them to bf16 values when the model is bf16.
    return values.to(torch.bfloat16).float() if round_to_bf16 else values


class RopeTables:
    """Precomputed fp32 angle pieces; `cos_sin(t)` gives the tables of one frame at RoPE time t."""

    def __init__(self, config: WaypointConfig, round_to_bf16: bool = False, device="cpu"):
        dh = config.d_head
        d_xy, d_t = dh // 8, dh // 4
        height, width = config.height, config.width
        max_freq = min(height, width) * config.rope_nyquist_frac
        xy = torch.linspace(1.0, max_freq / 2, math.ceil(d_xy / 2)) * math.pi
        xy = _bf16_round_if(xy.repeat_interleave(2)[:d_xy], round_to_bf16)
        inv_t = 1.0 / config.rope_theta ** (torch.arange(0, d_t, 2, dtype=torch.float32) / d_t)
        self.inv_t = _bf16_round_if(inv_t.repeat_interleave(2), round_to_bf16).to(device)
        index = torch.arange(height * width)
        xn = (2 * (index % width) + 1) / width - 1
        yn = (2 * (index // width) + 1) / height - 1
        # Any pairs beyond dh/2 (dh not a multiple of 8) would stay unrotated; real heads are 64.
        self.space = torch.cat([xn[:, None] * xy, yn[:, None] * xy], dim=-1).float().to(device)  # [T, 2*d_xy]
        self.pairs = dh // 2

    def cos_sin(self, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin: [T, dh/2] float32 for RoPE time t (frame_idx * ts_mult)."""
        tokens = self.space.shape[0]
        time = (torch.tensor(float(t), device=self.inv_t.device) * self.inv_t).expand(tokens, -1)
        angles = torch.cat([self.space, time], dim=-1)
        if angles.shape[-1] < self.pairs:
            angles = torch.nn.functional.pad(angles, (0, self.pairs - angles.shape[-1]))
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [..., T, dh] any float dtype; cos/sin [T, dh/2] fp32. Rotation in fp32, result in x.dtype."""
    xf = x.float()
    even, odd = xf[..., 0::2], xf[..., 1::2]
    return torch.cat((even * cos - odd * sin, odd * cos + even * sin), dim=-1).to(x.dtype)
