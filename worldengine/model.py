"""The Waypoint frame-causal DiT: one latent frame in, one velocity out.

Sigma-dependent work (noise embedding, every block's six AdaLN vectors, the output AdaLN) is split
out into `conditioning(sigma)` so the engine can precompute it per scheduler sigma; controller and
prompt embeddings are likewise computed once per frame / per prompt. `forward` is then a pure
function of (latent, per-frame inputs, KV buffers), with static shapes, ready for torch.compile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.config import WaypointConfig
from worldengine.layers import MLP, ControllerFusion, CrossAttention, MoE, SelfAttention, linear, rms


@dataclass
class SigmaConditioning:
    """Everything that depends only on sigma. block_mods: [n_layers, 6, D]; out_mod: [2, D] (model dtype)."""

    block_mods: torch.Tensor
    out_mod: torch.Tensor


class NoiseConditioner(nn.Module):
    """sigma → [D] embedding: Fourier features of 1000·sigma through an MLP, in fp32."""

    def __init__(self, d_model: int):
        super().__init__()
        self.register_buffer("freq", torch.logspace(0, -1, 256, base=10000.0), persistent=False)
        self.mlp = MLP(512, 4 * d_model, d_model)

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        phase = sigma.float().reshape(1) * 1000 * self.freq
        features = torch.cat([phase.sin(), phase.cos()]) * math.sqrt(2)
        return self.mlp(features.to(self.mlp.fc1.weight.dtype)).float()


class Block(nn.Module):
    def __init__(self, config: WaypointConfig, index: int):
        super().__init__()
        d = config.d_model
        self.attn = SelfAttention(d, config.n_heads, config.n_kv_heads, config.value_residual, config.gated_attn)
        if config.moe:
            d_int = int(d * config.mlp_ratio / config.moe_top_k)
            self.mlp = MoE(d, d_int, config.moe_n_experts, config.moe_top_k)
        else:
            self.mlp = MLP(d, config.mlp_hidden, d)
        self.bias_in = nn.Parameter(torch.zeros(d)) if config.noise_conditioning == "wan" else None
        self.cond_proj = None if config.ties_cond_proj else nn.ModuleList(linear(d, d) for _ in range(6))
        self.ctrl_fusion = ControllerFusion(d) if config.has_ctrl_fusion(index) else None
        self.cross_attn = (CrossAttention(d, config.prompt_embedding_dim, config.d_head)
                           if config.has_cross_attn(index) else None)

    def modulation(self, cond: torch.Tensor, shared_proj: nn.ModuleList | None) -> torch.Tensor:
        """[6, D]: shift-scale/shift/gate for attention, then for the MLP."""
        projections = self.cond_proj if self.cond_proj is not None else shared_proj
        hidden = F.silu(cond + self.bias_in if self.bias_in is not None else cond)
        return torch.stack([proj(hidden) for proj in projections])

    def forward(self, x, mods, cos, sin, kv, key_mask, v_first, ctrl_normed, prompt_normed):
        scale0, shift0, gate0, scale1, shift1, gate1 = mods.unbind(0)
        attn_out, v_first = self.attn(rms(x) * (1 + scale0) + shift0, cos, sin, kv, key_mask, v_first)
        x = x + gate0 * attn_out
        if self.cross_attn is not None:
            x = x + self.cross_attn(rms(x), prompt_normed)
        if self.ctrl_fusion is not None:
            x = x + self.ctrl_fusion(rms(x), ctrl_normed)
        x = x + gate1 * self.mlp(rms(x) * (1 + scale1) + shift1)
        return x, v_first

    def forward_batched(self, x, mods, cos, sin, kv, key_mask, v_first, ctrl_normed, prompts):
        """`forward` on B sessions' rows x [B*T, D]; ctrl_normed [B, 1, D]; prompts: one normed prompt
        context per session (or None). Each session's prompt may have its own length, so the prompt
        cross-attention runs session by session."""
        scale0, shift0, gate0, scale1, shift1, gate1 = mods.unbind(0)
        attn_out, v_first = self.attn.forward_batched(rms(x) * (1 + scale0) + shift0, cos, sin, kv, key_mask,
                                                      v_first)
        x = x + gate0 * attn_out
        if self.cross_attn is not None:
            rows = rms(x).chunk(len(prompts))
            x = x + torch.cat([self.cross_attn(row, prompt) for row, prompt in zip(rows, prompts)])
        if self.ctrl_fusion is not None:
            x = x + self.ctrl_fusion.forward_batched(rms(x), ctrl_normed)
        x = x + gate1 * self.mlp(rms(x) * (1 + scale1) + shift1)
        return x, v_first


class WaypointDiT(nn.Module):
    """Module layout (inference form) of a Waypoint DiT. See checkpoint.py for the published layouts."""

    def __init__(self, config: WaypointConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        ph, pw = config.patch
        self.denoise_step_emb = NoiseConditioner(d)
        self.ctrl_emb = MLP(config.n_buttons + 3, config.mlp_hidden, d)
        self.patchify = nn.Conv2d(config.channels, d, kernel_size=(ph, pw), stride=(ph, pw), bias=False)
        self.shared_cond_proj = nn.ModuleList(linear(d, d) for _ in range(6)) if config.ties_cond_proj else None
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layers))
        self.out_norm = linear(d, 2 * d)
        self.unpatchify = linear(d, config.channels * ph * pw, bias=True)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.patchify.weight.dtype

    @torch.no_grad()
    def conditioning(self, sigma: torch.Tensor) -> SigmaConditioning:
        """sigma: scalar tensor in the compute dtype (already rounded to it)."""
        cond = self.denoise_step_emb(sigma).to(self.compute_dtype)
        mods = torch.stack([block.modulation(cond, self.shared_cond_proj) for block in self.blocks])
        return SigmaConditioning(mods, self.out_norm(F.silu(cond)).view(2, -1))

    @torch.no_grad()
    def control_embedding(self, control_vector: torch.Tensor) -> torch.Tensor:
        """[n_buttons+3] control vector → RMS-normed [1, D] embedding used by the fusion layers."""
        return rms(self.ctrl_emb(control_vector.to(self.compute_dtype))[None])

    @torch.no_grad()
    def prompt_context(self, prompt_emb: torch.Tensor) -> torch.Tensor:
        """[P_len, P] prompt embedding → RMS-normed context for the cross-attention layers."""
        return rms(prompt_emb.to(self.compute_dtype))

    def forward(self, x, block_mods, out_mod, cos, sin, kv_buffers, key_masks, ctrl_normed,
                prompt_normed=None):
        """x: [C, H, W] latent (compute dtype) → velocity [C, H, W] (compute dtype).

        block_mods/out_mod from `conditioning`; cos/sin [T, d_head/2] fp32 RoPE tables; kv_buffers
        and key_masks one per layer (see SelfAttention); ctrl_normed [1, D]; prompt_normed [P_len, P].
        """
        c, ph, pw = self.config.channels, *self.config.patch
        tokens = self.patchify(x[None]).flatten(2)[0].transpose(0, 1)          # [T, D]
        v_first = None
        for i, block in enumerate(self.blocks):
            tokens, v_first = block(tokens, block_mods[i], cos, sin, kv_buffers[i], key_masks[i], v_first,
                                    ctrl_normed, prompt_normed)
        scale, shift = out_mod.unbind(0)
        tokens = F.silu(rms(tokens) * (1 + scale) + shift)
        patches = self.unpatchify(tokens)                                      # [T, C*ph*pw]
        hp, wp = self.config.height, self.config.width
        return patches.view(hp, wp, c, ph, pw).permute(2, 0, 3, 1, 4).reshape(c, hp * ph, wp * pw)

    def forward_batched(self, x, block_mods, out_mod, cos, sin, kv_buffers, key_masks, ctrl_normed,
                        prompts=None):
        """`forward` for B sessions in one pass (`worldengine.batch`): x [B, C, H, W] → velocity
        [B, C, H, W] (compute dtype). block_mods/out_mod as in `forward` (one sigma for all); cos/sin
        [B, 1, T, d_head/2] fp32; kv_buffers one [2, B, Hk, S, dh] workspace per layer and key_masks one
        [B, S] bool per layer; ctrl_normed [B, 1, D]; prompts: B normed prompt contexts, or None."""
        c, ph, pw = self.config.channels, *self.config.patch
        batch = x.shape[0]
        tokens = self.patchify(x).flatten(2).transpose(1, 2).reshape(-1, self.config.d_model)   # [B*T, D]
        v_first = None
        for i, block in enumerate(self.blocks):
            tokens, v_first = block.forward_batched(tokens, block_mods[i], cos, sin, kv_buffers[i], key_masks[i],
                                                    v_first, ctrl_normed, prompts)
        scale, shift = out_mod.unbind(0)
        tokens = F.silu(rms(tokens) * (1 + scale) + shift)
        patches = self.unpatchify(tokens)                                      # [B*T, C*ph*pw]
        hp, wp = self.config.height, self.config.width
        return (patches.view(batch, hp, wp, c, ph, pw).permute(0, 3, 1, 4, 2, 5)
                .reshape(batch, c, hp * ph, wp * pw))
