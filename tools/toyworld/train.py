"""Train the toy world model on CPU (or GPU) with teacher forcing and a rectified-flow loss.

    python -m tools.toyworld.train --data /work/toyworld_data --minutes 40 --out models/toyworld

Each step takes B clips of L frames. Every frame gets its own noise level sigma (diffusion forcing
over the clip; half of them drawn from the 4-step inference schedule, half logit-normal), while the
context a frame attends to is the clean stream, as in the engine's KV cache (see seqmodel.py).
Target: v = noise - x0 for x_sigma = (1 - sigma) x0 + sigma noise, i.e. dx/dsigma, which the
engine's Euler sampler integrates from sigma 1 down to 0. The learning rate follows the wall clock
(warm-up, then cosine to 10% at --minutes). Every --save-every minutes the model is exported to --out
(config.yaml + model.safetensors in the published Waypoint-1.5 layout + toy_ae.safetensors) and the
fp32 weights to <data>/train_state.safetensors (resume with --resume).
"""
from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from tools.toyworld.dataset import load_episodes
from tools.toyworld.render import save_seed_image
from tools.toyworld.seqmodel import ClipForward, inference_to_canonical
from tools.toyworld.spec import MODEL_DIR, TOY_CONFIG, control_vectors
from worldengine.config import config_from_dict
from worldengine.model import WaypointDiT


def new_model(config) -> WaypointDiT:
    model = WaypointDiT(config)
    model.denoise_step_emb.freq = torch.logspace(0, -1, 256, base=10000.0)   # not in the state dict
    torch.nn.init.zeros_(model.unpatchify.weight)   # start by predicting the mean velocity
    torch.nn.init.zeros_(model.unpatchify.bias)
    return model


def sample_sigmas(generator, shape, schedule: torch.Tensor) -> torch.Tensor:
    """Half from the inference schedule's nonzero sigmas, half logit-normal in (0, 1)."""
    from_schedule = schedule[torch.randint(0, len(schedule), shape, generator=generator)]
    logit_normal = torch.sigmoid(torch.randn(shape, generator=generator))
    return torch.where(torch.rand(shape, generator=generator) < 0.5, from_schedule, logit_normal)


class ClipSampler:
    def __init__(self, data: dict, length: int, seed: int):
        self.latents = torch.from_numpy(data["latents"])                    # [E, T, C, h, w] fp16
        self.controls = control_vectors(data["keys"], data["mouse_dx"])     # [E, T, n+3]
        self.length = length
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int):
        episodes, frames = self.latents.shape[:2]
        e = self.rng.integers(0, episodes, size)
        t0 = self.rng.integers(0, frames - self.length + 1, size)
        index = t0[:, None] + np.arange(self.length)
        return self.latents[e[:, None], index].float(), self.controls[e[:, None], index]


def lr_at(fraction: float, peak: float, warmup: float = 0.03) -> float:
    if fraction < warmup:
        return peak * fraction / warmup
    progress = min(1.0, (fraction - warmup) / (1 - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def export(model: WaypointDiT, out: Path, ae_file: Path, state_file: Path, info: dict):
    from safetensors.torch import save_file

    from worldengine.synthetic import write_checkpoint

    state = {k: v for k, v in model.state_dict().items()}
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(state_file),
              metadata={k: str(v) for k, v in info.items()})
    staging = out.with_name(out.name + ".partial")
    write_checkpoint(staging, dict(TOY_CONFIG), state=inference_to_canonical(state, model.config))
    shutil.copyfile(ae_file, staging / "toy_ae.safetensors")
    save_seed_image(staging / "seed.png")
    (staging / "training.txt").write_text("".join(f"{k}: {v}\n" for k, v in info.items()))
    out.mkdir(parents=True, exist_ok=True)
    for path in staging.iterdir():       # replace file by file: readers never see a half-written file
        path.replace(out / path.name)
    staging.rmdir()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--minutes", type=float, default=40.0)
    parser.add_argument("--save-every", type=float, default=5.0, help="minutes between exports")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=8, help="frames per training clip")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--context-noise", type=float, default=0.1, help="max std of noise on context latents")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    config = config_from_dict(TOY_CONFIG, source="TOY_CONFIG")
    model = new_model(config)
    state_file = args.data / "train_state.safetensors"
    if args.resume and state_file.is_file():
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(state_file)))
        print(f"resumed from {state_file}", flush=True)
    model.to(args.device).train()
    shards = len(list(args.data.glob("episodes_*.npz")))
    sampler = ClipSampler(load_episodes(args.data), args.length, args.seed)
    clip = ClipForward(model, args.length)
    clip.rope.space, clip.rope.inv_t = clip.rope.space.to(args.device), clip.rope.inv_t.to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    schedule = torch.tensor(config.scheduler_sigmas[:-1])
    generator = torch.Generator().manual_seed(args.seed)
    print(f"{sum(p.numel() for p in model.parameters())} parameters; {sampler.latents.shape[0]} episodes", flush=True)
    start = last_save = time.time()
    step, ema = 0, None
    while True:
        fraction = (time.time() - start) / (60 * args.minutes)
        if fraction >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(fraction, args.lr)
        x0, ctrl = sampler.batch(args.batch)
        b, length = x0.shape[:2]
        sigma = sample_sigmas(generator, (b, length), schedule)
        noise = torch.randn(x0.shape, generator=generator)
        s = sigma[..., None, None, None]
        noisy = (1 - s) * x0 + s * noise
        context_std = torch.rand(b, 1, 1, 1, 1, generator=generator) * args.context_noise
        context = x0 + context_std * torch.randn(x0.shape, generator=generator)
        start_frame = int(torch.randint(0, 64, (1,), generator=generator))
        dev = lambda t: t.to(args.device)  # noqa: E731
        velocity = clip(dev(context), dev(noisy), dev(sigma), dev(ctrl), start_frame)
        loss = (velocity - dev(noise - x0)).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 50 == 0 and len(list(args.data.glob("episodes_*.npz"))) != shards:
            shards = len(list(args.data.glob("episodes_*.npz")))    # data still being generated
            sampler = ClipSampler(load_episodes(args.data), args.length, args.seed + step)
            print(f"reloaded data: {sampler.latents.shape[0]} episodes", flush=True)
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 10 == 0:
            print(f"step {step} t={time.time() - start:.0f}s lr={lr_at(fraction, args.lr):.2e} "
                  f"loss={loss.item():.4f} ema={ema:.4f}", flush=True)
        if time.time() - last_save > 60 * args.save_every:
            export(model, args.out, args.data / "toy_ae.safetensors", state_file,
                   {"steps": step, "minutes": round((time.time() - start) / 60, 1), "loss_ema": round(ema, 4)})
            last_save = time.time()
            print(f"exported to {args.out} at step {step}", flush=True)
    export(model, args.out, args.data / "toy_ae.safetensors", state_file,
           {"steps": step, "minutes": round((time.time() - start) / 60, 1), "loss_ema": round(ema or 0, 4)})
    print(f"done: {step} steps, exported to {args.out}", flush=True)


if __name__ == "__main__":
    main()
