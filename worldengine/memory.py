"""How much memory a Waypoint model needs: weights per quant, KV cache per session, world snapshots.

Two kinds of figures:
- `model_memory(config, dtype, quant)`: computed from a config alone (a meta-device model, nothing
  allocated), for the docs and for sizing before a load (docs/memory.md is generated from it);
- `engine_memory(engine)`: counted from the tensors a loaded engine really holds (its weights, its
  autoencoder, the KV caches of its live sessions) plus the estimated forward workspace. This is
  what a host's memory manager (ComfyUI's) is told the engine occupies on its device.

Sizes are bytes. The forward workspace is an estimate (see `workspace_bytes`), everything else is exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from worldengine.config import WaypointConfig
from worldengine.options import Quant, parse_quant

MIB = 1024 * 1024


@dataclass(frozen=True)
class ModelMemory:
    """Bytes one model needs: `weights` (DiT, in the chosen dtype / quant), `kv_per_session` (one world's
    ring buffers incl. the scratch tail and key masks), `snapshot` (one CPU copy of a world's state, as a
    World handle or a snapshot file holds it), `workspace` (estimated activations of one forward)."""

    weights: int
    kv_per_session: int
    snapshot: int
    workspace: int

    def total(self, sessions: int = 1) -> int:
        """Device bytes for the weights, `sessions` live worlds and one forward (autoencoder not included)."""
        return self.weights + sessions * self.kv_per_session + self.workspace


def _dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def weight_bytes(config: WaypointConfig, dtype: torch.dtype = torch.bfloat16, quant: str | None = None) -> int:
    """DiT weight bytes for `dtype` and `quant` (none / int8 / fp8), counted on a meta-device model.

    Quantized linears (those `apply_speed_options` replaces) hold 1 byte per weight plus a float32
    scale per output row and a float32 bias; the noise MLP stays float32 as at load time.
    """
    from worldengine.model import WaypointDiT
    from worldengine.quant.int8 import DEFAULT_SKIP, _eligible

    quant = parse_quant(quant)
    skip = DEFAULT_SKIP + ("denoise_step_emb", "cond_proj")
    with torch.device("meta"):
        model = WaypointDiT(config)
    size = _dtype_bytes(dtype)
    quantized: set[str] = set()
    total = 0
    if quant is not Quant.NONE:
        for name, module in model.named_modules():
            if type(module) is torch.nn.Linear and _eligible(name, module, skip, 32):
                quantized.update({f"{name}.weight", f"{name}.bias"})
                total += module.weight.numel() + 4 * module.out_features
                total += 4 * module.out_features if module.bias is not None else 0
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name in quantized:
            continue
        total += tensor.numel() * (4 if name.startswith("denoise_step_emb.") else size)
    return total


def kv_session_bytes(config: WaypointConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """One session's `RingKVCache`: per layer [2, Hk, (buckets + 1) * T, dh] in `dtype`, plus bool masks."""
    tokens, size = config.tokens_per_frame, _dtype_bytes(dtype)
    rings = [config.ring(i) for i in range(config.n_layers)]
    kv = sum(2 * config.n_kv_heads * (buckets + 1) * tokens * config.d_head * size for _, buckets in rings)
    masks = sum((buckets + 1) * tokens for _, buckets in set(rings))
    return kv + masks


def snapshot_bytes(config: WaypointConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """One world snapshot on the CPU: the rings without their scratch tail, plus the last latent
    (float32) and, for Waypoint-1, a prompt embedding of up to 512 rows (float32)."""
    tokens, size = config.tokens_per_frame, _dtype_bytes(dtype)
    kv = sum(2 * config.n_kv_heads * buckets * tokens * config.d_head * size
             for _, buckets in (config.ring(i) for i in range(config.n_layers)))
    channels, height, width = config.latent_shape
    prompt = 512 * config.prompt_embedding_dim * 4 if config.has_prompt else 0
    return kv + channels * height * width * 4 + prompt


def workspace_bytes(config: WaypointConfig, dtype: torch.dtype = torch.bfloat16) -> int:
    """Estimated peak activations of one forward pass (what a compiled graph's / CUDA graph's memory pool
    keeps reserved): a handful of [T, d_model] and [T, mlp_hidden] tensors, plus one layer's attention
    scores [heads, T, keys] in float32 in case attention falls back to the unfused kernel."""
    tokens, size = config.tokens_per_frame, _dtype_bytes(dtype)
    keys = max((buckets + 1) * tokens for _, buckets in (config.ring(i) for i in range(config.n_layers)))
    hidden = tokens * (8 * config.d_model + 2 * config.mlp_hidden) * size
    scores = config.n_heads * tokens * keys * 4
    return hidden + scores


def model_memory(config: WaypointConfig, dtype: torch.dtype = torch.bfloat16, quant: str | None = None) -> ModelMemory:
    """Every figure of `ModelMemory` for one config, dtype and quant, computed without allocating."""
    return ModelMemory(weights=weight_bytes(config, dtype, quant), kv_per_session=kv_session_bytes(config, dtype),
                       snapshot=snapshot_bytes(config, dtype), workspace=workspace_bytes(config, dtype))


def module_bytes(module: torch.nn.Module | None) -> int:
    """Bytes of a module's parameters and buffers (each storage counted once)."""
    if module is None:
        return 0
    seen, total = set(), 0
    for tensor in [*module.parameters(), *module.buffers()]:
        key = (tensor.device, tensor.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def tensors_bytes(tensors) -> int:
    """Bytes of an iterable of tensors (each storage counted once)."""
    seen, total = set(), 0
    for tensor in tensors:
        key = (tensor.device, tensor.untyped_storage().data_ptr())
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
    return total


def format_mib(size: int) -> str:
    return f"{size / MIB:,.1f} MiB" if size < 1024 * MIB else f"{size / (1024 * MIB):,.2f} GiB"


# The published models, as named in the README's model table, and their preset configs.
PUBLISHED = (("Overworld/Waypoint-1.5-1B-360P", "wp15-360p"), ("Overworld/Waypoint-1.5-1B", "wp15-720p"),
             ("Overworld/Waypoint-1-Small", "wp1-small"))


def markdown_table(dtype: torch.dtype = torch.bfloat16) -> str:
    """docs/memory.md's table: per published model, weights per quant, KV per session, one snapshot
    and the forward workspace, in `dtype` (bf16: the GPU default)."""
    from worldengine.synthetic.presets import preset_config

    rows = ["| model | weights (none / int8 / fp8) | KV per session | snapshot (per kept world) | workspace |",
            "|---|---|---|---|---|"]
    for repo_id, preset in PUBLISHED:
        config = preset_config(preset)
        full = model_memory(config, dtype)
        quantized = weight_bytes(config, dtype, "int8")   # fp8 stores 1 byte per weight too, same scales
        rows.append(f"| `{repo_id}` | {format_mib(full.weights)} / {format_mib(quantized)} / {format_mib(quantized)} "
                    f"| {format_mib(full.kv_per_session)} | {format_mib(full.snapshot)} | {format_mib(full.workspace)} |")
    return "\n".join(rows)


# ---- a loaded engine ------------------------------------------------------------------------------

def engine_memory(engine) -> dict[str, int]:
    """What a loaded engine holds on its device, in bytes: `weights` (DiT, as quantized), `autoencoder`
    (0 until loaded), `kv` (every live session's ring buffers and masks), `workspace` (estimated forward
    activations, see `workspace_bytes`), `batch` (the batched-stepping workspaces made so far: per bucket
    size B about B more KV caches, `worldengine.batch`) and their `total`."""
    from worldengine.batch import workspace_tensors
    sessions = list(getattr(engine, "_sessions", ()))
    ae = engine._autoencoder
    figures = {"weights": module_bytes(engine.model), "autoencoder": module_bytes(ae.model) if ae is not None else 0,
               "kv": tensors_bytes(t for s in sessions for t in (*s.cache.buffers, *s.cache.mask_buffers.values())),
               "workspace": workspace_bytes(engine.config, engine.dtype),
               "batch": tensors_bytes(workspace_tensors(engine))}
    figures["total"] = sum(figures.values())
    return figures


def _move(tensor: torch.Tensor, device: torch.device, copy: bool) -> None:
    # In place (`.data`): the session's mask list, static-address marks and closures keep pointing at
    # the same tensor objects, so nothing else needs to know the engine moved.
    tensor.data = tensor.data.to(device, copy=copy)


def move_engine(engine, device: str | torch.device, copy: bool = False) -> None:
    """Move an engine in place to `device`: weights, autoencoder, precomputed RoPE / sigma tables, the
    KV cache and prompt context of every live session and the batch workspaces (an offload to "cpu" and
    back). A world's values are unchanged by the trip. `copy` reallocates even on the same device (tests).
    A compiled forward is kept: dynamo re-guards on the new device, CUDA graphs re-record on the new addresses."""
    from worldengine.batch import workspace_tensors
    device = torch.device(device)
    if device == torch.device(engine.device) and not copy:
        return
    with torch.inference_mode(False), torch.no_grad():
        engine.model.to(device)
        if copy and device.type == "cpu":
            for tensor in [*engine.model.parameters(), *engine.model.buffers()]:
                _move(tensor, device, copy)
        if engine._autoencoder is not None:
            engine._autoencoder.model.to(device)
        for value in vars(engine.rope).values():
            if isinstance(value, torch.Tensor):
                _move(value, device, copy)
        for cond in engine.sigma_conditioning:
            _move(cond.block_mods, device, copy)
            _move(cond.out_mod, device, copy)
        for session in list(getattr(engine, "_sessions", ())):
            for tensor in (*session.cache.buffers, *session.cache.mask_buffers.values()):
                _move(tensor, device, copy)
            if session._prompt_normed is not None:
                session._prompt_normed = session._prompt_normed.to(device)
        for tensor in workspace_tensors(engine):   # batched stepping's static rows go along too
            _move(tensor, device, copy)
    engine.device = device
