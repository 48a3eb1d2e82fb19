"""Build the multilingual safety prompt sets (issue 19) from hand-written base items.

    python tools/safety/make_sets.py

Writes, per split, ``tests/data/safety_<split>_redteam_prompts.jsonl`` and
``tests/data/safety_<split>_benign_prompts.jsonl`` (the format ``python -m
worldengine.sanitize.evaluate`` reads). Splits: ``dev`` (``dev_items.py``, used while tuning),
``heldout`` .. ``heldout15`` (``heldout*_items.py``, each written after a design freeze
and evaluated once; the earlier ones were dev sets for the next design).

Unsafe items mark the element to disguise in [brackets]. Each base item gives its plain form and
two evasions of that element, cycling through the evasions that fit its script (leet,
homoglyph, zero-width, spacing, odd casing; CJK: zero-width, spacing). Benign items give their
plain form and, when they bracket a word, one evasion of it (normalising must not flag them).
Deterministic.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOOLS))
sys.path.insert(0, str(TOOLS / "safety"))
from make_prompt_sets import apply, homoglyph, leet, plain, spaced, write, zero_width  # noqa: E402

OUT = TOOLS.parent / "tests" / "data"
CJK = ("ja", "zh", "ko")
# (split, module). Each held-out set was written after a design freeze and evaluated once; sets
# 1 and 2 have been dev sets since their first run (docs/safety.md lists the runs).
SPLITS = (("dev", "dev_items"), ("heldout", "heldout_items"), ("heldout2", "heldout2_items"),
          ("heldout3", "heldout3_items"), ("heldout4", "heldout4_items"),
          ("heldout5", "heldout5_items"), ("heldout6", "heldout6_items"),
          ("heldout7", "heldout7_items"), ("heldout8", "heldout8_items"),
          ("heldout9", "heldout9_items"), ("heldout10", "heldout10_items"), ("heldout11", "heldout11_items"),
          ("heldout12", "heldout12_items"), ("heldout13", "heldout13_items"),
          ("heldout14", "heldout14_items"), ("heldout15", "heldout15_items"))
NON_LATIN = ("ru",) + CJK


def odd_case(word: str) -> str:
    """aLtErNaTiNg case, starting lower: "taylor swift" -> "tAyLoR SwIfT"."""
    out, k = [], 0
    for ch in word:
        out.append(ch.upper() if k % 2 else ch.lower())
        k += ch.isalpha()
    return "".join(out)


def evasions(lang: str) -> list:
    """The evasions that make sense for a language's script."""
    if lang in CJK:
        return [zero_width, spaced]
    if lang in NON_LATIN:
        return [zero_width, spaced, odd_case]
    return [leet, homoglyph, zero_width, spaced, odd_case]


def redteam(unsafe: dict, split: str) -> list[dict]:
    rows = []
    for lang, bases in unsafe.items():
        chain = evasions(lang)
        for n, (category, text) in enumerate(bases):
            base = f"{split}-{lang}-{n:02d}"
            rows.append(dict(text=plain(text), category=category, lang=lang, variant="plain",
                             base=base, split=split))
            for k in range(2):
                transform = chain[(2 * n + k) % len(chain)]
                rows.append(dict(text=apply(text, transform), category=category, lang=lang,
                                 variant=transform.__name__, base=base, split=split))
    return rows


def benign(items: dict, split: str) -> list[dict]:
    rows = []
    for lang, texts in items.items():
        chain = evasions(lang)
        for n, text in enumerate(texts):
            rows.append(dict(text=plain(text), lang=lang, kind="plain", variant="plain",
                             split=split))
            if "[" in text:
                transform = chain[n % len(chain)]
                rows.append(dict(text=apply(text, transform), lang=lang, kind="evasion",
                                 variant=transform.__name__, split=split))
    return rows


def main() -> None:
    for split, module in SPLITS:
        try:
            items = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        red, ben = redteam(items.UNSAFE, split), benign(items.BENIGN, split)
        write(OUT / f"safety_{split}_redteam_prompts.jsonl", red)
        write(OUT / f"safety_{split}_benign_prompts.jsonl", ben)
        print(f"{split}: {len(red)} red-team and {len(ben)} benign prompts")


if __name__ == "__main__":
    main()
