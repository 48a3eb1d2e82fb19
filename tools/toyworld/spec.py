"""The toy model's config (Waypoint-1.5 DiT layout, toy sizes) and the data <-> control-vector mapping."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tools.toyworld.render import KEY_A, KEY_D, KEY_S, KEY_W

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO_ROOT / "models" / "toyworld"
KEYS = (KEY_W, KEY_A, KEY_S, KEY_D)      # column order of the stored key arrays
AE_PATCH, AE_CHANNELS = 8, 8             # 64x128 frames -> latents [8, 8, 16]

TOY_CONFIG = {
    "model_type": "waypoint-1.5", "d_model": 64, "n_layers": 4, "n_heads": 2, "n_kv_heads": 1,
    "mlp_ratio": 4, "channels": AE_CHANNELS, "height": 4, "width": 8, "patch": [2, 2],
    "tokens_per_frame": 32, "local_window": 4, "global_window": 8, "global_pinned_dilation": 2,
    "global_attn_period": 2, "global_attn_offset": -1, "value_residual": True, "gated_attn": False,
    "noise_conditioning": "wan", "ctrl_conditioning": True, "ctrl_cond_dropout": 0.0,
    "ctrl_conditioning_period": 1, "prompt_conditioning": None, "n_buttons": 256,
    "scheduler_sigmas": [1.0, 0.9, 0.75, 0.3, 0.0], "base_fps": 15, "inference_fps": 15,
    "temporal_compression": 1, "n_frames": 8, "taehv_ae": False, "ae_uri": None, "causal": True,
    "moe": False, "rope_impl": "ortho",
}


def control_vectors(keys: np.ndarray, mouse_dx: np.ndarray, n_buttons: int = 256) -> torch.Tensor:
    """keys [..., 4] (W, A, S, D pressed 0/1), mouse_dx [...] -> engine control vectors [..., n_buttons+3]
    (mouse dx, dy, buttons, scroll), the layout of `Controls.to_vector`."""
    out = torch.zeros(*mouse_dx.shape, n_buttons + 3)
    out[..., 0] = torch.as_tensor(mouse_dx, dtype=torch.float32)
    for column, code in enumerate(KEYS):
        out[..., 2 + code] = torch.as_tensor(keys[..., column], dtype=torch.float32)
    return out

# Version 2 (tools/toyworld/game.py + worldengine/ae/toy.py ToyTAE): 256x144 frames, 4 frames per latent -> latents
# [16, 9, 16]; patch 1x2 gives 9x8 = 72 tokens per latent. Latent-frame windows: local 4 (16 video
# frames), global 8 with dilation 2. ts_mult = 15 // (60 / 4) = 1, as in the real 1.5 presets.
TOY2_CONFIG = {
    **TOY_CONFIG, "d_model": 128, "n_layers": 4, "n_heads": 4, "n_kv_heads": 2, "channels": 16,
    "height": 9, "width": 8, "patch": [1, 2], "tokens_per_frame": 72, "base_fps": 15, "inference_fps": 60,
    "temporal_compression": 4, "taehv_ae": True,
}
