"""Rewrite a flagged prompt: swap each unsafe span for its safe replacement, keep the rest of the
scene (place, mood, style, weather, camera), then tidy the grammar left behind."""

from __future__ import annotations

import re

from worldengine.sanitize.detect import Detection
from worldengine.sanitize.matching import Hit

_DANGLING_LINK = re.compile(r"\b(?:and|or|with|of|featuring|showing|plus|while|who is|who are|"
                            r"being|getting|&|mit|avec|con|com|met|und|et|y|z|ze|ile|и|с)"
                            r"\s*(?=[,.;:!?)]|$)", re.I)
_LINK_THEN_LINK = re.compile(r"\b(and|with|of|or)\s+(?:and|with|of|or)\b", re.I)
_DANGLING_ARTICLE = re.compile(r"\b(an?|the)\s+(?=(?:in|on|at|with|by|near|under|inside|of|and|"
                               r"from|into|beside|behind|during|while|who)\b|[,.;:!?)]|$)", re.I)
_DOUBLE_ARTICLE = re.compile(r"\b(an?|the|his|her|their|my|our|your)\s+(?:an?|the)\s+", re.I)
# A replacement that brings its own article after one left in the prompt ("un une silhouette"):
# keep the replacement's.
_ARTICLES = r"(?:an?|the|une?|le|la|les|el|los|las|una|uno|ein|eine|einen|einem|der|die|das|il|lo|" \
            r"um|uma|o|os|as|een|het|de)"
_FOREIGN_DOUBLE = re.compile(rf"\b{_ARTICLES}\s+(?={_ARTICLES}\s)", re.I)
_CJK_SPACE = re.compile("(?<=[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]) +"
                        "(?=[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af])")
_A_AN = re.compile(r"\b([Aa])(n?)\s+(?=(\w+))")
_CONSONANT_SOUND = ("uni", "use", "usu", "uti", "eu", "one", "once")
_SPACE_PUNCT = re.compile(r"\s+([,.;:!?)])")
_REPEAT_PUNCT = re.compile(r"([,;:])(?:\s*[,;:])+")
_EMPTY_PARENS = re.compile(r"\(\s*\)")


def _merge(hits: list[Hit], pairs) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, replacement, term) spans; a harm pair spans verb..victim."""
    spans = [(h.start, h.end, h.entry.replacement or "", h.end - h.start, h.entry.text)
             for h in hits]
    for verb, victim in pairs:
        start, end = min(verb.start, victim.start), max(verb.end, victim.end)
        spans.append((start, end, "", end - start, ""))
    spans.sort(key=lambda s: (s[0], -s[3]))
    merged: list[list] = []
    for start, end, repl, length, term in spans:
        if merged and start < merged[-1][1]:
            last = merged[-1]
            if end - start > last[3]:
                last[2], last[3], last[4] = repl, end - start, term
            last[1] = max(last[1], end)
            continue
        merged.append([start, end, repl, length, term])
    return [(s, e, r, t) for s, e, r, _, t in merged]


def _fix_articles(text: str) -> str:
    def repl(m: re.Match) -> str:
        word = m.group(3).lower()
        vowel = word[0] in "aeiou" and not word.startswith(_CONSONANT_SOUND)
        return f"{m.group(1)}{'n' if vowel else ''} "
    return _A_AN.sub(repl, text)


def tidy(text: str) -> str:
    """Grammar cleanup after spans were removed or replaced."""
    for _ in range(3):
        text = re.sub(r"\s{2,}", " ", text)
        text = _EMPTY_PARENS.sub("", text)
        text = _SPACE_PUNCT.sub(r"\1", text)
        text = _REPEAT_PUNCT.sub(r"\1", text)
        text = _LINK_THEN_LINK.sub(r"\1", text)
        text = _DOUBLE_ARTICLE.sub(lambda m: m.group(1) + " ", text)
        text = _FOREIGN_DOUBLE.sub("", text)
        text = _CJK_SPACE.sub("", text)
        text = _DANGLING_LINK.sub("", text)
        text = _DANGLING_ARTICLE.sub(lambda m: f"{m.group(1)} scene ", text)
    text = re.sub(r"\b(\w+)(?:\s+\1\b)+", r"\1", text, flags=re.I)  # "figure figure"
    text = _fix_articles(text)
    text = re.sub(r"^[\s,.;:!?-]+", "", text).strip()
    text = re.sub(r"[\s,;:-]+$", "", text)
    return text[:1].upper() + text[1:] if text else text


def apply_rewrite(detection: Detection) -> str:
    """The clean text with every flagged span replaced, tidied. May be empty."""
    text = detection.clean
    for start, end, repl, term in reversed(_merge(detection.flagged, detection.pairs)):
        original = text[start:end]
        if repl and re.search(r"['’]s$", original) and not re.search(r"['’]s$", term):
            repl += "'s"  # keep a possessive the term itself does not end with
        text = f"{text[:start]} {repl} {text[end:]}"
    return tidy(text)
