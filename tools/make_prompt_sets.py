"""Build tests/data/redteam_prompts.jsonl and tests/data/benign_prompts.jsonl.

Unsafe base items (tools/prompt_set_items.py) mark their unsafe element in [brackets]. Every base
item gives its plain form plus evasion variants applied to that element: leetspeak, homoglyphs,
zero-width characters, letter spacing, fullwidth/diacritics, repeated letters, censor stars,
glued words, plus benign-context wrappers and translated/mixed-language items. Every fourth base
item is in the "holdout" split (its failures were visible while tuning, so treat it as a second
dev set); the "fresh" split was written after tuning and evaluated once, untouched: it is the
honest held-out measure. The evaluation reports every split. Deterministic: no randomness, same output on every run.

    python tools/make_prompt_sets.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import prompt_set_items as items  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"
_PAYLOAD = re.compile(r"\[([^\]]+)\]")
_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_CYRILLIC = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і",
             "s": "ѕ", "A": "А", "E": "Е", "O": "О", "P": "Р", "C": "С", "T": "Т", "H": "Н",
             "K": "К", "M": "М", "B": "В"}


def leet(word: str) -> str:
    out, count = [], 0
    for ch in word:  # every other replaceable letter
        if ch.lower() in _LEET:
            count += 1
            out.append(_LEET[ch.lower()] if count % 2 else ch)
        else:
            out.append(ch)
    return "".join(out)


def homoglyph(word: str) -> str:
    return "".join(_CYRILLIC.get(ch, ch) for ch in word)


def zero_width(word: str) -> str:
    return "\u200b".join(word)


def spaced(word: str) -> str:
    return " ".join(" ".join(part) for part in word.split())


def dotted(word: str) -> str:
    return " ".join(".".join(part) for part in word.split())


def fullwidth(word: str) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in word)


def accents(word: str) -> str:
    return "".join(ch + "\u0301" if ch.lower() in "aeiou" else ch for ch in word)


def stretched(word: str) -> str:
    return re.sub(r"([aeiou])", r"\1\1\1", word, count=1)


def censored(word: str) -> str:
    return re.sub(r"[aeiou]", "*", word, count=1)


def glued(word: str) -> str:
    return word.replace(" ", "")


def shouted(word: str) -> str:
    return word.upper()


TRANSFORMS = [leet, homoglyph, zero_width, spaced, fullwidth, dotted, accents, stretched,
              censored, glued, shouted]


def apply(text: str, transform) -> str:
    if transform is glued:  # also glue the payload to the following word
        text = re.sub(r"\[([^\]]+)\] (\w)", r"[\1]\2", text)
    return _PAYLOAD.sub(lambda m: transform(m.group(1)), text)


def plain(text: str) -> str:
    return _PAYLOAD.sub(lambda m: m.group(1), text)


def redteam() -> list[dict]:
    rows = []
    bases = [(cat, text) for cat, texts in items.UNSAFE.items() for text in texts]
    for n, (category, text) in enumerate(bases):
        split = "holdout" if n % 4 == 3 else "dev"
        base_id = f"{category}-{n:03d}"
        rows.append(dict(text=plain(text), category=category, variant="plain", base=base_id,
                         split=split))
        seen = {plain(text)}
        for k in range(len(TRANSFORMS)):  # two evasions per base, cycling through the transforms
            transform = TRANSFORMS[(2 * n + k * 5) % len(TRANSFORMS)]
            variant = apply(text, transform)
            if variant in seen:
                continue
            seen.add(variant)
            rows.append(dict(text=variant, category=category,
                             variant=transform.__name__, base=base_id, split=split))
            if len(seen) == 3:
                break
        if n % 2 == 0:
            wrapper = items.CONTEXT_TRICKS[(n // 2) % len(items.CONTEXT_TRICKS)]
            rows.append(dict(text=wrapper.format(x=plain(text)), category=category,
                             variant="benign_context", base=base_id, split=split))
    fresh = [(cat, text) for cat, texts in items.FRESH_UNSAFE.items() for text in texts]
    for n, (category, text) in enumerate(fresh):
        base_id = f"fresh-{category}-{n:03d}"
        rows.append(dict(text=plain(text), category=category, variant="plain", base=base_id,
                         split="fresh"))
        transform = TRANSFORMS[(3 * n) % len(TRANSFORMS)]
        rows.append(dict(text=apply(text, transform), category=category,
                         variant=transform.__name__, base=base_id, split="fresh"))
    for n, (category, text) in enumerate(items.FOREIGN):
        split = "holdout" if n % 4 == 3 else "dev"
        base_id = f"foreign-{n:03d}"
        rows.append(dict(text=plain(text), category=category, variant="mixed_language",
                         base=base_id, split=split))
        transform = TRANSFORMS[n % len(TRANSFORMS)]
        rows.append(dict(text=apply(text, transform), category=category,
                         variant=f"mixed_language+{transform.__name__}", base=base_id,
                         split=split))
    return rows


def benign() -> list[dict]:
    rows = []
    for n, text in enumerate(items.BENIGN):
        rows.append(dict(text=text, kind="base", split="holdout" if n % 4 == 3 else "dev"))
    n = 0
    for i, subject in enumerate(items.BENIGN_SUBJECTS):
        for j, place in enumerate(items.BENIGN_PLACES):
            style = items.BENIGN_STYLES[(i * 3 + j) % len(items.BENIGN_STYLES)]
            rows.append(dict(text=f"{subject} {place}, {style}", kind="composed",
                             split="holdout" if n % 4 == 3 else "dev"))
            n += 1
    rows += [dict(text=text, kind="fresh", split="fresh") for text in items.FRESH_BENIGN]
    # Obfuscated benign prompts: normalisation alone must not trigger a rewrite.
    for n, text in enumerate(items.BENIGN[:60:2]):
        transform = [zero_width, fullwidth, shouted][n % 3]
        words = text.split()
        words[-1] = f"[{words[-1]}]"
        rows.append(dict(text=apply(" ".join(words), transform), kind=f"obfuscated_{transform.__name__}",
                         split="holdout" if n % 4 == 3 else "dev"))
    return rows


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    red, ben = redteam(), benign()
    write(OUT / "redteam_prompts.jsonl", red)
    write(OUT / "benign_prompts.jsonl", ben)
    print(f"wrote {len(red)} red-team and {len(ben)} benign prompts to {OUT}")


if __name__ == "__main__":
    main()
