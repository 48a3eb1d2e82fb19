"""Find term-list hits in a cleaned prompt (no policy here; see detect.py for the rules).

A hit is a character span of the clean text plus the entry it matched. Lookups run on every
token variant (see normalize.variants), on joined single letters ("s e x"), on adjacent token pairs
split at odd places ("po rn"), on words glued together ("sexyschoolgirl", "taylorswift"),
on censored spellings ("p*rn") and, for long words, on one-edit typos ("pornograhy").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worldengine.sanitize.lexicon import RULE_ROLES, Entry, Lexicon, english_words
from worldengine.sanitize.normalize import (CJK_GAP, Token, fold, has_cjk, join_singles, tokenize,
                                           variants)
from worldengine.sanitize.spacing import reindex, respace, spaced_matches

# A child's age written as a number: "12 year old", "9yo", "aged 14", "15 años".
# Also "8-jährige", "8-jarige", "8 anni", "8 lat", "8-летняя", "8 yaşındaki", "8歳", "8岁", "8살" (issue 19).
_AGE = re.compile(r"(?<![0-9])(?:aged?\s+)?(?:[1-9]|1[0-7])\s*-?\s*(?:years?|yrs?|y\.?\s?o\b\.?|yo\b|"
                  r"anos|años|ans|jahre|лет|jährig\w*|jarig\w*|jaar\b|anni\b|lat\b|lata\b|letni\w*|"
                  r"летн\w*|года?\b|ya[sş][ıi]nda\w*|歳|才|岁|歲|살|세(?![대기계]))(?:[\s-]*old)?|"
                  r"\baged?\s+(?:[1-9]|1[0-7])\b", re.I)
# Ages in words, 1-17, in the listed languages: "five years old", "cinq ans", "seis años".
_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|un|deux|trois|quatre|cinq|sept|huit|neuf|dix|onze|douze|treize|quatorze|"
    "quinze|seize|uno|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce|trece|catorce|"
    "quince|dieciséis|dieciseis|diecisiete|ein|zwei|drei|vier|fünf|sechs|sieben|acht|neun|zehn|"
    "elf|zwölf|dreizehn|vierzehn|fünfzehn|sechzehn|siebzehn|due|quattro|sei|sette|otto|nove|"
    "dieci|undici|dodici|tredici|quattordici|quindici|sedici|diciassette|um|dois|três|quatro|"
    "oito|dez|onze|doze|treze|catorze|quinze|dezesseis|dezessete")
_WORD_AGE = re.compile(rf"\b(?:{_NUMBER_WORDS})[\s-]+(?:years?[\s-]+old|year-old|ans\b|años|"
                       rf"anos\b|jahre\s+alt|jährige[rns]?|anni\b)|"
                       # one German/Dutch compound: "dreizehnjähriger", "dertienjarige" (v14)
                       rf"\b(?:{_NUMBER_WORDS}|twee|drie|vijf|zes|zeven|negen|tien|twaalf|"
                       rf"dertien|veertien|vijftien|zestien|zeventien)(?:jährig|jarig)\w*", re.I)
_AGE_WORDS = frozenset(fold(w) for w in _NUMBER_WORDS.split("|")) | {
    "years", "year", "old", "anos", "ans", "jahre", "alt", "anni", "lat", "lata"}
_NOT_HALVES = ("benign", "given_name", "person_cue", "name_stop")
_DIRECT_ROLES = ("sexual", "minors", "violence", "unsafe", "celebrity", "branded_ip", "brand")
_STOPWORDS = {"a", "an", "the", "in", "on", "of", "to", "at", "is", "it", "as", "or", "by", "and",
              "with", "for", "from", "up", "my", "his", "her", "its", "our"}


@dataclass(frozen=True)
class Hit:
    """``clean[start:end]`` matched ``entry``; tokens ``[tok_start, tok_end)`` (-1 if none)."""
    entry: Entry
    start: int
    end: int
    tok_start: int
    tok_end: int
    how: str  # "token", "joined", "glued", "censored", "fuzzy", "cjk", "age"

    @property
    def role(self) -> str:
        return self.entry.role


AGE_ENTRY = Entry("minor_subject", ("<age>",), False, "a figure", "age-pattern", "<age>")


def _continues(tokens: list[Token], i: int, entry: Entry) -> bool:
    if i + len(entry.words) > len(tokens):
        return False
    last = len(entry.words) - 1
    for k, word in enumerate(entry.words[1:], 1):
        forms = tokens[i + k].variants
        if entry.prefix and k == last:
            if not any(v.startswith(word) for v in forms):
                return False
        elif word not in forms:
            return False
    return True


def _lookup(lex: Lexicon, word: str) -> list[Entry]:
    """Single-word entries matching one spelling (exact or by prefix)."""
    found = [e for e in lex.by_first.get(word, ()) if len(e.words) == 1]
    for length in lex.prefix_lengths:
        if length > len(word):
            break
        found.extend(lex.prefixes.get(word[:length], ()))
    return found


def _token_hits(lex: Lexicon, tokens: list[Token]) -> list[Hit]:
    hits = []
    for i, tok in enumerate(tokens):
        seen = set()
        for form in tok.variants:
            for entry in lex.by_first.get(form, ()):
                if id(entry) not in seen and _continues(tokens, i, entry):
                    seen.add(id(entry))
                    j = i + len(entry.words)
                    hits.append(Hit(entry, tok.start, tokens[j - 1].end, i, j, "token"))
            for entry in _lookup(lex, form):
                if entry.prefix and id(entry) not in seen:
                    seen.add(id(entry))
                    hits.append(Hit(entry, tok.start, tok.end, i, i + 1, "token"))
    return hits


def _joined_hits(lex: Lexicon, tokens: list[Token], known: set[int], clean: str) -> list[Hit]:
    """Spelled-out letters and words split by a stray space or dot (pieces not words alone)."""
    hits = []
    for tok in join_singles(tokens, clean=clean):
        words = set(tok.variants)
        # the run may have swallowed a one-letter word before or after it: "a n u d e",
        # "П и к а ч у в" (Russian "в" = in), "n u d a e" (Italian "e" = and)
        words |= variants(tok.raw[1:]) | variants(tok.raw[:-1])
        found = {id(e): e for form in words for e in _lookup(lex, form) + split_terms(lex, form)}
        words_list = english_words()
        if not found and tok.folded not in words_list and tok.folded[1:] not in words_list:
            # spelling out is itself a signal: look for a term anywhere in the run (unless the
            # run is an ordinary word: "g r a p e" holds "rape", "c a n a l" holds "anal")
            found = {id(e): e for e in _inner_terms(lex, tok.folded)}
        for entry in found.values():
            hits.append(Hit(entry, tok.start, tok.end, -1, -1, "joined"))
    for i in range(len(tokens) - 1):
        a, b = tokens[i], tokens[i + 1]
        if min(len(a.folded), len(b.folded)) > 3 or b.start - a.end > 1 or {i, i + 1} & known \
                or a.folded in _STOPWORDS or b.folded in _STOPWORDS:
            continue
        word = a.folded + b.folded
        if len(word) < 4:
            continue
        for entry in _lookup(lex, word):
            if entry.role in _DIRECT_ROLES:
                hits.append(Hit(entry, a.start, b.end, i, i + 2, "joined"))
    return hits


def _glued_hits(lex: Lexicon, tokens: list[Token], indexed: bool = True) -> list[Hit]:
    """Names/terms run together across or inside tokens ("taylorswift", "sexyschoolgirl").

    ``indexed=False`` when ``tokens`` is a merged view whose indexes are not the real ones.
    """
    hits = []
    text, owner, offset = [], [], []
    for i, tok in enumerate(tokens):
        offset.append(len(owner))
        text.append(tok.folded)
        owner.extend([i] * len(tok.folded))
    glued = "".join(text)
    for pos in range(len(glued) - 6):
        for needle, entry in lex.compact_by_head.get(glued[pos:pos + 3], ()):
            if not glued.startswith(needle, pos):
                continue
            first, last = owner[pos], owner[pos + len(needle) - 1]
            span = (first, last + 1) if indexed else (-1, -1)
            start, end = tokens[first].start, tokens[last].end
            tok = tokens[first]
            if first == last and len(tok.raw) == len(tok.folded) and has_cjk(tok.raw):
                start += pos - offset[first]  # a name inside CJK text: only its own letters
                end = start + len(needle)
            hits.append(Hit(entry, start, end, *span, "glued"))
    for i, tok in enumerate(tokens):  # two known words glued into one token
        span = (i, i + 1) if indexed else (-1, -1)
        for entry in split_terms(lex, tok.folded):
            hits.append(Hit(entry, tok.start, tok.end, *span, "glued"))
    return hits


_INNER_MIN, _INNER_MAX, _RUN_MAX = 4, 14, 80


def _inner_terms(lex: Lexicon, word: str) -> list[Entry]:
    """Direct-role single-word terms of 4+ letters inside a spelled-out run
    ("f a z e n d o s e x o" -> "sexo"); runs are cut at 80 letters to bound the work."""
    word, found = word[:_RUN_MAX], []
    for start in range(len(word) - _INNER_MIN + 1):
        for end in range(start + _INNER_MIN, min(len(word), start + _INNER_MAX) + 1):
            found.extend(e for e in lex.by_first.get(word[start:end], ())
                         if len(e.words) == 1 and e.role in _DIRECT_ROLES)
    return found


def split_terms(lex: Lexicon, word: str) -> list[Entry]:
    """Entries for both halves when ``word`` is two known terms run together."""
    found = []
    if len(word) < 7:
        return found
    for cut in range(3, len(word) - 2):
        left, right = _lookup(lex, word[:cut]), _lookup(lex, word[cut:])
        left = [e for e in left if e.role not in _NOT_HALVES]
        right = [e for e in right if e.role not in _NOT_HALVES]
        if left and right:  # name lists would split ordinary words ("mario"+"neta")
            found.extend(left + right)
    return found


def _fits(censored: str, word: str) -> bool:
    """Same length, and equal wherever the censored spelling has no '*'."""
    return len(censored) == len(word) and censored.count("*") < len(word) - 1 and all(
        c == "*" or c == w for c, w in zip(censored, word))


def _uncensor(lex: Lexicon, tokens: list[Token]) -> list[Token]:
    """Give words with '*' for letters ("p*rn", "t*ylor") the term words they could stand for."""
    out = []
    for tok in tokens:
        if "*" not in tok.raw:
            out.append(tok)
            continue
        word = fold(tok.raw)
        extra = {w for w in lex.words_by_len.get(len(word), ()) if _fits(word, w)}
        for key in lex.prefixes:  # prefix terms: "*ndressing" -> "undress"
            if len(key) < len(word) and _fits(word[:len(key)], key):
                extra.add(key)
        out.append(Token(tok.start, tok.end, tok.raw, tok.variants | extra, tok.folded))
    return out


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by one insertion, deletion, substitution or transposition."""
    if a == b or abs(len(a) - len(b)) > 1:
        return a == b
    if len(a) == len(b):
        diff = [k for k in range(len(a)) if a[k] != b[k]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:k] + long_[k + 1:] == short for k in range(len(long_)))


def _fuzzy_hits(lex: Lexicon, tokens: list[Token], matched: set[int]) -> list[Hit]:
    hits = []
    for i, tok in enumerate(tokens):
        word = tok.folded
        if i in matched or len(word) < 8:
            continue
        keys = {word} | {word[:k] + word[k + 1:] for k in range(len(word))}
        seen = set()
        for key in keys:
            for entry in lex.single_long.get(key, ()):
                term = entry.words[0]
                # A change in the last two letters is usually another real word
                # ("stripped" vs "stripper"), not an evasion: skip those.
                if id(entry) not in seen and word[:-2] != term[:-2] and _one_edit(word, term):
                    seen.add(id(entry))
                    hits.append(Hit(entry, tok.start, tok.end, i, i + 1, "fuzzy"))
    return hits


def _cjk_hits(lex: Lexicon, clean: str) -> list[Hit]:
    """CJK entries as substrings, also across separators inserted between the characters."""
    if not has_cjk(clean):  # every CJK entry holds a CJK letter: skip thousands of finds
        return []
    lowered = clean.lower()
    keep = [True] * len(lowered)
    for m in CJK_GAP.finditer(lowered):
        keep[m.start():m.end()] = [False] * (m.end() - m.start())
    where = [i for i, k in enumerate(keep) if k]  # compact position -> clean position
    joined = "".join(lowered[i] for i in where)
    hits = []
    # Only entries starting with one of the prompt's characters (a few dozen of thousands), in list order.
    tried = sorted(k for ch in set(joined) for k in lex.cjk_by_head.get(ch, ()))
    for entry in (lex.cjk[k] for k in tried):
        pos = joined.find(entry.words[0])
        if pos >= 0:
            end = where[pos + len(entry.words[0]) - 1] + 1
            hits.append(Hit(entry, where[pos], end, -1, -1, "cjk"))
    return hits


def find_hits(lex: Lexicon, clean: str, fuzzy: bool = True) -> tuple[list[Token], list[Hit]]:
    """All raw hits in ``clean`` (benign phrases included; filtering happens in detect.py)."""
    tokens = _uncensor(lex, tokenize(clean))
    hits = _token_hits(lex, tokens)
    # the v13 rule words ("river", "stein") pair with other hits only: they hide no other match
    known = {k for h in hits if h.role not in RULE_ROLES for k in range(h.tok_start, h.tok_end)}
    hits += _joined_hits(lex, tokens, known, clean)
    hits += _glued_hits(lex, tokens)
    singles = join_singles(tokens, clean=clean)
    if singles:  # spelled-out names: "T a y l o r S w i f t"
        merged = [t for t in tokens if not any(s.start <= t.start and t.end <= s.end
                                               for s in singles)] + singles
        hits += _glued_hits(lex, sorted(merged, key=lambda t: t.start), indexed=False)
    if fuzzy:
        matched = {k for h in hits if h.role not in RULE_ROLES
                   for k in range(h.tok_start, h.tok_end)}
        hits += _fuzzy_hits(lex, tokens, matched)
    hits += _cjk_hits(lex, clean)
    for m in (*_AGE.finditer(clean), *_WORD_AGE.finditer(clean)):
        hits.append(Hit(AGE_ENTRY, m.start(), m.end(), -1, -1, "age"))
    words = respace(lex, tokens, clean, _AGE_WORDS)
    if words is not None:  # a spelled-out phrase split into words: match those words too
        hits = [reindex(h, words) for h in hits] + _token_hits(lex, words) + [
            Hit(AGE_ENTRY, s, e, -1, -1, "age") for s, e in spaced_matches(words, (_AGE, _WORD_AGE))]
        tokens = words
    return tokens, hits

