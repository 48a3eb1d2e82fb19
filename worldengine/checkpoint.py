"""Checkpoint layouts → the inference module layout of `WaypointDiT`.

Three layouts meet here:
- published Waypoint-1.5 ("raw": attn_/mlp_cond_head, dit_mlp, split ctrl fusion, 4-D unpatchify),
- world_engine module names ("canonical": what Waypoint-1 files hold and what raw is remapped to),
- our inference layout (fused QKV, one shared cond_proj when tied, split controller fusion).
Errors name the key as the file spells it and both shapes.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from worldengine.config import WaypointConfig
from worldengine.errors import WaypointError

BLOCK = re.compile(r"^transformer\.blocks\.(\d+)\.(.+)$")


def canonical_shapes(config: WaypointConfig) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a canonical (world_engine module names) state dict."""
    d, hk, dh, m = config.d_model, config.n_kv_heads, config.d_head, config.mlp_hidden
    ph, pw = config.patch
    c = config.channels
    shapes = {
        "denoise_step_emb.mlp.fc1.weight": (4 * d, 512), "denoise_step_emb.mlp.fc2.weight": (d, 4 * d),
        "ctrl_emb.mlp.fc1.weight": (m, config.n_buttons + 3), "ctrl_emb.mlp.fc2.weight": (d, m),
        "patchify.weight": (d, c, ph, pw), "unpatchify.weight": (c * ph * pw, d),
        "unpatchify.bias": (c * ph * pw,), "out_norm.fc.weight": (2 * d, d),
    }
    for i in range(config.n_layers):
        p = f"transformer.blocks.{i}."
        shapes.update({p + "attn.q_proj.weight": (d, d), p + "attn.k_proj.weight": (hk * dh, d),
                       p + "attn.v_proj.weight": (hk * dh, d), p + "attn.out_proj.weight": (d, d)})
        if config.value_residual:
            shapes[p + "attn.v_lamb"] = ()
        if config.gated_attn:
            shapes[p + "attn.gate_proj.weight"] = (config.n_heads, config.n_heads)
        if config.moe:
            experts, d_int = config.moe_n_experts, int(d * config.mlp_ratio / config.moe_top_k)
            shapes.update({p + "mlp.router.weight": (experts, d), p + "mlp.expert_in": (experts, d_int, d),
                           p + "mlp.expert_out": (experts, d, d_int)})
        else:
            shapes.update({p + "mlp.fc1.weight": (m, d), p + "mlp.fc2.weight": (d, m)})
        if config.noise_conditioning == "wan":
            shapes[p + "cond_head.bias_in"] = (d,)
        shapes.update({f"{p}cond_head.cond_proj.{j}.weight": (d, d) for j in range(6)})
        if config.has_ctrl_fusion(i):
            shapes.update({p + "ctrl_mlpfusion.mlp.fc1.weight": (d, 2 * d), p + "ctrl_mlpfusion.mlp.fc2.weight": (d, d)})
        if config.has_cross_attn(i):
            pd = config.prompt_embedding_dim
            shapes.update({p + "prompt_cross_attn.q_proj.weight": (pd, d), p + "prompt_cross_attn.k_proj.weight": (pd, pd),
                           p + "prompt_cross_attn.v_proj.weight": (pd, pd), p + "prompt_cross_attn.out_proj.weight": (d, pd)})
    return shapes


OPTIONAL_KEYS = {"ctrl_cfg.null_emb", "prompt_cfg.null_emb"}  # training-only CFG embeddings


def remap_published_waypoint15(raw: dict, config: WaypointConfig) -> tuple[dict, dict]:
    """Published Waypoint-1.5 keys → canonical keys (world_engine 1.5 load rules).

    Returns (canonical state, origin) where origin maps a canonical key to the file's key.
    """
    d, c = config.d_model, config.channels
    ph, pw = config.patch
    state, origin = {}, {}

    def put(key, tensor, source):
        state[key], origin[key] = tensor, source

    for key, tensor in raw.items():
        match = BLOCK.match(key)
        if key == "unpatchify.weight" and tensor.ndim == 4:
            _expect(key, tensor, (d, c, ph, pw))
            put(key, tensor.permute(1, 2, 3, 0).reshape(c * ph * pw, d), key)
        elif key == "unpatchify.bias" and tensor.numel() != c * ph * pw:
            _expect(key, tensor, (c,))
            put(key, tensor[:, None, None].expand(c, ph, pw).reshape(-1), key)
        elif match is None:
            put(key, tensor, key)
        else:
            put(*_remap_block_key(int(match[1]), match[2], tensor, key))
    _merge_bias_in_and_fusion(state, origin, config)
    for i in range(1, config.n_layers):  # missing per-block modulation weights come from block 0
        for j in range(6):
            key = f"transformer.blocks.{i}.cond_head.cond_proj.{j}.weight"
            source = f"transformer.blocks.0.cond_head.cond_proj.{j}.weight"
            if key not in state and source in state:
                state[key], origin[key] = state[source], origin[source]
    for key in [k for k in state if ".cond_heads." in k]:
        del state[key], origin[key]
    return state, origin


def _remap_block_key(block: int, name: str, tensor, raw_key):
    prefix = f"transformer.blocks.{block}."
    if name.startswith("dit_mlp."):
        return prefix + "mlp." + name[len("dit_mlp."):], tensor, raw_key
    proj = re.match(r"(attn|mlp)_cond_head\.cond_proj\.(\d)\.weight$", name)
    if proj:
        slot = int(proj[2]) + (3 if proj[1] == "mlp" else 0)
        return f"{prefix}cond_head.cond_proj.{slot}.weight", tensor, raw_key
    if name in ("attn_cond_head.bias_in", "mlp_cond_head.bias_in"):
        return f"{prefix}_{name}", tensor, raw_key  # resolved in _merge_bias_in_and_fusion
    if name in ("ctrl_mlpfusion.fc1_x.weight", "ctrl_mlpfusion.fc1_c.weight"):
        return f"{prefix}_{name}", tensor, raw_key
    if name == "ctrl_mlpfusion.fc2.weight":
        return prefix + "ctrl_mlpfusion.mlp.fc2.weight", tensor, raw_key
    return prefix + name, tensor, raw_key


def _merge_bias_in_and_fusion(state: dict, origin: dict, config: WaypointConfig):
    for i in range(config.n_layers):
        p = f"transformer.blocks.{i}."
        attn_bias, mlp_bias = state.pop(p + "_attn_cond_head.bias_in", None), state.pop(p + "_mlp_cond_head.bias_in", None)
        attn_src, mlp_src = origin.pop(p + "_attn_cond_head.bias_in", None), origin.pop(p + "_mlp_cond_head.bias_in", None)
        # world_engine keeps only the MLP head's bias_in and uses it for both halves of the block.
        if mlp_bias is not None or attn_bias is not None:
            state[p + "cond_head.bias_in"] = mlp_bias if mlp_bias is not None else attn_bias
            origin[p + "cond_head.bias_in"] = mlp_src if mlp_bias is not None else attn_src
        fc1_x, fc1_c = state.pop(p + "_ctrl_mlpfusion.fc1_x.weight", None), state.pop(p + "_ctrl_mlpfusion.fc1_c.weight", None)
        src_x, src_c = origin.pop(p + "_ctrl_mlpfusion.fc1_x.weight", None), origin.pop(p + "_ctrl_mlpfusion.fc1_c.weight", None)
        if fc1_x is not None and fc1_c is not None:
            if fc1_x.shape != fc1_c.shape:
                raise WaypointError(f"checkpoint keys {src_x!r} {tuple(fc1_x.shape)} and {src_c!r} "
                                    f"{tuple(fc1_c.shape)} must have the same shape")
            state[p + "ctrl_mlpfusion.mlp.fc1.weight"] = torch.cat([fc1_x, fc1_c], dim=1)
            origin[p + "ctrl_mlpfusion.mlp.fc1.weight"] = f"{src_x} + {src_c}"
        elif fc1_x is not None or fc1_c is not None:
            present = src_x or src_c
            raise WaypointError(f"checkpoint has {present!r} but not its pair (fc1_x and fc1_c come together)")


def check_canonical(state: dict, origin: dict, config: WaypointConfig, source: str):
    """Strict key and shape check; messages name the file's key and both shapes."""
    expected = canonical_shapes(config)
    missing = sorted(set(expected) - set(state))
    if missing:
        more = f" (and {len(missing) - 8} more)" if len(missing) > 8 else ""
        raise WaypointError(f"{source}: missing tensor(s) {missing[:8]}{more} for this config "
                            f"(model_type {config.model_type!r}, {config.n_layers} layers)")
    unexpected = sorted(set(state) - set(expected) - OPTIONAL_KEYS)
    if unexpected:
        names = [origin.get(k, k) for k in unexpected][:8]
        raise WaypointError(f"{source}: unexpected tensor(s) {names} for this config")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise WaypointError(f"{source}: tensor {origin.get(key, key)!r} has shape {tuple(state[key].shape)}, "
                                f"expected {shape}")
    for key in OPTIONAL_KEYS & set(state):
        if state[key].shape[-1] not in (config.d_model, config.prompt_embedding_dim):
            raise WaypointError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}")
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise WaypointError(f"{source}: tensor {origin.get(key, key)!r} has dtype {tensor.dtype}, expected a float")
        if not torch.isfinite(tensor).all():
            raise WaypointError(f"{source}: tensor {origin.get(key, key)!r} holds NaN or infinite values")


def to_inference_layout(state: dict, config: WaypointConfig) -> dict:
    """Canonical state → `WaypointDiT` state (fused QKV, split fusion, shared cond_proj). Consumes `state`."""
    out = {}
    for key in ("denoise_step_emb.mlp.fc1.weight", "denoise_step_emb.mlp.fc2.weight", "patchify.weight",
                "unpatchify.weight", "unpatchify.bias"):
        out[key] = state.pop(key)
    out["ctrl_emb.fc1.weight"] = state.pop("ctrl_emb.mlp.fc1.weight")
    out["ctrl_emb.fc2.weight"] = state.pop("ctrl_emb.mlp.fc2.weight")
    out["out_norm.weight"] = state.pop("out_norm.fc.weight")
    d = config.d_model
    for i in range(config.n_layers):
        p, q = f"transformer.blocks.{i}.", f"blocks.{i}."
        out[q + "attn.qkv.weight"] = torch.cat([state.pop(p + f"attn.{n}_proj.weight") for n in "qkv"])
        out[q + "attn.out_proj.weight"] = state.pop(p + "attn.out_proj.weight")
        for name in ("attn.v_lamb", "attn.gate_proj.weight", "mlp.fc1.weight", "mlp.fc2.weight",
                     "mlp.router.weight", "mlp.expert_in", "mlp.expert_out"):
            if p + name in state:
                out[q + name] = state.pop(p + name)
        if p + "cond_head.bias_in" in state:
            out[q + "bias_in"] = state.pop(p + "cond_head.bias_in")
        for j in range(6):
            weight = state.pop(p + f"cond_head.cond_proj.{j}.weight")
            # Tied weights: the reference's strict load leaves the last block's copy resident.
            target = f"shared_cond_proj.{j}.weight" if config.ties_cond_proj else q + f"cond_proj.{j}.weight"
            out[target] = weight
        if p + "ctrl_mlpfusion.mlp.fc1.weight" in state:
            fc1 = state.pop(p + "ctrl_mlpfusion.mlp.fc1.weight")
            out[q + "ctrl_fusion.fc1_x.weight"], out[q + "ctrl_fusion.fc1_c.weight"] = fc1[:, :d], fc1[:, d:]
            out[q + "ctrl_fusion.fc2.weight"] = state.pop(p + "ctrl_mlpfusion.mlp.fc2.weight")
        for n in ("q", "k", "v", "out"):
            key = p + f"prompt_cross_attn.{n}_proj.weight"
            if key in state:
                out[q + f"cross_attn.{n}_proj.weight"] = state.pop(key)
    return out


def _expect(key: str, tensor: torch.Tensor, shape: tuple):
    if tuple(tensor.shape) != tuple(shape):
        raise WaypointError(f"tensor {key!r} has shape {tuple(tensor.shape)}, expected {tuple(shape)}")


MAX_HEADER_BYTES = 64 * 1024 * 1024
# Keys whose shapes are the same in every layout (published Waypoint-1.5 and canonical): checked in the
# file's header against the config before a single tensor is read.
_HEADER_KEYS = ("patchify.weight", "denoise_step_emb.mlp.fc2.weight", "ctrl_emb.mlp.fc1.weight",
                "out_norm.fc.weight", "transformer.blocks.0.attn.q_proj.weight",
                "transformer.blocks.0.attn.k_proj.weight")


def header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{key: shape} from a .safetensors file's JSON header (8-byte little-endian length, then JSON);
    reads no tensor data."""
    import json
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 2 <= size <= MAX_HEADER_BYTES:
                raise ValueError(f"header length {size}")
            header = json.loads(handle.read(size))
        return {key: tuple(int(n) for n in entry["shape"]) for key, entry in header.items()
                if key != "__metadata__"}
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise WaypointError(f"{path}: not a safetensors file ({err}); is it complete?") from None


def check_header(path: Path, config: WaypointConfig) -> None:
    """Config sizes against the file's header: block count and the layout-independent shapes."""
    shapes = header_shapes(path)
    blocks = {int(match[1]) for match in map(BLOCK.match, shapes) if match}
    if blocks and max(blocks) + 1 != config.n_layers:
        raise WaypointError(f"{path}: config n_layers is {config.n_layers} but the checkpoint has "
                            f"{max(blocks) + 1} blocks")
    expected = canonical_shapes(config)   # a dict of shapes: config sizes are capped, this is small
    for key in _HEADER_KEYS:
        if key in shapes and shapes[key] != expected[key]:
            raise WaypointError(f"{path}: tensor {key!r} has shape {shapes[key]}, but the config (d_model, "
                                f"n_heads, n_kv_heads, channels, patch, mlp_ratio, n_buttons) needs {expected[key]}")


def read_safetensors(path: Path, device="cpu", config: WaypointConfig | None = None) -> dict:
    """Every tensor of a .safetensors file, read straight onto `device`; with `config`, the header is
    checked against it first (so a mismatched config allocates nothing)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise WaypointError(f"weights file not found: {path}")
    if config is not None:
        check_header(path, config)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, RuntimeError) as err:
        raise WaypointError(f"{path}: cannot read safetensors file ({err}); is it complete?") from None
