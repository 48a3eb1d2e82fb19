"""The whole version-2 toy world build, resumable: autoencoder, episodes, pretrain, self-forcing.

    nice -n 10 python -m tools.toyworld.pipeline --work _work/toyworld          # CPU, one thread
    python -m tools.toyworld.pipeline --work _work/toyworld --device cuda --threads 4

Every stage keeps its own state in --work and skips what is done, so rerunning the same command after
an interruption continues where it stopped (budgets are totals across runs; raise one to train
longer; budgets count CPU seconds on the CPU, so pausing the process with SIGSTOP spends none). The
result is `<work>/candidate/` (an engine-loadable model folder), refreshed at every save.

Optional fine-tuning stages after those (0 = skipped; each keeps the latent space, so nothing before
it has to be redone): `--ae-decoder-minutes` fine-tunes the AE decoder with the encoder frozen and an
edge loss (a sharper floor), `--walk-episodes` adds episodes under the walking policy, and
`--finetune-minutes` continues self-forcing with the motion-weighted loss on all episodes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tools.toyworld import episodes, recipe, train_ae


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("_work/toyworld"))
    parser.add_argument("--ae-minutes", type=float, default=16.0)
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--pretrain-minutes", type=float, default=50.0)
    parser.add_argument("--selfforce-minutes", type=float, default=25.0)
    parser.add_argument("--ae-decoder-minutes", type=float, default=0.0)
    parser.add_argument("--walk-episodes", type=int, default=0)
    parser.add_argument("--finetune-minutes", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    common = ["--work", str(args.work), "--threads", str(args.threads), "--device", args.device]
    train_ae.main([*common, "--minutes", str(args.ae_minutes), "--episodes", "40"])
    episodes.main(["--ae", str(args.work / "toy_ae.safetensors"), "--out", str(args.work / "data"),
                   "--episodes", str(args.episodes), "--threads", str(args.threads)])
    recipe.main([*common, "--stage", "pretrain", "--minutes", str(args.pretrain_minutes)])
    recipe.main([*common, "--stage", "selfforce", "--minutes", str(args.selfforce_minutes), "--lr", "4e-4"])
    if args.ae_decoder_minutes:
        train_ae.main([*common, "--minutes", str(args.ae_decoder_minutes), "--episodes", "40", "--decoder-only",
                       "--edge-weight", "0.5", "--lr", "1e-3"])
    if args.walk_episodes:
        episodes.main(["--ae", str(args.work / "toy_ae.safetensors"), "--out", str(args.work / "data"),
                       "--first", str(args.episodes), "--episodes", str(args.walk_episodes), "--policy", "walk",
                       "--threads", str(args.threads)])
    if args.finetune_minutes:
        recipe.main([*common, "--stage", "finetune", "--minutes", str(args.finetune_minutes), "--lr", "3e-4"])


if __name__ == "__main__":
    main()
