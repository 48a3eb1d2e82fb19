"""Fit the version-2 toy autoencoder (worldengine/ae/toy.py, `ToyTAE`) on rendered episodes.

    python -m tools.toyworld.train_ae --work _work/toyworld --minutes 15

Data: `--episodes` worlds with seeds AE_SEED0.. (never the model's training or held-out worlds),
`--latents` x 4 frames each, rendered at start (uint8 in memory, ~0.1 MB a frame). A step takes B
clips of 2 latents (8 frames) and decodes latent 1 with latent 0 as its stream state (and latent 0
with itself, the start of a stream), so the decoder learns both cases. Loss: pixel MSE + 0.5 L1.
Gaussian noise (std 0.1 of the latent RMS) is added to the latents before decoding so the decoder
tolerates the world model's small errors. The run resumes from `<work>/ae_state.safetensors`
(weights, AdamW moments, seconds trained) and writes `<work>/toy_ae.safetensors` at every save; the
learning rate follows the seconds trained over `--minutes` in total, across resumes. Seconds are
CPU seconds on the CPU (ckpt.BudgetClock), so a paused or starved run spends no budget.

`--decoder-only` fine-tunes the decoder of that AE with the encoder (and the latent scale) frozen, so
latents already encoded (`<work>/data`) and a world model trained on them stay valid. Its state is
`<work>/ae_decoder_state.safetensors` (its own budget), and its loss adds `--edge-weight` x the L1
of the horizontal and vertical pixel differences: MSE alone settles for a blurred floor, on which
walking (the tiles sliding down the frame) is invisible.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools.toyworld.ckpt import BudgetClock, load_training_state, save_training_state
from tools.toyworld.episodes import AE_SEED0, make_episode
from worldengine.ae.toy import ToyTAE, save_tae


def render_buffer(episodes: int, latents: int) -> torch.Tensor:
    """uint8 [E, 4N, 3, H, W] frames of the AE worlds."""
    return torch.stack([torch.from_numpy((make_episode(AE_SEED0 + e, latents)[0] * 255).round().astype(np.uint8))
                        for e in range(episodes)])


def lr_at(fraction: float, peak: float, warmup: float = 0.03) -> float:
    if fraction < warmup:
        return peak * max(fraction, 1e-3) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (fraction - warmup) / (1 - warmup)))))


def edge_l1(frames: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical pixel differences of [..., H, W] frames and target."""
    return (F.l1_loss(frames.diff(dim=-1), target.diff(dim=-1)) + F.l1_loss(frames.diff(dim=-2), target.diff(dim=-2)))


def ae_loss(model: ToyTAE, clips: torch.Tensor, generator: torch.Generator, noise: float = 0.1,
            edge_weight: float = 0.0) -> torch.Tensor:
    """clips [B, 8, 3, H, W] float in [0, 1] -> scalar loss over both latents of every clip."""
    b = clips.shape[0]
    latents = model.encode(clips.flatten(0, 1))
    latents = latents.view(b, 2, *latents.shape[1:])
    noisy = latents + noise * torch.randn(latents.shape, generator=generator).to(latents.device)
    previous = torch.stack([noisy[:, 0], noisy[:, 0]], 1)
    frames = model.decode_pair(noisy.flatten(0, 1), previous.flatten(0, 1)).view_as(clips)
    loss = F.mse_loss(frames, clips) + 0.5 * F.l1_loss(frames, clips) + 1e-4 * latents.square().mean()
    return loss + edge_weight * edge_l1(frames, clips) if edge_weight else loss


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=15.0, help="total training budget across resumes")
    parser.add_argument("--episodes", type=int, default=24)
    parser.add_argument("--latents", type=int, default=16)
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--save-every", type=float, default=3.0, help="minutes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoder-only", action="store_true", help="fine-tune the decoder, encoder frozen")
    parser.add_argument("--edge-weight", type=float, default=0.0, help="weight of the pixel-difference L1")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    args.work.mkdir(parents=True, exist_ok=True)
    state_path = args.work / ("ae_decoder_state.safetensors" if args.decoder_only else "ae_state.safetensors")
    model = ToyTAE().to(args.device)
    if args.decoder_only:
        if not state_path.is_file():
            load_training_state(args.work / "ae_state.safetensors", model, None)
        model.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-4)
    info = {"steps": 0, "seconds": 0.0}
    if state_path.is_file():
        info = load_training_state(state_path, model, optimizer)
        print(f"resumed AE at step {info['steps']} ({info['seconds'] / 60:.1f} min)", flush=True)
    if info["seconds"] >= 60 * args.minutes:
        print("AE budget already spent", flush=True)
        return
    buffer = render_buffer(args.episodes, args.latents)
    rng = np.random.default_rng(info["steps"])
    generator = torch.Generator().manual_seed(info["steps"])
    clock, last_save, ema = BudgetClock(args.device, info["seconds"]), time.time(), None
    while (elapsed := clock.elapsed()) < 60 * args.minutes:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(elapsed / (60 * args.minutes), args.lr)
        e = rng.integers(0, buffer.shape[0], args.batch)
        t0 = rng.integers(0, buffer.shape[1] // 4 - 1, args.batch) * 4
        clips = torch.stack([buffer[i, t:t + 8] for i, t in zip(e, t0)]).to(args.device).float() / 255
        loss = ae_loss(model, clips, generator, edge_weight=args.edge_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        info["steps"] += 1
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if info["steps"] % 20 == 0:
            print(f"ae step {info['steps']} t={elapsed:.0f}s loss={ema:.5f}", flush=True)
        if time.time() - last_save > 60 * args.save_every:
            info["seconds"] = clock.elapsed()
            finish(model, optimizer, info, state_path, buffer, rescale=not args.decoder_only)
            last_save = time.time()
    info["seconds"] = clock.elapsed()
    finish(model, optimizer, info, state_path, buffer, rescale=not args.decoder_only)
    print(f"AE done: {info['steps']} steps", flush=True)


@torch.no_grad()
def finish(model: ToyTAE, optimizer, info: dict, state_path: Path, buffer: torch.Tensor, rescale: bool = True) -> None:
    """Save state and `toy_ae.safetensors` beside it; with `rescale`, first set the latent scale to the RMS
    of latents over part of the buffer (a frozen encoder keeps its scale, so its latents stay valid)."""
    if rescale:
        model.eval()
        sample = buffer[:8, :32].flatten(0, 1).to(model.scale.device).float() / 255
        raw = model.encode(sample) * model.scale
        model.scale.fill_(float(raw.square().mean().sqrt()))
        model.train()
    save_training_state(state_path, model, optimizer, info)
    save_tae(model, state_path.parent / "toy_ae.safetensors")
    print(f"saved AE at step {info['steps']} (latent scale {float(model.scale):.3f})", flush=True)


if __name__ == "__main__":
    main()
