"""Building blocks of the Waypoint DiT: RMS norm, MLPs, self-/cross-attention, controller fusion.

Token tensors are [T, D] (one frame, no batch dim); attention heads are [heads, T, d_head].
Weights are stored in the inference layout (fused QKV, split controller fusion) produced by
`checkpoint.to_inference_layout` from the published layouts.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worldengine.rope import apply_rope

FP32_EPS = torch.finfo(torch.float32).eps


def rms(x: torch.Tensor) -> torch.Tensor:
    """Parameter-free RMS norm over the last dim, computed in fp32 with the fp32 eps (as the reference)."""
    return F.rms_norm(x.float(), (x.shape[-1],), eps=FP32_EPS).to(x.dtype)


def linear(d_in: int, d_out: int, bias: bool = False) -> nn.Linear:
    return nn.Linear(d_in, d_out, bias=bias)


class MLP(nn.Module):
    """fc2(silu(fc1(x)))."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int):
        super().__init__()
        self.fc1 = linear(d_in, d_hidden)
        self.fc2 = linear(d_hidden, d_out)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class MoE(nn.Module):
    """Top-k routed MLP experts (Waypoint `moe: true`); weights [E, d_int, D] and [E, D, d_int]."""

    def __init__(self, d_model: int, d_int: int, n_experts: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.router = linear(d_model, n_experts)
        self.expert_in = nn.Parameter(torch.empty(n_experts, d_int, d_model))
        self.expert_out = nn.Parameter(torch.empty(n_experts, d_model, d_int))

    def forward(self, x):
        scores, experts = self.router(x).topk(self.top_k, dim=-1)          # [T, k]
        weights = torch.exp(scores.float() - scores.float().logsumexp(-1, keepdim=True))
        out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
        for expert in range(self.expert_in.shape[0]):
            token, slot = torch.nonzero(experts == expert, as_tuple=True)
            if token.numel() == 0:
                continue
            hidden = F.silu(x[token] @ self.expert_in[expert].T) @ self.expert_out[expert].T
            out.index_add_(0, token, hidden.float() * weights[token, slot, None])
        return out.to(x.dtype)


class SelfAttention(nn.Module):
    """QK-normed GQA attention over the frame's own tokens plus the layer's KV ring.

    `kv` is the layer cache buffer [2, Hk, slots*T, dh]; its last T rows (the tail) receive this
    frame's keys/values, and `key_mask` [slots*T] bool says which rows are visible.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, value_residual: bool, gated: bool):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        self.qkv = linear(d_model, (n_heads + 2 * n_kv_heads) * self.d_head)
        self.out_proj = linear(d_model, d_model)
        self.v_lamb = nn.Parameter(torch.tensor(0.5)) if value_residual else None
        self.gate_proj = linear(n_heads, n_heads) if gated else None
        # Ring attention kernel chosen at load by measurement (`worldengine.attn.choose`): None keeps the
        # plain SDPA call below (the float path, bit-identical); else a `worldengine.attn` candidate.
        self.attn_kernel = None

    def _value_residual(self, v, v_first):
        """Value residual: the first layer's V is kept, later layers mix it in (lerp by v_lamb)."""
        if self.v_lamb is None:
            return v, v_first
        if v_first is None:
            return v, v
        return torch.lerp(v, v_first, self.v_lamb), v_first

    def forward(self, h, cos, sin, kv, key_mask, v_first):
        tokens, dh = h.shape[0], self.d_head
        q, k, v = self.qkv(h).split([self.n_heads * dh, self.n_kv_heads * dh, self.n_kv_heads * dh], -1)
        q = q.view(tokens, self.n_heads, dh).transpose(0, 1)
        k = k.view(tokens, self.n_kv_heads, dh).transpose(0, 1)
        v = v.view(tokens, self.n_kv_heads, dh).transpose(0, 1)
        v, v_first = self._value_residual(v, v_first)
        q = apply_rope(rms(q), cos, sin)
        k = apply_rope(rms(k), cos, sin)
        kv[:, :, -tokens:] = torch.stack([k, v])  # one write: compiles to an in-place update of the tail
        # GQA with the query heads of each KV head folded into one longer query (query head h reads KV
        # head h // group): the mask is per key only, so this is the same attention without expanding K/V.
        group = self.n_heads // self.n_kv_heads
        folded = q.reshape(self.n_kv_heads, group * tokens, dh)
        if self.attn_kernel is None:
            y = F.scaled_dot_product_attention(folded[None], kv[0][None], kv[1][None],
                                               attn_mask=key_mask.view(1, 1, 1, -1))[0]
        else:
            y = self.attn_kernel(folded, kv[0], kv[1], key_mask)
        y = y.view(self.n_heads, tokens, dh)
        if self.gate_proj is not None:
            gate = torch.sigmoid(self.gate_proj(h[:, : self.n_heads]))        # [T, H]
            y = y * gate.transpose(0, 1)[..., None]
        return self.out_proj(y.transpose(0, 1).reshape(tokens, -1)), v_first

    def forward_batched(self, h, cos, sin, kv, key_mask, v_first):
        """`forward` for B sessions at once (`worldengine.batch`): h [B*T, D] session-major rows;
        cos/sin [B, 1, T, dh/2] fp32; kv [2, B, Hk, slots*T, dh] (the sessions' rings gathered into one
        workspace; the tails receive this frame's K/V); key_mask [B, slots*T] bool."""
        batch, dh = kv.shape[1], self.d_head
        tokens = h.shape[0] // batch
        q, k, v = self.qkv(h).split([self.n_heads * dh, self.n_kv_heads * dh, self.n_kv_heads * dh], -1)
        q = q.view(batch, tokens, self.n_heads, dh).transpose(1, 2)
        k = k.view(batch, tokens, self.n_kv_heads, dh).transpose(1, 2)
        v = v.view(batch, tokens, self.n_kv_heads, dh).transpose(1, 2)
        v, v_first = self._value_residual(v, v_first)
        q = apply_rope(rms(q), cos, sin)
        k = apply_rope(rms(k), cos, sin)
        kv[:, :, :, -tokens:] = torch.stack([k, v])
        group = self.n_heads // self.n_kv_heads   # GQA folded per KV head, as in `forward`
        folded = q.reshape(batch, self.n_kv_heads, group * tokens, dh)
        y = F.scaled_dot_product_attention(folded, kv[0], kv[1], attn_mask=key_mask.view(batch, 1, 1, -1))
        y = y.view(batch, self.n_heads, tokens, dh)
        if self.gate_proj is not None:
            gate = torch.sigmoid(self.gate_proj(h[:, : self.n_heads])).view(batch, tokens, self.n_heads)
            y = y * gate.transpose(1, 2)[..., None]
        return self.out_proj(y.transpose(1, 2).reshape(batch * tokens, -1)), v_first


class CrossAttention(nn.Module):
    """Prompt cross-attention (Waypoint-1). Padding rows take part in the softmax, as in the reference."""

    def __init__(self, d_model: int, d_prompt: int, d_head: int):
        super().__init__()
        self.n_heads, self.d_head = d_prompt // d_head, d_head
        self.q_proj = linear(d_model, d_prompt)
        self.k_proj = linear(d_prompt, d_prompt)
        self.v_proj = linear(d_prompt, d_prompt)
        self.out_proj = linear(d_prompt, d_model)

    def forward(self, x_normed, context_normed):
        def heads(t):
            return t.view(t.shape[0], self.n_heads, self.d_head).transpose(0, 1)

        q = rms(heads(self.q_proj(x_normed)))
        k = rms(heads(self.k_proj(context_normed)))
        v = heads(self.v_proj(context_normed))
        y = F.scaled_dot_product_attention(q[None], k[None], v[None])[0]
        return self.out_proj(y.transpose(0, 1).reshape(x_normed.shape[0], -1))


class ControllerFusion(nn.Module):
    """fc2(silu(x·Wxᵀ + c·Wcᵀ)): the published split of `mlp.fc1` = [Wx | Wc]."""

    def __init__(self, d_model: int):
        super().__init__()
        self.fc1_x = linear(d_model, d_model)
        self.fc1_c = linear(d_model, d_model)
        self.fc2 = linear(d_model, d_model)

    def forward(self, x_normed, ctrl_normed):
        return self.fc2(F.silu(self.fc1_x(x_normed) + self.fc1_c(ctrl_normed)))

    def forward_batched(self, x_normed, ctrl_normed):
        """x_normed [B*T, D] session-major rows, ctrl_normed [B, 1, D] (one control vector per session)."""
        batch, d = ctrl_normed.shape[0], ctrl_normed.shape[-1]
        hidden = self.fc1_x(x_normed).view(batch, -1, d) + self.fc1_c(ctrl_normed)
        return self.fc2(F.silu(hidden).view(-1, d))
