"""Prompt sanitation for text-conditioned world models: rewrite, never just refuse.

``sanitize(text)`` normalises the prompt (NFKC, invisible characters, homoglyphs, leetspeak,
spacing tricks), detects unsafe categories with data-driven term lists plus context rules
(``detect.py``), rewrites the unsafe element into a safe generic description while keeping the
scene, and enriches very short prompts; what the lists find clean goes to a small learned classifier
(``learned_stage.py``, numpy, weights shipped as safetensors). Offline, deterministic, CPU.

    result = sanitize("a n@ked woman on a beach at sunset")
    result.text      # "A clothed woman on a beach at sunset"
    result.report    # {"categories": ["sexual"], "rewritten": True, ...}

An optional ``rewriter(text, report) -> str`` (e.g. a local LLM: ``llm.chat_rewriter`` talks to
any OpenAI-compatible chat endpoint) is tried first for flagged prompts; its output is re-checked
and the built-in rewrite is used if it is still unsafe or fails.

v2 (issue 19): term lists in 12 more languages (``data/i18n``), language scoping for the few
terms that are ordinary words elsewhere (``language.py``), people beyond the name list by name
shape and person cues (``names.py``), minors in harmful situations, CJK terms across separators.
Prompts over ``MAX_PROMPT_CHARS`` are cut at a word break (reported); non-strings are refused.
See ``docs/safety.md`` for the design and the measured rates.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

from worldengine.errors import WaypointError
from worldengine.sanitize.lexicon import english_words
from worldengine.sanitize.detect import CATEGORIES, Detection, Strictness, detect
from worldengine.sanitize.learned_stage import learned_rewrite
from worldengine.sanitize.rewrite import apply_rewrite, tidy
from worldengine.sanitize.scene import (DEFAULT_SCENE, content_words, enrich, needs_enrichment,
                                        rebuild_scene)

__all__ = ["sanitize", "detect", "SanitizeResult", "Strictness", "CATEGORIES", "Rewriter",
           "MAX_PROMPT_CHARS", "bound_prompt", "warm_up"]

Rewriter = Callable[[str, dict], str]
MAX_PROMPT_CHARS = 4000  # longer prompts are cut (reported), so time per prompt stays bounded
_CJK = re.compile("[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


@dataclass(frozen=True)
class SanitizeResult:
    """``text``: the prompt to feed the model. ``report``: JSON-able debugging info."""
    text: str
    categories: tuple[str, ...]
    rewritten: bool
    enriched: bool
    report: dict = field(default_factory=dict)

    def report_json(self) -> str:
        return json.dumps(self.report, ensure_ascii=False, sort_keys=True)


def warm_up() -> None:
    """Load every table the checks use (term lists, word list), so no prompt pays for it."""
    english_words()
    sanitize("Emma Zorblat, the streamer, in a forest")
    sanitize("a f o r e s t p a t h")  # spelled out: builds the word-break vocabulary


def bound_prompt(text: str) -> tuple[str, int]:
    """``text`` cut to ``MAX_PROMPT_CHARS`` at a word break, and its original length when cut
    (else 0). Text encoders read a few hundred tokens; the rest would only cost time."""
    if len(text) <= MAX_PROMPT_CHARS:
        return text, 0
    head = text[:MAX_PROMPT_CHARS]
    space = head.rfind(" ", MAX_PROMPT_CHARS // 2)
    return (head[:space] if space > 0 else head), len(text)


def _safe(text: str, level: Strictness) -> bool:
    return bool(text.strip()) and not detect(text, level).unsafe


def _enough(text: str) -> bool:
    return len(content_words(text)) + len(_CJK.findall(text)) // 2 >= 2  # CJK has no spaces


def _model_rewrite(text: str, level: Strictness) -> str | None:
    """The words the learned classifier still objects to removed (None: not enough left)."""
    again = detect(text, level)
    if not again.learned:
        return None
    out = learned_rewrite(again.clean, level.value, again.learned[0])
    out = tidy(out) if out else None
    return out if out and _enough(out) and _safe(out, level) else None


def _builtin_rewrite(found: Detection, level: Strictness) -> tuple[str, str]:
    text = apply_rewrite(found) if found.flagged else found.clean
    if found.flagged and _enough(text) and _safe(text, level):
        return text, "replace"
    model = _model_rewrite(text, level) if _enough(text) else None
    if model:
        return model, "model"
    rebuilt = rebuild_scene(found.clean)
    if _safe(rebuilt, level):
        return rebuilt, "rebuild"
    return DEFAULT_SCENE, "default"


def _custom_rewrite(rewriter: Rewriter, found: Detection, report: dict,
                    level: Strictness) -> str | None:
    try:
        text = rewriter(found.clean, dict(report))
    except Exception as exc:  # a user hook must never break sanitation
        report["rewriter_error"] = f"{type(exc).__name__}: {exc}"
        return None
    if isinstance(text, str) and _safe(text, level):
        return text.strip()
    report["rewriter_error"] = "rewriter output was empty or still unsafe"
    return None


def sanitize(text: str, strictness: "str | Strictness" = Strictness.STANDARD, *,
             enrich_short: bool = True, rewriter: Rewriter | None = None) -> SanitizeResult:
    """Sanitise one prompt. Same input and options always give the same output."""
    if not isinstance(text, str):
        raise WaypointError(f"prompt must be a string, got {type(text).__name__}")
    level = Strictness.parse(strictness)
    text, cut_from = bound_prompt(text)
    found = detect(text, level)
    report = {
        "strictness": level.value,
        **({"truncated_from_chars": cut_from} if cut_from else {}),
        "categories": list(found.categories),
        "matches": [{"category_role": h.role, "term": h.entry.text, "text": found.clean[h.start:h.end],
                     "how": h.how} for h in found.flagged],
    }
    out, method = found.clean, "none"
    if found.unsafe:
        custom = _custom_rewrite(rewriter, found, report, level) if rewriter else None
        if custom:
            out, method = custom, "custom"
        else:
            out, method = _builtin_rewrite(found, level)
    enriched = False
    if enrich_short and needs_enrichment(out):
        candidate = enrich(out)
        if _safe(candidate, level):
            out, enriched = candidate, True
    report.update(rewritten=found.unsafe, rewrite_method=method, enriched=enriched)
    return SanitizeResult(out, tuple(found.categories), found.unsafe, enriched, report)
