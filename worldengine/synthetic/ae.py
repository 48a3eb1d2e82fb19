"""Random autoencoder checkpoints in the real on-disk layouts, for tests, the CLI and toy worlds.

- `write_random_taehv(path)`: TAEHV 1.5 state dict (the 128 keys and shapes of the real
  `taehv1_5.pth`; 11.4M parameters, about 23 MB as float16) as `.safetensors` or, for loader tests, a
  plain `.pth` state dict.
- `write_random_owl_ae(folder)`: Waypoint-1 AE files (weight-normalised keys + `*_conf.yml`) at a
  small width (ch_0 16, ch_max 64 by default).

Weights are drawn from a seeded generator (no global RNG use) and scaled so that latents are
O(1) and decoded frames spread over (0, 1) instead of collapsing onto the clamp.
"""

from __future__ import annotations

from pathlib import Path

import torch

from worldengine.ae.owl import OwlAE, OwlAEConfig, fold_weight_norm
from worldengine.ae.taehv import TAEHV, run_blocks


def _random_like(shape: torch.Size, fan_in: int, gain: float, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator) * (gain / fan_in**0.5)


def random_taehv_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """float32 TAEHV 1.5 state dict: He-style random weights, small biases, calibrated output layers.

    The last conv of every MemBlock branch is damped (residual paths stay O(1)); then the encoder's
    last conv is scaled for latent std 1 and the decoder's for frame std 0.15 around 0.5, measured on a
    seeded 64x128 clip.
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    with torch.device("meta"):  # shapes only; skips the default init of 11M parameters
        model = TAEHV()
    for key, tensor in model.state_dict().items():
        if key.endswith(".bias"):
            state[key] = torch.randn(tensor.shape, generator=generator) * 0.02
        else:
            gain = 0.3 if ".conv.4." in key else 1.4
            state[key] = _random_like(tensor.shape, tensor[0].numel(), gain, generator)
    state["decoder.22.bias"] = torch.zeros_like(state["decoder.22.bias"])
    model.load_state_dict(state, assign=True)
    clip = torch.rand((4, 3, 64, 128), generator=generator)
    with torch.no_grad():
        latents = model.encode_video(clip)
        state["encoder.17.weight"] /= latents.std()
        state["encoder.17.bias"] /= latents.std()
        raw = run_blocks(model.decoder, torch.randn((2, 32, 4, 8), generator=generator), {})
    state["decoder.22.weight"] *= 0.15 / raw.std()
    state["decoder.22.bias"] = torch.full_like(state["decoder.22.bias"], 0.5)
    return state


def write_random_taehv(path: str | Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    """Write a random TAEHV 1.5 checkpoint; `.safetensors` or `.pth` (plain tensor state dict) by suffix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.to(dtype).contiguous() for key, value in random_taehv_state(seed).items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state, str(path), metadata={"format": "pt"})
    else:
        torch.save(state, path)
    return path


def _owl_conf_text(cfg: OwlAEConfig) -> str:
    lines = ["model:", f"  channels: {cfg.channels}", f"  latent_channels: {cfg.latent_channels}",
             f"  ch_0: {cfg.ch_0}", f"  ch_max: {cfg.ch_max}",
             f"  encoder_blocks_per_stage: {list(cfg.encoder_blocks_per_stage)}",
             f"  decoder_blocks_per_stage: {list(cfg.decoder_blocks_per_stage)}",
             f"  skip_logvar: {str(cfg.skip_logvar).lower()}"]
    return "\n".join(lines) + "\n"


def _weight_normed(module: torch.nn.Module, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Plain conv weights -> random (g, v) weight-norm pairs; g not equal to ||v|| on purpose."""
    state = {}
    for key, tensor in module.state_dict().items():
        if key.endswith(".bias"):
            state[key] = torch.randn(tensor.shape, generator=generator) * 0.02
            continue
        conv = key[: -len(".weight")]
        fan_in = tensor[0].numel()
        gain = 0.5 * torch.rand((tensor.shape[0], 1, 1, 1), generator=generator) + 0.5
        state[conv + ".parametrizations.weight.original0"] = gain * 1.2
        state[conv + ".parametrizations.weight.original1"] = _random_like(tensor.shape, fan_in, 3.0, generator)
    return state


def _calibrate_owl_decoder(model: OwlAE, state: dict[str, torch.Tensor], generator: torch.Generator) -> None:
    """Scale the decoder's conv_out so raw output has std 0.3 (frames = raw/2 + 0.5 stay off the clamp)."""
    model.decoder.load_state_dict(fold_weight_norm(state, "random Waypoint-1 AE decoder"))
    with torch.no_grad():
        raw = model.decoder(torch.randn((1, model.latent_channels, 8, 8), generator=generator))
    scale = 0.3 / raw.std()
    state["conv_out.proj.parametrizations.weight.original0"] *= scale
    state["conv_out.proj.bias"] = torch.zeros_like(state["conv_out.proj.bias"])


def write_random_owl_ae(folder: str | Path, seed: int = 0, ch_0: int = 16, ch_max: int = 64,
                        latent_channels: int = 16) -> Path:
    """Write encoder/decoder .safetensors + _conf.yml (4 stages, 1 block each) into `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = OwlAEConfig(channels=3, latent_channels=latent_channels, ch_0=ch_0, ch_max=ch_max,
                      encoder_blocks_per_stage=(1, 1, 1, 1), decoder_blocks_per_stage=(1, 1, 1, 1))
    model = OwlAE(cfg, cfg)
    generator = torch.Generator().manual_seed(seed)
    states = {part: _weight_normed(getattr(model, part), generator) for part in ("encoder", "decoder")}
    _calibrate_owl_decoder(model, states["decoder"], generator)
    for part, state in states.items():
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / f"{part}.safetensors"))
        (folder / f"{part}_conf.yml").write_text(_owl_conf_text(cfg))
    return folder
