"""The Waypoint recipe at toy size, for the version-2 world: diffusion forcing, then self-forcing.

    python -m tools.toyworld.recipe --work _work/toyworld --stage pretrain --minutes 50
    python -m tools.toyworld.recipe --work _work/toyworld --stage selfforce --minutes 25

Both stages train `WaypointDiT` (TOY2_CONFIG) on latent clips [B, L, 16, 9, 16] of
`<work>/data/latents_*.npz` (L = 8 by default) with the training forward of seqmodel.py (L clean + L noisy latents,
the engine's ring-cache visibility), a rectified-flow target v = noise - x0, and every noisy latent at
its own sigma (diffusion forcing; half the sigmas from the 4-step inference schedule, which is what
the model is distilled to, half logit-normal).

- pretrain: context = ground-truth latents + a little Gaussian noise (teacher forcing).
- selfforce: context = the model's own 4-step samples. With no gradient, every latent of the clip is
  sampled in parallel by the engine's Euler schedule given the current context; that is repeated
  `--depth` times (a latent's context then holds samples that were themselves conditioned on
  samples), and the loss asks for the ground truth given that self-generated context: the model
  learns to pull its rollouts back instead of compounding their errors (exposure bias). The first
  latent of a clip stays ground truth: it is the seed frame in inference.
- finetune: starting from the selfforce weights (its own state and budget), a step is a selfforce
  step with probability `--self-fraction` (0.5 by default; the others are pretrain steps, half the
  cost, so more of the budget goes to learning the controls), with `--motion-weight` 2 by default: every latent element's squared error is weighted by
  1 + motion_weight x |x0_t - x0_t-1| / (its mean over the batch), so what moved since the previous
  latent (the floor when walking, the scene when turning) counts more than what stays put.

State: `<work>/dit_<stage>.safetensors` (weights, AdamW moments, steps and seconds trained), saved every
`--save-every` minutes; rerunning the same command resumes and the learning rate follows seconds
trained over `--minutes` across resumes (CPU seconds on the CPU, ckpt.BudgetClock: a paused run spends no
budget). selfforce starts from the pretrain weights, finetune from the selfforce ones. Every save also
exports an engine-loadable candidate to `<work>/candidate/`.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from tools.toyworld.ckpt import BudgetClock, load_training_state, save_training_state
from tools.toyworld.episodes import load_latents
from tools.toyworld.seqmodel import ClipForward, inference_to_canonical
from tools.toyworld.spec import TOY2_CONFIG, control_vectors
from tools.toyworld.train import lr_at, new_model, sample_sigmas
from worldengine.config import config_from_dict


class LatentClips:
    """Random clips of L latents (and their control vectors) from the episode shards."""

    def __init__(self, data: dict, length: int, seed: int):
        self.latents = torch.from_numpy(data["latents"])                    # [E, N, C, h, w] fp16
        self.controls = control_vectors(data["keys"], data["mouse_dx"])     # [E, N, n+3]
        self.length, self.rng = length, np.random.default_rng(seed)

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        episodes, latents = self.latents.shape[:2]
        e = self.rng.integers(0, episodes, size)
        index = self.rng.integers(0, latents - self.length + 1, size)[:, None] + np.arange(self.length)
        return self.latents[e[:, None], index].float(), self.controls[e[:, None], index]


@torch.no_grad()
def sample_in_parallel(clip: ClipForward, context, ctrl, start: int, schedule, generator) -> torch.Tensor:
    """Every latent of the clip sampled from noise by the 4-step Euler schedule given `context`."""
    x = torch.randn(context.shape, generator=generator).to(context.device)
    b, length = context.shape[:2]
    for sigma, sigma_next in itertools.pairwise(schedule):
        v = clip(context, x, torch.full((b, length), float(sigma), device=x.device), ctrl, start)
        x = x + (float(sigma_next) - float(sigma)) * v
    return x


def self_generated_context(clip, x0, ctrl, start, depth, schedule, generator, context_noise):
    """x0 [B, L, ...] -> context whose latents 1.. are the model's own samples, `depth` times nested."""
    context = x0 + context_noise * torch.randn(x0.shape, generator=generator).to(x0.device)
    for _ in range(depth):
        samples = sample_in_parallel(clip, context, ctrl, start, schedule, generator)
        context = torch.cat([context[:, :1], samples[:, 1:]], 1)
    return context


def motion_weights(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """x0 [B, L, C, h, w] -> loss weights of the same shape, 1 + strength x |x0_t - x0_t-1| / its mean
    (the first latent of a clip, which has no predecessor here, gets weight 1)."""
    change = torch.cat([torch.zeros_like(x0[:, :1]), (x0[:, 1:] - x0[:, :-1]).abs()], 1)
    return 1 + strength * change / change[:, 1:].mean().clamp_min(1e-6)


def train_step(clip, optimizer, x0, ctrl, args, schedule, generator) -> float:
    b, length = x0.shape[:2]
    start = int(torch.randint(0, 64, (1,), generator=generator))
    self_forced = args.stage == "selfforce" or (
        args.stage == "finetune" and float(torch.rand((), generator=generator)) < args.self_fraction)
    if self_forced:
        clip.model.eval()
        context = self_generated_context(clip, x0, ctrl, start, args.depth, torch.tensor(clip.config.scheduler_sigmas),
                                         generator, 0.02)
        clip.model.train()
    else:
        std = torch.rand(b, 1, 1, 1, 1, generator=generator).to(x0.device) * args.context_noise
        context = x0 + std * torch.randn(x0.shape, generator=generator).to(x0.device)
    sigma = sample_sigmas(generator, (b, length), schedule).to(x0.device)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    s = sigma[..., None, None, None]
    velocity = clip(context, (1 - s) * x0 + s * noise, sigma, ctrl, start)
    error = (velocity - (noise - x0)).square()
    loss = (error * motion_weights(x0, args.motion_weight)).mean() if args.motion_weight else error.mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(clip.model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def export_candidate(model, work: Path, info: dict) -> Path:
    """config.yaml + model.safetensors (published 1.5 layout, bf16) + toy_ae.safetensors + seed.png."""
    import shutil

    from tools.toyworld.game import save_seed_image
    from worldengine.synthetic import write_checkpoint

    out, staging = work / "candidate", work / "candidate.partial"
    write_checkpoint(staging, dict(TOY2_CONFIG), state=inference_to_canonical(model.state_dict(), model.config))
    shutil.copyfile(work / "toy_ae.safetensors", staging / "toy_ae.safetensors")
    save_seed_image(staging / "seed.png")
    (staging / "training.txt").write_text("".join(f"{k}: {v}\n" for k, v in info.items()))
    out.mkdir(parents=True, exist_ok=True)
    for path in staging.iterdir():
        path.replace(out / path.name)
    staging.rmdir()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--stage", choices=("pretrain", "selfforce", "finetune"), required=True)
    parser.add_argument("--minutes", type=float, required=True, help="this stage's budget across resumes")
    parser.add_argument("--save-every", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=8)
    # 8 latents: the last ones see a full global ring (4 persisted latents, 7 back), as inference does
    # after its first 8 latents; 6 never showed the global layers more than 3 (a long-rollout mismatch)
    parser.add_argument("--length", type=int, default=8, help="latents per clip")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--context-noise", type=float, default=0.1)
    parser.add_argument("--depth", type=int, default=1, help="selfforce: nested self-generated context")
    parser.add_argument("--self-fraction", type=float, default=0.5, help="finetune: share of selfforce steps")
    parser.add_argument("--motion-weight", type=float, help="weight of what moved (default: 2 in finetune, else 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.motion_weight is None:
        args.motion_weight = 2.0 if args.stage == "finetune" else 0.0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = config_from_dict(TOY2_CONFIG, source="TOY2_CONFIG")
    model = new_model(config).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    state_path = args.work / f"dit_{args.stage}.safetensors"
    info = {"stage": args.stage, "steps": 0, "seconds": 0.0}
    if state_path.is_file():
        info = load_training_state(state_path, model, optimizer)
    elif args.stage != "pretrain":
        parent = "pretrain" if args.stage == "selfforce" else "selfforce"
        previous = load_training_state(args.work / f"dit_{parent}.safetensors", model, optimizer)
        info[parent] = {k: previous[k] for k in ("steps", "seconds")}
    print(f"{args.stage}: {sum(p.numel() for p in model.parameters())} parameters, from step {info['steps']}",
          flush=True)
    if info["seconds"] >= 60 * args.minutes:
        return
    clips = LatentClips(load_latents(args.work / "data"), args.length,
                        info["steps"] + {"pretrain": 0, "selfforce": 17, "finetune": 29}[args.stage])
    clip = ClipForward(model, args.length)
    clip.rope.space, clip.rope.inv_t = clip.rope.space.to(args.device), clip.rope.inv_t.to(args.device)
    schedule = torch.tensor(config.scheduler_sigmas[:-1])
    generator = torch.Generator().manual_seed(info["steps"] + 1)
    model.train()
    clock, last_save, ema = BudgetClock(args.device, info["seconds"]), time.time(), None
    while (elapsed := clock.elapsed()) < 60 * args.minutes:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(elapsed / (60 * args.minutes), args.lr)
        x0, ctrl = clips.batch(args.batch)
        loss = train_step(clip, optimizer, x0.to(args.device), ctrl.to(args.device), args, schedule, generator)
        info["steps"] += 1
        ema = loss if ema is None else 0.98 * ema + 0.02 * loss
        if info["steps"] % 10 == 0:
            print(f"{args.stage} step {info['steps']} t={elapsed:.0f}s loss={loss:.4f} ema={ema:.4f}", flush=True)
        if time.time() - last_save > 60 * args.save_every:
            save(model, optimizer, info, clock, ema, args, state_path)
            last_save = time.time()
    save(model, optimizer, info, clock, ema, args, state_path)
    print(f"{args.stage} done at step {info['steps']}", flush=True)


def save(model, optimizer, info, clock, ema, args, state_path):
    info["seconds"], info["loss_ema"] = clock.elapsed(), round(ema or 0.0, 4)
    save_training_state(state_path, model, optimizer, info)
    export_candidate(model, args.work, info)
    print(f"saved {state_path.name} at step {info['steps']}", flush=True)


if __name__ == "__main__":
    main()
