"""Autoencoder decode throughput: a loaded AE, or a random full-size TAEHV 1.5.

    python -m worldengine.cli.bench_ae            # random TAEHV 1.5 at 360P (256x512 shown at 360x640)
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from worldengine.ae import WorldAutoencoder, load_autoencoder
from worldengine.synthetic.ae import write_random_taehv


def measure_decode_fps(ae: WorldAutoencoder, n_latents: int = 6, warmup_latents: int = 1,
                       seed: int = 0) -> dict:
    """Decode random latents through a fresh decoder stream; returns frames/s and ms per latent.

    The first `warmup_latents` calls (TAEHV warm-up included) are not timed.
    """
    generator = torch.Generator().manual_seed(seed)
    shape = (n_latents + warmup_latents, ae.latent_channels, *ae.latent_hw)
    latents = torch.randn(shape, generator=generator)
    decoder = ae.decoder()
    for latent in latents[:warmup_latents]:
        decoder.decode(latent)
    frames = 0
    start = time.perf_counter()
    for latent in latents[warmup_latents:]:
        frames += decoder.decode(latent).shape[0]
    seconds = time.perf_counter() - start
    return {"frames_per_s": frames / seconds, "ms_per_latent": 1000 * seconds / n_latents,
            "frames": frames, "output_size": ae.output_size, "threads": torch.get_num_threads()}


def bench_random_taehv(latent_hw: tuple[int, int] = (16, 32), n_latents: int = 4,
                       dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict:
    """Decode throughput of a random full-size TAEHV 1.5 (default 360P: 256x512 shown at 360x640).

    `python -m worldengine.cli.bench_ae`
    """

    with tempfile.TemporaryDirectory() as folder:
        write_random_taehv(Path(folder) / "taehv1_5.safetensors")
        ae = load_autoencoder(folder, device=device, dtype=dtype, latent_hw=latent_hw)
    return measure_decode_fps(ae, n_latents=n_latents)


if __name__ == "__main__":
    print(bench_random_taehv())
