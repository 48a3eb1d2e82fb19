"""Benchmark presets: config.yaml-shaped dicts, the same names on every machine.

`tiny` is the oracle checkpoint's size; `cpu-small` is a scaled-down Waypoint-1.5 layout that a
2-core CPU can run; `wp15-360p` / `wp15-720p` / `wp1-small` are the published model
configs. Random weights at these sizes give real speed figures.
"""
from __future__ import annotations

import copy

from worldengine.errors import WaypointError

SIGMAS_WP15 = [1.0, 0.9, 0.75, 0.3, 0.0]
SIGMAS_WP1 = [1.0, 0.8609585762023926, 0.729332447052002, 0.3205108940601349, 0.0]

# Copied field by field from oracles/wp15_tiny/config.yaml.
TINY = {
    "model_type": "waypoint-1.5", "d_model": 64, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2,
    "mlp_ratio": 2, "channels": 8, "height": 8, "width": 16, "patch": [2, 2], "tokens_per_frame": 128,
    "local_window": 4, "global_window": 8, "global_pinned_dilation": 2, "global_attn_period": 2,
    "global_attn_offset": -1, "value_residual": True, "gated_attn": False, "noise_conditioning": "wan",
    "ctrl_conditioning": True, "ctrl_cond_dropout": 0.0, "ctrl_conditioning_period": 3,
    "prompt_conditioning": None, "n_buttons": 256, "scheduler_sigmas": SIGMAS_WP15, "base_fps": 30,
    "inference_fps": 60, "temporal_compression": 4, "n_frames": 512, "taehv_ae": True,
    "ae_uri": "Overworld-Models/taehv1_5", "causal": True, "moe": False, "rope_impl": "ortho",
}

# The oracle size in the Waypoint-1 layout (prompt cross-attention, gated attention, no TAEHV).
_TINY_WP1_OVERRIDES = {
    "model_type": "waypoint-1", "global_attn_offset": 0, "value_residual": False, "gated_attn": True,
    "ctrl_conditioning": "mlp_fusion", "prompt_conditioning": "cross_attention",
    "prompt_conditioning_period": 3, "prompt_embedding_dim": 32, "base_fps": 60,
    "inference_fps": None, "temporal_compression": 1, "taehv_ae": False,
    "scheduler_sigmas": SIGMAS_WP1,
}
TINY_WP1 = {k: v for k, v in {**TINY, **_TINY_WP1_OVERRIDES}.items() if v is not None}


def _toy_world() -> dict:
    """The shipped offline toy world's config (a Waypoint-1.5 layout), {} where it is not shipped."""
    import yaml

    from worldengine.paths import TOY_MODEL_DIR
    path = TOY_MODEL_DIR / "config.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


# The real Waypoint-1.5-1B layout (720P); the 360P variant differs only in the token grid.
WP15_720P = {
    "model_type": "waypoint-1.5", "d_model": 2048, "n_layers": 24, "n_heads": 32, "n_kv_heads": 16,
    "mlp_ratio": 4, "channels": 32, "patch": [2, 2], "height": 16, "width": 32, "tokens_per_frame": 512,
    "local_window": 16, "global_window": 128, "global_pinned_dilation": 8, "global_attn_period": 4,
    "global_attn_offset": -1, "value_residual": True, "gated_attn": False, "noise_conditioning": "wan",
    "moe": False, "ctrl_conditioning": True, "ctrl_cond_dropout": 0.0, "ctrl_conditioning_period": 3,
    "prompt_conditioning": None, "n_buttons": 256, "scheduler_sigmas": SIGMAS_WP15, "base_fps": 15,
    "inference_fps": 60, "temporal_compression": 4, "n_frames": 512, "causal": True,
    "rope_impl": "ortho", "rope_nyquist_frac": 0.8, "rope_theta": 10000.0, "taehv_ae": True,
    "ae_uri": "Overworld-Models/taehv1_5", "auto_aspect_ratio": True,
}

WP15_360P = {**WP15_720P, "height": 8, "width": 16, "tokens_per_frame": 128}

# The 1.5 layout shrunk to d_model 512 / 8 layers, real windows and token grid.
CPU_SMALL = {**WP15_360P, "d_model": 512, "n_layers": 8, "n_heads": 8, "n_kv_heads": 4}

WP1_SMALL = {
    "model_type": "waypoint-1", "d_model": 2560, "n_heads": 40, "n_kv_heads": 20, "n_layers": 22,
    "mlp_ratio": 5, "channels": 16, "height": 16, "width": 16, "patch": [2, 2], "tokens_per_frame": 256,
    "n_frames": 4096, "local_window": 16, "global_window": 128, "global_attn_period": 4,
    "global_pinned_dilation": 8, "global_attn_offset": 0, "value_residual": False, "gated_attn": True,
    "causal": True, "noise_conditioning": "wan", "n_buttons": 256, "ctrl_conditioning": "mlp_fusion",
    "ctrl_conditioning_period": 3, "ctrl_cond_dropout": 0.0, "prompt_conditioning": "cross_attention",
    "prompt_conditioning_period": 3, "prompt_embedding_dim": 2048, "prompt_cond_dropout": 0.0,
    "scheduler_sigmas": SIGMAS_WP1, "base_fps": 60, "rope_impl": "ortho",
    "ae_uri": "OpenWorldLabs/owl_vae_f16_c16_distill_v0_nogan",
}

PRESETS = {
    "tiny": TINY,
    "tiny-wp1": TINY_WP1,
    "cpu-small": CPU_SMALL,
    "wp15-360p": WP15_360P,
    "wp15-720p": WP15_720P,
    "wp1-small": WP1_SMALL,
}
_TOY_WORLD = _toy_world()
if _TOY_WORLD:
    PRESETS["toyworld"] = _TOY_WORLD


def preset_dict(name: str) -> dict:
    """A fresh copy of preset ``name``'s config fields (safe to modify)."""
    if name not in PRESETS:
        raise WaypointError(f"unknown benchmark preset {name!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def preset_config(name: str):
    """Preset ``name`` as a validated WaypointConfig."""
    from worldengine.config import config_from_dict

    return config_from_dict(preset_dict(name), source=f"preset {name!r}")
