"""Train the learned prompt classifier and write its weights (safetensors, float16 embedding).

    OMP_NUM_THREADS=1 python tools/safety/train_classifier.py [--epochs 5] [--per-lang 600]
        [--embed-lr 3e-3] [--dropout 0.1] [--prior-safe 0.5]
        [--out worldengine/sanitize/data/prompt_classifier.safetensors]

Corpus: ``corpus.build`` (dev items, held-out sets 1-14, v10's ``generated_items`` and v15's
``generated15a_items`` / ``generated15b_items``, with
evasions and counterfactual twins; templates). v10 trains on every dev set: the thresholds are
chosen by leave-one-set-out runs (``loso.py``) instead of a validation split.
Model: ``learned.py`` (embedding bag mean -> ReLU -> linear). Deterministic: fixed seeds, one
thread, CPU. Takes a few minutes on 1 core.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus

from worldengine.sanitize.learned import BUCKETS, HIDDEN, LABELS, WEIGHTS, features

# Adam moves a parameter by about lr per step it gets a gradient, so a feature row seen in only a
# few dozen batches (a name or an idiom of one item) can move ~ 20 x lr, and the mean over ~40
# features of a prompt then hides it: with 3e-3 for every parameter the v14 classifier learned
# the term lists' vocabulary (templates, thousands of rows) but almost none of the rare items.
# Larger embedding rates learn those items but flag short benign prompts by shared character
# grams; v15 tried 0.03-0.2 and kept 3e-3 (docs/safety.md, v15).
EMBED_LR = 3e-3
FEATURE_DROPOUT = 0.1  # share of a prompt's feature rows dropped per step (prompts > 4 features)
PRIOR_SAFE = 0.5  # p(safe) of a prompt with no known feature (see save)
PER_LANG = 600  # template rows per language


def encode(rows):
    idx, offsets, labels = [], [], []
    pos = 0
    for text, label, _ in rows:
        f = features(text)
        offsets.append(pos)
        idx.append(f)
        pos += len(f)
        labels.append(LABELS.index(label))
    return (torch.from_numpy(np.concatenate(idx)), torch.tensor(offsets),
            torch.tensor(labels))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.EmbeddingBag(BUCKETS, HIDDEN, mode="mean")
        # small init: a feature never seen in training must add (almost) nothing
        torch.nn.init.normal_(self.embed.weight, std=0.02)
        self.b1 = torch.nn.Parameter(torch.zeros(HIDDEN))
        self.out = torch.nn.Linear(HIDDEN, len(LABELS))

    def forward(self, idx, offsets):
        return self.out(torch.relu(self.embed(idx, offsets) + self.b1))


def batches(n, size, gen):
    order = torch.randperm(n, generator=gen)
    for i in range(0, n, size):
        yield order[i:i + size]


def train(rows, epochs: int, seed: int = 0, embed_lr: float = EMBED_LR,
          dropout: float = FEATURE_DROPOUT) -> Net:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    feats = [torch.from_numpy(features(t)) for t, _, _ in rows]
    labels = torch.tensor([LABELS.index(lab) for _, lab, _ in rows])
    counts = torch.bincount(labels, minlength=len(LABELS)).float()
    weight = (counts.sum() / (len(LABELS) * counts.clamp(min=1))).sqrt()
    net = Net()
    opt = torch.optim.AdamW([{"params": [net.embed.weight], "lr": embed_lr},
                             {"params": [net.b1, *net.out.parameters()]}], lr=3e-3,
                            weight_decay=1e-4)
    for epoch in range(epochs):
        total = 0.0
        for b in batches(len(rows), 64, gen):
            chunk = [feats[i] for i in b.tolist()]
            # feature dropout: a model that leans on one n-gram generalises worse
            chunk = [c[torch.rand(len(c), generator=gen) > dropout] if len(c) > 4 else c
                     for c in chunk]
            offsets = torch.tensor([0] + [len(c) for c in chunk[:-1]]).cumsum(0)
            logits = net(torch.cat(chunk), offsets)
            loss = torch.nn.functional.cross_entropy(logits, labels[b], weight=weight,
                                                   label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        print(f"epoch {epoch + 1}: loss {total / len(rows):.4f}", flush=True)
    return net


def save(net: Net, out: Path, prior_safe: float) -> None:
    """Write the weights; the output bias is shifted so that a prompt with no known feature
    (hidden = relu(b1)) gets p(safe) = ``prior_safe`` (trained as is, such a prompt came out
    unsafe with p(safe) ~ 0.04: unseen words must not flag a prompt)."""
    from safetensors.numpy import save_file
    b1 = net.b1.detach().numpy().astype(np.float32)
    w2 = net.out.weight.detach().numpy().T.copy().astype(np.float32)
    b2 = net.out.bias.detach().numpy().astype(np.float32)
    null = np.maximum(b1, 0.0) @ w2 + b2
    prior = np.array([prior_safe] + [(1 - prior_safe) / (len(LABELS) - 1)] * (len(LABELS) - 1))
    tensors = {"embed": net.embed.weight.detach().numpy().astype(np.float16), "b1": b1,
               "w2": w2, "b2": (b2 - null + np.log(prior)).astype(np.float32)}
    save_file(tensors, str(out), metadata={"labels": ",".join(LABELS),
                                           "buckets": str(BUCKETS), "hidden": str(HIDDEN)})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--per-lang", type=int, default=PER_LANG)
    ap.add_argument("--exclude", nargs="*", default=[],
                    help="dev modules left out (e.g. to replay v9: heldout8_items heldout9_items)")
    ap.add_argument("--prior-safe", type=float, default=PRIOR_SAFE)
    ap.add_argument("--embed-lr", type=float, default=EMBED_LR)
    ap.add_argument("--dropout", type=float, default=FEATURE_DROPOUT)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    corpus.DEV_MODULES = tuple(m for m in corpus.DEV_MODULES if m not in args.exclude)
    corpus.GENERATED = tuple(m for m in corpus.GENERATED if m not in args.exclude)
    rows = corpus.build(args.per_lang)
    print(f"{len(rows)} rows: {dict(Counter(lab for _, lab, _ in rows))}", flush=True)
    net = train(rows, args.epochs, embed_lr=args.embed_lr, dropout=args.dropout)
    save(net, args.out, args.prior_safe)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
