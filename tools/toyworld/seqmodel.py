"""Training-time forward of `WaypointDiT` over a clip, with the engine's own submodules.

A clip of L frames becomes 2L frames of tokens: L clean frames (what the engine's sigma-0 cache
pass stores) then L noisy frames (what a denoise pass sees). A frame's query may attend to its own
tokens and to the *clean* frames that the engine's ring KV cache would show it at that frame index
(`visible_frames` replays the ring rules), so one training pass matches L single-frame inference
passes exactly. Token tensors are [B, 2L, T, D]; attention runs over the flattened 2L*T axis.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from worldengine.config import WaypointConfig
from worldengine.kv_cache import RingKVCache
from worldengine.layers import rms
from worldengine.model import WaypointDiT
from worldengine.rope import RopeTables, apply_rope


def visible_frames(frame: int, dilation: int, buckets: int, first: int) -> set[int]:
    """Earlier frames (>= first, the session's first frame) whose K/V the ring shows at `frame`."""
    slots = {}
    for earlier in range(first, frame):
        slot, persisted = RingKVCache.slot_of(earlier, dilation, buckets)
        if persisted:
            slots[slot] = earlier
    hidden_slot, is_write = RingKVCache.slot_of(frame, dilation, buckets)
    return {f for slot, f in slots.items() if not (is_write and slot == hidden_slot)}


def clip_mask(config: WaypointConfig, layer: int, start: int, length: int) -> torch.Tensor:
    """bool [2L*T, 2L*T] (query, key) for frames start..start+L-1 of a session that began at `start`."""
    tokens = config.tokens_per_frame
    frame_mask = torch.zeros(2 * length, 2 * length, dtype=torch.bool)
    for i in range(length):
        for j in visible_frames(start + i, *config.ring(layer), first=start):
            frame_mask[i, j - start] = frame_mask[length + i, j - start] = True
        frame_mask[i, i] = frame_mask[length + i, length + i] = True
    return frame_mask.repeat_interleave(tokens, 0).repeat_interleave(tokens, 1)


def noise_embedding(model: WaypointDiT, sigma: torch.Tensor) -> torch.Tensor:
    """sigma [...] -> [..., D]: the batched form of NoiseConditioner.forward."""
    emb = model.denoise_step_emb
    phase = sigma.float()[..., None] * 1000 * emb.freq
    return emb.mlp(torch.cat([phase.sin(), phase.cos()], -1) * 2 ** 0.5)


def attention(attn, h, cos, sin, mask, v_first):
    """SelfAttention with a full-sequence mask instead of a KV ring. h [B, N, D]."""
    b, n, _ = h.shape
    dh = attn.d_head
    q, k, v = attn.qkv(h).split([attn.n_heads * dh, attn.n_kv_heads * dh, attn.n_kv_heads * dh], -1)
    q = q.view(b, n, attn.n_heads, dh).transpose(1, 2)
    k = k.view(b, n, attn.n_kv_heads, dh).transpose(1, 2)
    v = v.view(b, n, attn.n_kv_heads, dh).transpose(1, 2)
    if attn.v_lamb is not None:
        v_first = v if v_first is None else v_first
        v = torch.lerp(v, v_first, attn.v_lamb)
    q, k = apply_rope(rms(q), cos, sin), apply_rope(rms(k), cos, sin)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return attn.out_proj(y.transpose(1, 2).reshape(b, n, -1)), v_first


class ClipForward:
    """Callable: (clean [B,L,C,H,W], noisy [B,L,C,H,W], sigma [B,L], ctrl [B,L,n+3], start) -> v [B,L,C,H,W]."""

    def __init__(self, model: WaypointDiT, length: int):
        self.model, self.config, self.length = model, model.config, length
        self.rope = RopeTables(model.config)
        self.masks: dict[int, list[torch.Tensor]] = {}

    def _tables(self, start: int):
        pieces = [self.rope.cos_sin((start + i) * self.config.ts_mult) for i in range(self.length)]
        cos = torch.cat([c for c, _ in pieces] * 2)
        sin = torch.cat([s for _, s in pieces] * 2)
        return cos, sin

    def _layer_masks(self, start: int) -> list[torch.Tensor]:
        # the mask depends only on the dilation phase of the start frame
        phase = start % max(d for d, _ in (self.config.ring(i) for i in range(self.config.n_layers)))
        if phase not in self.masks:
            device = self.rope.space.device          # the masks live where the model runs (CPU or CUDA)
            self.masks[phase] = [clip_mask(self.config, i, phase, self.length).to(device)
                                 for i in range(self.config.n_layers)]
        return self.masks[phase]

    def __call__(self, clean, noisy, sigma, ctrl, start: int = 0):
        model, config = self.model, self.config
        b, length = sigma.shape
        frames = torch.cat([clean, noisy], 1)                                # [B, 2L, C, H, W]
        tokens = model.patchify(frames.flatten(0, 1)).flatten(2).transpose(1, 2)   # [B*2L, T, D]
        t, d = tokens.shape[1], tokens.shape[2]
        x = tokens.view(b, 2 * length, t, d)
        sigmas = torch.cat([torch.zeros_like(sigma), sigma], 1)              # clean frames: sigma 0
        cond = noise_embedding(model, sigmas)                                # [B, 2L, D]
        ctrl_normed = rms(model.ctrl_emb(torch.cat([ctrl, ctrl], 1)))[:, :, None]   # [B, 2L, 1, D]
        cos, sin = self._tables(start)
        masks = self._layer_masks(start)
        v_first = None
        for i, block in enumerate(model.blocks):
            mods = block.modulation(cond, model.shared_cond_proj)[:, :, :, None]    # [6, B, 2L, 1, D]
            scale0, shift0, gate0, scale1, shift1, gate1 = mods.unbind(0)
            h = (rms(x) * (1 + scale0) + shift0).view(b, -1, d)
            attn_out, v_first = attention(block.attn, h, cos, sin, masks[i], v_first)
            x = x + gate0 * attn_out.view_as(x)
            if block.ctrl_fusion is not None:
                x = x + block.ctrl_fusion(rms(x), ctrl_normed)
            x = x + gate1 * block.mlp(rms(x) * (1 + scale1) + shift1)
        out_mod = model.out_norm(F.silu(cond[:, length:])).view(b, length, 1, 2, d)
        y = F.silu(rms(x[:, length:]) * (1 + out_mod[..., 0, :]) + out_mod[..., 1, :])
        patches = model.unpatchify(y)                                        # [B, L, T, C*ph*pw]
        c, (ph, pw), hp, wp = config.channels, config.patch, config.height, config.width
        return patches.view(b, length, hp, wp, c, ph, pw).permute(0, 1, 4, 2, 5, 3, 6).reshape(
            b, length, c, hp * ph, wp * pw)


def inference_to_canonical(state: dict, config: WaypointConfig) -> dict:
    """`WaypointDiT` state -> canonical (world_engine names) state: the inverse of to_inference_layout."""
    d, hk, dh = config.d_model, config.n_kv_heads, config.d_head
    out = {k: state[k] for k in ("denoise_step_emb.mlp.fc1.weight", "denoise_step_emb.mlp.fc2.weight",
                                 "patchify.weight", "unpatchify.weight", "unpatchify.bias")}
    out["ctrl_emb.mlp.fc1.weight"] = state["ctrl_emb.fc1.weight"]
    out["ctrl_emb.mlp.fc2.weight"] = state["ctrl_emb.fc2.weight"]
    out["out_norm.fc.weight"] = state["out_norm.weight"]
    for i in range(config.n_layers):
        p, q = f"transformer.blocks.{i}.", f"blocks.{i}."
        qw, kw, vw = state[q + "attn.qkv.weight"].split([d, hk * dh, hk * dh])
        out.update({p + "attn.q_proj.weight": qw, p + "attn.k_proj.weight": kw, p + "attn.v_proj.weight": vw,
                    p + "attn.out_proj.weight": state[q + "attn.out_proj.weight"]})
        for name in ("attn.v_lamb", "attn.gate_proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"):
            if q + name in state:
                out[p + name] = state[q + name]
        if q + "bias_in" in state:
            out[p + "cond_head.bias_in"] = state[q + "bias_in"]
        for j in range(6):
            key = f"shared_cond_proj.{j}.weight" if config.ties_cond_proj else q + f"cond_proj.{j}.weight"
            out[p + f"cond_head.cond_proj.{j}.weight"] = state[key]
        if q + "ctrl_fusion.fc1_x.weight" in state:
            out[p + "ctrl_mlpfusion.mlp.fc1.weight"] = torch.cat(
                [state[q + "ctrl_fusion.fc1_x.weight"], state[q + "ctrl_fusion.fc1_c.weight"]], 1)
            out[p + "ctrl_mlpfusion.mlp.fc2.weight"] = state[q + "ctrl_fusion.fc2.weight"]
    return {k: v.detach().float().cpu().clone() for k, v in out.items()}
