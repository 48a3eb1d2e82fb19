"""Random Waypoint checkpoints written in the exact published on-disk layouts (tests, benchmarks, demos).

`write_checkpoint(folder, config_dict)` writes `config.yaml` + `model.safetensors` (bf16, like the
published files): the raw Waypoint-1.5 layout for model_type "waypoint-1.5", world_engine module
names for Waypoint-1. `random_canonical_state` gives the same weights in the canonical layout.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from worldengine.checkpoint import canonical_shapes
from worldengine.config import WaypointConfig, config_from_dict

def tiny_config_dict(model_type: str = "waypoint-1.5", **overrides) -> dict:
    """The oracle-sized config (d_model 64, 4 layers, 8x16 tokens) as a config.yaml dict."""
    from worldengine.synthetic.presets import TINY, TINY_WP1

    values = copy.deepcopy(TINY_WP1 if model_type == "waypoint-1" else TINY)
    values.update(overrides)
    return values


def random_prompt(config: WaypointConfig, tokens: int = 512, seed: int = 0) -> torch.Tensor | None:
    """A random prompt embedding [tokens, prompt_embedding_dim] float32 (UMT5's 512 rows), or None for a
    model without prompt conditioning (so `session.set_prompt(random_prompt(config))` fits every model)."""
    if not config.has_prompt:
        return None
    return torch.randn(tokens, config.prompt_embedding_dim, generator=torch.Generator().manual_seed(seed))


def random_canonical_state(config: WaypointConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights in the canonical layout, scaled so activations stay O(1) through the blocks."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in canonical_shapes(config).items():
        if key.endswith("v_lamb"):
            tensor = torch.tensor(0.5)
        elif len(shape) == 1:
            tensor = torch.randn(shape, generator=generator) * 0.1
        else:
            fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
            tensor = torch.randn(shape, generator=generator) / fan_in ** 0.5
            if "cond_proj" in key or "out_norm" in key:
                tensor = tensor * 0.2   # modest AdaLN modulation, like a trained model
        state[key] = tensor
    if config.ties_cond_proj:  # published files carry identical copies of the shared weights
        for i in range(1, config.n_layers):
            for j in range(6):
                state[f"transformer.blocks.{i}.cond_head.cond_proj.{j}.weight"] = \
                    state[f"transformer.blocks.0.cond_head.cond_proj.{j}.weight"]
    c, (ph, pw) = config.channels, config.patch
    state["unpatchify.bias"] = torch.randn(c, generator=generator).mul(0.1).repeat_interleave(ph * pw)
    if config.ctrl_conditioning is not None:
        state["ctrl_cfg.null_emb"] = torch.zeros(1, 1, config.d_model)
    if config.has_prompt:
        state["prompt_cfg.null_emb"] = torch.zeros(1, 1, config.prompt_embedding_dim)
    return state


def to_published_waypoint15(state: dict, config: WaypointConfig) -> dict:
    """Canonical → the published Waypoint-1.5 raw layout (inverse of the load-time remap)."""
    d, c, (ph, pw) = config.d_model, config.channels, config.patch
    raw = {}
    for key, tensor in state.items():
        if key == "unpatchify.weight":
            raw[key] = tensor.reshape(c, ph, pw, d).permute(3, 0, 1, 2)
        elif key == "unpatchify.bias":
            raw[key] = tensor.reshape(c, ph * pw)[:, 0]
        elif ".cond_head.cond_proj." in key:
            prefix, slot = key.split(".cond_head.cond_proj.")
            j = int(slot.split(".")[0])
            head = "attn" if j < 3 else "mlp"
            raw[f"{prefix}.{head}_cond_head.cond_proj.{j % 3}.weight"] = tensor
        elif key.endswith(".cond_head.bias_in"):
            prefix = key[: -len(".cond_head.bias_in")]
            raw[prefix + ".mlp_cond_head.bias_in"] = tensor
            raw[prefix + ".attn_cond_head.bias_in"] = tensor + 1.0  # unused by the reference; must stay unused
        elif key.endswith("ctrl_mlpfusion.mlp.fc1.weight"):
            prefix = key[: -len("mlp.fc1.weight")]
            raw[prefix + "fc1_x.weight"], raw[prefix + "fc1_c.weight"] = tensor[:, :d], tensor[:, d:]
        elif key.endswith("ctrl_mlpfusion.mlp.fc2.weight"):
            raw[key.replace("mlp.fc2", "fc2")] = tensor
        elif ".mlp." in key and key.startswith("transformer."):
            raw[key.replace(".mlp.", ".dit_mlp.", 1)] = tensor
        else:
            raw[key] = tensor
    return raw


def write_checkpoint(folder: str | Path, config_values: dict, seed: int = 0,
                     state: dict | None = None) -> Path:
    """Write config.yaml + model.safetensors (bf16) in the published layout of the model type."""
    import yaml
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = config_from_dict(config_values, source="write_checkpoint")
    state = dict(state) if state is not None else random_canonical_state(config, seed)
    if config.model_type == "waypoint-1.5":
        state = to_published_waypoint15(state, config)
    tensors = {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in state.items()}
    (folder / "config.yaml").write_text(yaml.safe_dump(config_values, sort_keys=False))
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


# Latent geometry each autoencoder imposes on a model: TAEHV 1.5 gives 32 channels at 1/16 of
# 256x512; the Waypoint-1 AE gives 16 channels at 32x32. Patch 2 makes these 8x16 and 16x16 tokens.
AE_GEOMETRY = {"waypoint-1.5": {"channels": 32, "height": 8, "width": 16, "tokens_per_frame": 128},
               "waypoint-1": {"channels": 16, "height": 16, "width": 16, "tokens_per_frame": 256}}


def write_tiny_checkpoint(folder: str | Path, model_type: str = "waypoint-1.5", with_ae: bool = True,
                          seed: int = 0, **overrides) -> Path:
    """A tiny random model folder; with_ae adds a random autoencoder of the model's kind (TAEHV 1.5
    at its real size, ~23 MB as float16, or a narrow Waypoint-1 AE) and sizes the latent to match."""
    geometry = AE_GEOMETRY[model_type] if with_ae else {}
    folder = write_checkpoint(folder, tiny_config_dict(model_type, **{**geometry, **overrides}), seed=seed)
    if with_ae:
        from worldengine.synthetic.ae import write_random_owl_ae, write_random_taehv
        if model_type == "waypoint-1.5":
            write_random_taehv(folder / "taehv1_5.safetensors", seed=seed)
        else:
            write_random_owl_ae(folder, seed=seed)
    return folder
