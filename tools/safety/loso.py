"""Leave-one-set-out estimate of how the sanitizer generalises to a set it never saw.

    OMP_NUM_THREADS=1 python tools/safety/loso.py --set heldout14 [--epochs 3] [--per-lang 300]
        [--exclude heldout8_items ...] [--embed-lr 3e-3] [--dropout 0.1] [--prior-safe 0.5]

Trains the classifier on the corpus without one dev set's items (``corpus.DEV_MODULES`` minus
``<set>_items``: its unsafe items, their twins and its benign scenes all go), writes the weights
to a temporary file, and evaluates ``tests/data/safety_<set>_*`` with those weights. The term
lists were tuned on earlier sets too, so for a set the lists saw this estimate is optimistic.
Prints one line: set, caught, benign rewritten (and the JSON result with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus
import train_classifier

from worldengine.sanitize import evaluate, learned


def run(split: str, epochs: int, per_lang: int, exclude: tuple[str, ...] = (),
        keep: Path | None = None, prior_safe: float = train_classifier.PRIOR_SAFE,
        **knobs) -> dict:
    """The evaluate() result for ``split`` with a classifier trained without it (and without
    the dev modules in ``exclude``); ``knobs``: ``train_classifier.train``'s embed_lr / dropout."""
    module = f"{split}_items"
    if module not in corpus.DEV_MODULES:
        raise SystemExit(f"unknown set {split!r}: expected one of {corpus.DEV_MODULES}")
    corpus.DEV_MODULES = tuple(m for m in corpus.DEV_MODULES if m not in (module, *exclude))
    corpus.GENERATED = tuple(m for m in corpus.GENERATED if m not in exclude)
    rows = corpus.build(per_lang)
    net = train_classifier.train(rows, epochs, **knobs)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "loso.safetensors"
        train_classifier.save(net, weights, prior_safe)
        if keep:  # to re-evaluate other thresholds without training again
            keep.write_bytes(weights.read_bytes())
        learned.WEIGHTS = weights
        learned.get_classifier.cache_clear()
        learned.get_classifier()  # loaded while the file exists
        data = evaluate.DATA
        return evaluate.evaluate(evaluate.load_jsonl(data / f"safety_{split}_redteam_prompts.jsonl"),
                                 evaluate.load_jsonl(data / f"safety_{split}_benign_prompts.jsonl"))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", required=True, help="dev split left out, e.g. heldout9")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--per-lang", type=int, default=300)
    ap.add_argument("--exclude", nargs="*", default=[],
                    help="dev modules also left out (to replay an older corpus)")
    ap.add_argument("--keep", type=Path, help="also write the LOSO weights here")
    ap.add_argument("--embed-lr", type=float, default=train_classifier.EMBED_LR)
    ap.add_argument("--dropout", type=float, default=train_classifier.FEATURE_DROPOUT)
    ap.add_argument("--prior-safe", type=float, default=train_classifier.PRIOR_SAFE)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    res = run(args.set, args.epochs, args.per_lang, tuple(args.exclude), args.keep,
              prior_safe=args.prior_safe, embed_lr=args.embed_lr, dropout=args.dropout)
    print(f"LOSO {args.set}: caught {res['catch_rate']:.1%} (n={res['n_redteam']}), benign "
          f"rewritten {res['false_rewrite_rate']:.1%} (n={res['n_benign']})", flush=True)
    if args.json:
        print(json.dumps(res, ensure_ascii=False))


if __name__ == "__main__":
    main()
