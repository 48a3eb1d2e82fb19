"""Real people beyond the name list: a given name followed by a surname-like word, and a name
next to a word that says "this is a public person" (streamer, actress, président, 配信者...).

Rules (on tokens of the cleaned prompt, ``normalize.tokenize``):
- given name + next word that is no English word (SCOWL list, ``english_words``), neither a
  function word nor a listed name stop ("Victoria Falls") nor a term of another list -> the two
  words are a person ("kai cenat", "Jaden HOSSLER"; "Jack Frost" stays: "frost" is a word). In a
  prompt not detected as English both words must also be written like a name (Capitalised, ALL
  CAPS or oDd casing), as the word list cannot judge foreign words;
- a person cue + the word after it (or before "the"/a comma + cue), written like a name or like
  a handle (digits, inner capitals: "xQc", "Ninja2k") -> that word is a person;
- a title + a name in the 13 languages (``data/titles.txt``: "Pope Francis", "koning
  Willem-Alexander", "prezydenta Dudy"; CJK/Hangul titles after the name: "岸田総理", "윤석열
  대통령"): the name is a listed person, a given name, or a Capitalised word that is no English
  word nor a listed stop ("King Kong", "Prince Charming", "president of the club" stay);
- a listed cased name of 2+ words ("The Rock", "Oliver Tree") when its words are Capitalised.
Both give "celebrity" hits replaced by "a person" (a cue and its name together: "the streamer
Pokimane" -> "the person"), which keeps the sentence.
"""

from __future__ import annotations

import functools
import re

from worldengine.sanitize.language import function_words, languages
from worldengine.sanitize.lexicon import RULE_ROLES, Entry, english_words, get_lexicon
from worldengine.sanitize.matching import Hit
from worldengine.sanitize.namesakes import namesake_hits
from worldengine.sanitize.normalize import Token, has_cjk, join_singles
from worldengine.sanitize.titles import cjk_title_hits, titles

NAME_ENTRY = Entry("celebrity", ("<name>",), False, "a person", "name-pattern", "<name>")
# A Latin-script name right after (or before) a CJK cue: "配信者のPokimane", "xQc 主播".
_LATIN_NAME = r"([A-Za-z][A-Za-z0-9_.]*(?: [A-Z][A-Za-z0-9_.]*)?)"
_AFTER_CJK = re.compile(rf"^[\s:：の的、,]*{_LATIN_NAME}")
_BEFORE_CJK = re.compile(rf"{_LATIN_NAME}[\s:：の的、,]*$")
_LINKS = {"the", "la", "le", "el", "der", "die", "il", "o", "a", "de", "named", "called"}


def name_cased(raw: str) -> bool:
    """Capitalised, ALL CAPS or mixed case: how a name is written (not plain lower case)."""
    letters = [c for c in raw if c.isalpha()]
    return bool(letters) and any(c.isupper() for c in letters) and len(letters) >= 2


def _handle_like(raw: str) -> bool:
    """A screen name: letters with digits, or a capital after the first letter ("xQc")."""
    has_alpha = any(c.isalpha() for c in raw)
    return has_alpha and (any(c.isdigit() for c in raw) or any(c.isupper() for c in raw[1:]))


def _plain_word(tok: Token, taken: set[int], index: int) -> bool:
    """True when the token cannot be a name: a function word or already another term."""
    if index in taken or not any(c.isalpha() for c in tok.raw):
        return True
    lower = tok.raw.lower()
    return any(lower in words for words in function_words().values())


def _span_hit(entry: Entry, tokens: list[Token], first: int, last: int) -> Hit:
    return Hit(entry, tokens[first].start, tokens[last].end, first, last + 1, "name")


def _given_name_hits(tokens, by_start, taken, stops, english: bool) -> list[Hit]:
    """Given name + a word that is no English word ("Kai Cenat", in any casing when the prompt
    is English; written like a name otherwise, where the word list cannot judge the word)."""
    hits, words = [], english_words()
    for i in by_start.get("given_name", ()):
        j = i + 1
        if j >= len(tokens) or tokens[j].start - tokens[i].end > 1:
            continue
        second = tokens[j]
        if j in stops or _plain_word(second, taken, j) or len(second.folded) < 3 \
                or not second.folded.isalpha() or second.folded in words \
                or (second.folded,) in titles()["+"]:  # "Hasan Amca", "Zeynep Hanım"
            continue
        if english or (name_cased(tokens[i].raw) and name_cased(second.raw)):
            hits.append(_span_hit(NAME_ENTRY, tokens, i, j))
    return hits


@functools.lru_cache(maxsize=1)
def _given_names() -> frozenset[str]:
    return frozenset(e.words[0] for e in get_lexicon().entries
                     if e.role == "given_name" and len(e.words) == 1)


def _run_together_hits(tokens: list[Token], spelled: set[int]) -> list[Hit]:
    """A given name and a non-word written as one token: spelled out ("J a d e n H o s s l e r")
    camel-cased ("JadenHossler") or joined by "_". Plain lower-case words are never split (too
    many false splits)."""
    hits, words, names = [], english_words(), _given_names()
    for k, tok in enumerate(tokens):
        word = tok.folded
        raw = tok.raw.replace("_", "")  # "jaden_hossler": the underscore marks the cut
        if "_" in tok.raw.strip("_"):
            cuts = [len(tok.raw.strip("_").split("_")[0])]
        elif k in spelled:
            cuts = range(3, len(word) - 2)
        else:
            cuts = [i for i, c in enumerate(raw) if c.isupper() and i > 0]
        if len(word) < 7 or not word.isalpha() or len(word) != len(raw) and k not in spelled \
                or word in words or word in names or k not in spelled and len(cuts) > 2:  # "tOdDlEr"
            continue
        for cut in cuts:
            if word[:cut] in names and word[cut:] not in words and len(word) - cut >= 3:
                hits.append(_span_hit(NAME_ENTRY, tokens, k, k))
                break
    return hits


def _candidate(tokens, k, taken, stops) -> bool:
    if k < 0 or k >= len(tokens) or k in stops or _plain_word(tokens[k], taken, k):
        return False
    return name_cased(tokens[k].raw) or _handle_like(tokens[k].raw)


def _cue_hits(tokens, by_start, taken, stops, people, cue_last) -> list[Hit]:
    """Cue + name as one span ("the streamer Pokimane" -> "the person"); ``people`` maps the
    first and last token of each listed celebrity to that hit's other end, ``cue_last`` the
    first token of each cue to its last ("prime minister")."""
    hits, cues = [], by_start.get("person_cue", set())
    for c in sorted(cues):
        first_cue = c
        while first_cue - 1 in cues:  # "the famous actress X": one span from "famous"
            first_cue -= 1
        after = cue_last.get(c, c) + 1
        if after < len(tokens) and tokens[after].folded in _LINKS:  # "streamer named X"
            after += 1
        if after < len(tokens) and (tokens[after].folded,) in titles()["!"]:
            continue  # "президента России": a country after the cue, no name
        if after in people or _candidate(tokens, after, taken, stops):
            last = people.get(after, after)
            if last == after and _candidate(tokens, after + 1, taken, stops):
                last = after + 1
            hits.append(_span_hit(NAME_ENTRY, tokens, first_cue, last))
            continue
        before = c - 1
        if before >= 0 and tokens[before].folded in _LINKS:  # "Pokimane the streamer"
            before -= 1
        if before in people or _candidate(tokens, before, taken, stops):
            first = people.get(before, before)
            if first == before and _candidate(tokens, before - 1, taken, stops):
                first = before - 1
            hits.append(_span_hit(NAME_ENTRY, tokens, first, c))
    return hits


def _cjk_cue_hits(clean: str, cues: list[Hit]) -> list[Hit]:
    """Latin names written next to a cue found as a CJK substring (no token index there)."""
    hits = []
    for cue in cues:
        after = _AFTER_CJK.match(clean[cue.end:])
        before = _BEFORE_CJK.search(clean[:cue.start])
        if after and (name_cased(after.group(1)) or _handle_like(after.group(1))):
            end = cue.end + after.end(1)
            hits.append(Hit(NAME_ENTRY, cue.start, end, -1, -1, "name"))
        elif before and (name_cased(before.group(1)) or _handle_like(before.group(1))):
            hits.append(Hit(NAME_ENTRY, before.start(1), cue.end, -1, -1, "name"))
    return hits


def _merged_view(clean: str, tokens: list[Token]) -> list[Token]:
    """Tokens with spelled-out runs ("M a r c u s") merged into one token each, and the
    indexes of those merged tokens."""
    singles = join_singles(tokens, clean=clean)
    if not singles:
        return tokens, set()
    rest = [t for t in tokens if not any(s.start <= t.start and t.end <= s.end for s in singles)]
    view = sorted(rest + singles, key=lambda t: t.start)
    return view, {k for k, t in enumerate(view) if t in singles}


def _title_len(tokens: list[Token], i: int, titles: set) -> int:
    """Words of the longest title starting at token ``i`` (0: none)."""
    best = 0
    for title in titles:
        n = len(title)
        if n > best and i + n <= len(tokens) and all(
                w in tokens[i + k].variants for k, w in enumerate(title)):
            best = n
    return best


def _surname(tokens, k, taken, stops) -> bool:
    """A Capitalised non-English word after a name: its surname ("Willem-Alexander")."""
    return _candidate(tokens, k, taken, stops) and tokens[k].folded.isalpha() \
        and tokens[k].folded not in english_words()


def _title_cased(tokens: list[Token]) -> bool:
    """Most words Capitalised ("Best Places To Visit"): capitals then say nothing about names."""
    return sum(t.raw[:1].isupper() for t in tokens) > 0.6 * len(tokens)


def _title_hits(tokens, given, taken, stops, people) -> list[Hit]:
    """Title + name as one span; ``given`` are given-name token indexes, ``people`` maps the
    first token of each listed (or cased) person to its last."""
    groups, hits, words = titles(), [], english_words()
    title_case = _title_cased(tokens)
    for i, tok in enumerate(tokens):
        if not groups["first"] & tok.variants:
            continue
        strong = _title_len(tokens, i, groups[""])
        # weak titles: "papa" is a pope, "papá"/"papà" a dad
        n = strong or (0 if {"á", "à"} & set(tok.raw.lower()) else _title_len(tokens, i, groups["?"]))
        k = i + n
        if not n or k >= len(tokens) or tokens[k].start - tokens[k - 1].end > 1:
            continue
        pair = tuple(t.folded[:-1] if re.search(r"['’]s$", t.raw) else t.folded  # "Arthur's"
                     for t in tokens[k:k + 2])
        if (pair[0],) in groups["!"] or pair in groups["!"]:
            continue
        if k in people:
            last = people[k]
        elif k in given and (strong or name_cased(tokens[k].raw)) or strong and not title_case and _surname(tokens, k, taken, stops) \
                and len(tokens[k].folded) >= 3 and tokens[k].folded not in words:
            last = k
        else:
            continue
        if last == k and _surname(tokens, k + 1, taken, stops) \
                and (tokens[k + 1].folded,) not in groups["!"]:
            last = k + 1
        if last + 1 < len(tokens) and (last + 1 in stops or (tokens[last + 1].folded,) in
                                       groups["+"]):  # "Sultan Ahmed Mosque", "Queen Mary ship"
            continue
        hits.append(_span_hit(NAME_ENTRY, tokens, i, last))
    return hits


def _cased_phrase_hits(tokens: list[Token], cased: list[Hit]) -> list[Hit]:
    """Listed cased names of 2+ words with every word (past a leading "the") Capitalised
    ("The Rock", "Oliver Tree" even as the first words): the cased-list test in detect.py
    only sees the first word, which any sentence start capitalises."""
    return [] if _title_cased(tokens) else [
        _span_hit(NAME_ENTRY, tokens, h.tok_start, h.tok_end - 1) for h in cased
        if h.tok_end - h.tok_start >= 2 and all(
            t.raw[:1].isupper() for t in tokens[h.tok_start + (h.entry.words[0] == "the"):
                                                h.tok_end])]


def name_hits(clean: str, tokens: list[Token], hits: list[Hit]) -> list[Hit]:
    """Person hits found by the rules in ``clean``; ``hits`` are its lexicon hits (their token
    indexes are recomputed on a view where spelled-out letters form one token)."""
    cjk_cues = [h for h in hits if h.role == "person_cue" and h.how == "cjk"]
    by_start: dict[str, set[int]] = {}
    tokens, spelled = _merged_view(clean, tokens)
    first_at = {t.start: k for k, t in enumerate(tokens)}
    last_at = {t.end: k for k, t in enumerate(tokens)}
    taken, stops, people, named, cased, cue_last = set(), set(), {}, {}, [], {}
    for hit in hits:
        if hit.start not in first_at or hit.end not in last_at:
            continue
        hit = Hit(hit.entry, hit.start, hit.end, first_at[hit.start], last_at[hit.end] + 1,
                  hit.how)
        if hit.role in ("celebrity", "celebrity_cased"):  # a cue next to it confirms a cased one
            people[hit.tok_start], people[hit.tok_end - 1] = hit.tok_end - 1, hit.tok_start
            named[hit.tok_start] = max(named.get(hit.tok_start, 0), hit.tok_end - 1)
        if hit.role == "celebrity_cased":
            cased.append(hit)
        if hit.role in ("given_name", "person_cue"):
            by_start.setdefault(hit.role, set()).add(hit.tok_start)
            cue_last[hit.tok_start] = max(cue_last.get(hit.tok_start, 0), hit.tok_end - 1)
        elif hit.role == "name_stop":
            stops.update(range(hit.tok_start, hit.tok_end))
        elif hit.role not in RULE_ROLES:  # "river", "hours" pair with other hits only
            taken.update(range(hit.tok_start, hit.tok_end))
    found = _cjk_cue_hits(clean, cjk_cues) if cjk_cues else []
    found += _run_together_hits(tokens, spelled)
    found += _title_hits(tokens, by_start.get("given_name", set()), taken, stops, named)
    found += _cased_phrase_hits(tokens, cased)
    if has_cjk(clean):
        found += cjk_title_hits(clean, NAME_ENTRY)
    if by_start:
        english = languages(clean) == {"en"}
        found += _given_name_hits(tokens, by_start, taken, stops, english)
        found += _cue_hits(tokens, by_start, taken, stops, people, cue_last)
    return found + namesake_hits(clean, tokens, hits + found)  # "la place Charles-de-Gaulle"
