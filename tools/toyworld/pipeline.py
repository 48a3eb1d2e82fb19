"""The whole version-2 toy world build, resumable: autoencoder, episodes, pretrain, self-forcing.

    nice -n 10 python -m tools.toyworld.pipeline --work _work/toyworld          # CPU, one thread
    python -m tools.toyworld.pipeline --work _work/toyworld --device cuda --threads 4

Every stage keeps its own state in --work and skips what is done, so rerunning the same command after
an interruption continues where it stopped (budgets are totals across runs; raise one to train
longer). The result is `<work>/candidate/` (an engine-loadable model folder), refreshed at every save.
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
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    common = ["--work", str(args.work), "--threads", str(args.threads), "--device", args.device]
    train_ae.main([*common, "--minutes", str(args.ae_minutes), "--episodes", "40"])
    episodes.main(["--ae", str(args.work / "toy_ae.safetensors"), "--out", str(args.work / "data"),
                   "--episodes", str(args.episodes), "--threads", str(args.threads)])
    recipe.main([*common, "--stage", "pretrain", "--minutes", str(args.pretrain_minutes)])
    recipe.main([*common, "--stage", "selfforce", "--minutes", str(args.selfforce_minutes), "--lr", "4e-4"])


if __name__ == "__main__":
    main()
