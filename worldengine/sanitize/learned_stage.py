"""The learned stage of the sanitizer: flag what the term lists missed, and rewrite it.

``learned_flag`` runs the shipped classifier (``learned.py``) on a prompt the term lists found
clean; above the strictness's threshold the prompt gets the predicted category.
``learned_rewrite`` keeps the scene: it removes, one at a time, the word whose removal lowers
the unsafe probability most (a leave-one-word-out attribution, computed in one vectorised pass)
until the classifier calls the text safe, and replaces the removed run with a neutral phrase of
the category. It gives up (None) after ``MAX_REMOVED`` words; sanitize() then rebuilds a scene.
"""

from __future__ import annotations

import re

from worldengine.sanitize.learned import get_classifier

# unsafe probability (1 - p(safe)) needed to flag, per strictness. Chosen on dev data (v9) and
# checked by leave-one-set-out runs (v10: 0.2-0.7 gave the same catches): see docs/safety.md.
THRESHOLDS = {"relaxed": 0.8, "standard": 0.6, "strict": 0.5}
# Added to the threshold for prompts written mostly in CJK or Hangul: their features are 1..3
# character grams shared with everyday words, and short ones have few of them; the learned
# stage's false rewrites on sets 8 and 9 (a tea house, a studio, a balcony) were all such
# prompts. Chosen by leave-one-set-out runs (tools/safety/loso.py, docs/safety.md).
CJK_EXTRA = 0.2
_CJK = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


def threshold(clean: str, level: str) -> float:
    """The unsafe probability that flags ``clean`` at strictness ``level`` (0..1)."""
    letters = sum(c.isalpha() for c in clean)
    cjk = len(_CJK.findall(clean))
    return min(THRESHOLDS[level] + (CJK_EXTRA if letters and 2 * cjk > letters else 0.0), 0.99)
MAX_REMOVED = 4
# What replaces a removed run, per category (English; the classifier is multilingual, the
# placeholder is neutral in any prompt); sexual wording is dropped without a placeholder.
PLACEHOLDER = {"sexual": "", "minors": "a figure", "celebrity": "a person",
               "branded_ip": "an original character"}


def learned_flag(clean: str, level: str) -> tuple[str, float] | None:
    """(category, unsafe probability) when the classifier flags ``clean``; else None."""
    clf = get_classifier()
    if clf is None:
        return None
    pred = clf.predict(clean)
    if pred.label != "safe" and pred.unsafe_prob >= threshold(clean, level):
        return pred.label, pred.unsafe_prob
    return None


def _cut(text: str, spans: list[tuple[int, int]], label: str) -> str:
    """``text`` with the spans removed; an adjacent group of removed words gets one placeholder."""
    out, last = [], 0
    for k, (start, end) in enumerate(sorted(spans)):
        gap = text[last:start]
        out.append(gap)
        joined = k > 0 and not gap.strip()
        if not joined and PLACEHOLDER[label]:
            out.append(f" {PLACEHOLDER[label]} ")
        last = end
    out.append(text[last:])
    return "".join(out)


def learned_rewrite(clean: str, level: str, label: str) -> str | None:
    """``clean`` with the words that carry the classifier's flag removed (see module doc)."""
    clf = get_classifier()
    if clf is None:
        return None
    dropped: set[int] = set()
    for _ in range(MAX_REMOVED):
        spans, effects = clf.word_effects(clean, frozenset(dropped))
        if len(spans) <= len(dropped):
            return None
        k = int(effects.argmin())
        dropped.add(k)
        if effects[k] < threshold(clean, level):
            return _cut(clean, [spans[i] for i in dropped], label)
    return None
