"""Word breaks inside s-p-a-c-e-d runs: "c h i l d b e i n g b e a t e n" -> child being beaten.

Spacing a phrase out letter by letter also removes its word breaks, so the joined run
("childbeingbeaten") matches no term and the context rules (child + harm verb) see one token.
``respace`` splits each run of one-letter tokens back into words by dynamic programming over
a vocabulary (every word of the lexicon's entries in all languages plus the English word list),
and returns a token list where the run is replaced by those words, each spanning its letters in
the clean text. Matching and the context rules then run on real words again.

A split is kept only when known words cover at least half of the run's letters.
"""

from __future__ import annotations

import dataclasses
import functools

from worldengine.sanitize.lexicon import Lexicon, english_words
from worldengine.sanitize.normalize import Token, canonical, join_singles, variants

_MAX_WORD = 24  # longest vocabulary piece tried at one position
_UNKNOWN = 3  # cost of a stretch no word covers, plus half its length
_MIN_KNOWN = 0.5  # share of the run's letters that known words must cover
_SHORT = frozenset("aeiouyowz")  # one-letter words in the listed languages ("a", "y", "w", "o")


@functools.lru_cache(maxsize=4)
def _vocabulary(lex: Lexicon, extra: frozenset[str]) -> frozenset[str]:
    """Words a run may be split into: entry words (all languages), prefix stems, English words
    and ``extra`` (the age pattern's number words: "trece", "años")."""
    words = {w for e in lex.entries for w in e.words if w.isalpha()} | extra
    return frozenset(w for w in words | english_words() if len(w) > 1 or w in _SHORT)


def _split(word: str, vocab: frozenset[str]) -> list[tuple[int, int, bool]] | None:
    """Cheapest cover of ``word`` by vocabulary words and unknown stretches, as (start, end,
    known) pieces; None when known words cover under ``_MIN_KNOWN`` of it. Costs: a known word
    of 3+ letters 1, a shorter one 2 (so "karolg" is karol + g, not ka + ro + lg), an unknown
    stretch ``_UNKNOWN`` + half its length (an inflected form the lists lack: "занимаетесь" + любовью)."""
    n = len(word)
    best: list[tuple[float, int, bool]] = [(0.0, 0, True)] + [(float("inf"), 0, False)] * n
    for end in range(1, n + 1):
        for start in range(max(0, end - _MAX_WORD), end):
            known = word[start:end] in vocab
            cost = best[start][0] + ((1 if end - start > 2 else 2) if known else _UNKNOWN + (end - start) / 2)
            if cost < best[end][0]:
                best[end] = (cost, start, known)
    pieces, end = [], n
    while end > 0:
        _, start, known = best[end]
        pieces.append((start, end, known))
        end = start
    pieces.reverse()
    covered = sum(e - s for s, e, k in pieces if k)
    return pieces if covered >= _MIN_KNOWN * n else None


def _run_words(run: list[Token], vocab: frozenset[str]) -> list[Token] | None:
    """The run's letters regrouped into words, or None when it stays one token."""
    # folded ("nackte", Latin look-alikes mapped) and plain lower case (Cyrillic words): the
    # better covered; one letter per token, so a piece's letter indexes are token indexes
    splits = [_split(word, vocab) for word in ("".join(t.folded for t in run),
                                               "".join(t.raw.lower() for t in run))
              if len(word) == len(run)]
    pieces = max((p for p in splits if p), default=None,
                 key=lambda p: sum(e - s for s, e, k in p if k))
    if pieces is None or (len(pieces) < 2 and not pieces[0][2]):
        return None  # one known word is kept too: "S o n i c" is a token "Sonic" again
    out = []
    for start, end, _ in pieces:
        part = run[start:end]
        raw = "".join(t.raw for t in part)
        out.append(Token(part[0].start, part[-1].end, raw, variants(raw), canonical(raw)))
    return out


def respace(lex: Lexicon, tokens: list[Token], clean: str,
            extra: frozenset[str] = frozenset()) -> list[Token] | None:
    """``tokens`` with every spelled-out run that splits into known words replaced by those
    words; None when no run does (the caller keeps its tokens)."""
    runs = join_singles(tokens, clean=clean)
    if not runs:
        return None
    vocab = _vocabulary(lex, extra)
    out, changed, k = [], False, 0
    for run in runs:
        while k < len(tokens) and tokens[k].end <= run.start:
            out.append(tokens[k])
            k += 1
        letters = []
        while k < len(tokens) and tokens[k].start < run.end:
            letters.append(tokens[k])
            k += 1
        words = _run_words(letters, vocab) if all(len(t.folded) == 1 for t in letters) else None
        changed |= words is not None
        out.extend(words or letters)
    out.extend(tokens[k:])
    return out if changed else None


def reindex(hit, tokens: list[Token]):
    """``hit`` (a matching.Hit) with token indexes into ``tokens``, found from its character
    span; a hit without token indexes is returned as it is."""
    if hit.tok_start < 0:
        return hit
    inside = [i for i, t in enumerate(tokens) if t.start < hit.end and t.end > hit.start]
    span = (inside[0], inside[-1] + 1) if inside else (-1, -1)
    return dataclasses.replace(hit, tok_start=span[0], tok_end=span[1])


def spaced_matches(tokens: list[Token], patterns) -> list[tuple[int, int]]:
    """Clean-text spans of regex ``patterns`` matched on ``tokens`` written with one space
    between them (a respaced view: "c h i c a d e t r e c e a ñ o s" -> "chica de trece años")."""
    text, starts = "", []
    for tok in tokens:
        starts.append(len(text))
        text += tok.raw + " "
    spans = []
    for pattern in patterns:
        for m in pattern.finditer(text):
            first = max(k for k, at in enumerate(starts) if at <= m.start())
            last = max(k for k, at in enumerate(starts) if at < m.end())
            spans.append((tokens[first].start, tokens[last].end))
    return spans
