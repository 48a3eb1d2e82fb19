"""Places and things named after people: "la place Charles-de-Gaulle", "Atatürk Köprüsü",
"aeropuerto Adolfo Suárez", "улица Ленина", "the Lincoln Memorial", "毛泽东纪念堂",
"김대중컨벤션센터", "Willem-Alexanderplein". A person hit (listed or found by a name rule) with a place word from
``data/namesakes.txt`` right before or after it becomes a "benign" span over both, which
detect.py uses to drop the person hits inside it. A likeness ("a statue of Harry Styles",
"portrait of Putin") keeps its person: "statue" / "portrait" are not place words.
"""

from __future__ import annotations

import functools
import re

from worldengine.sanitize.language import languages
from worldengine.sanitize.lexicon import DATA_DIR, Entry
from worldengine.sanitize.matching import Hit
from worldengine.sanitize.normalize import Token, canonical

PLACE_ENTRY = Entry("benign", ("<namesake>",), False, None, "namesakes.txt", "<namesake>")
_LINKS = {"de", "du", "des", "di", "del", "della", "da", "do", "dos", "das", "van"}
_ENDING = 4  # case letters allowed after a "++" word: "Köprüsünde", "Havalimanından"
_CJK_GAP = 1  # one space allowed before a CJK/Hangul place word: "세종대왕 동상"
# Roles that may overlap a namesake span; any other term there (an IP name, a sexual word)
# keeps the prompt's span as it is: "Örümcek Adam Galata Kulesi'nde" stays branded IP.
_PERSON_ROLES = {"celebrity", "celebrity_cased", "given_name", "person_cue", "name_stop", "benign"}


def _joined(tokens: list[Token], k: int, clean: str) -> bool:
    """Token ``k`` follows token ``k - 1`` with one space or hyphen between (no comma)."""
    return k > 0 and clean[tokens[k - 1].end:tokens[k].start] in ("", " ", "-")


@functools.lru_cache(maxsize=1)
def place_words() -> dict[str, frozenset[str]]:
    """``data/namesakes.txt`` by mark: "+" after-words, "++" after-words that take case endings,
    "~" words between the name and an after-word, "-" before-words, "-?" English-looking before-words (all as ``canonical`` spellings), ">"
    CJK/Hangul words (as written)."""
    groups: dict[str, set[str]] = {m: set() for m in ("+", "++", "~", "-", "-?", ">")}
    path = DATA_DIR / "namesakes.txt"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        mark, _, word = body.partition(" ")
        if mark not in groups or not word.strip():
            raise ValueError(f"{path.name}:{number}: expected '+|++|~|-|-?|> word', got {line!r}")
        word = word.strip()
        groups[mark].add(word if mark == ">" else canonical(word))
    return {mark: frozenset(words) for mark, words in groups.items()}


def _bare(tok: Token) -> str:
    """The token without an elided article ("l'avenue" -> "avenue")."""
    raw = tok.raw.replace("’", "'")
    return canonical(raw.rsplit("'", 1)[-1]) if "'" in raw[:3] else tok.folded


def _after_word(tok: Token, groups) -> bool:
    base = canonical(tok.raw.replace("’", "'").split("'", 1)[0])  # "Caddesi'nde" -> "caddesi"
    if {base, tok.folded} & (groups["+"] | groups["++"]):
        return True
    return any(tok.folded[:n] in groups["++"]  # "Köprüsünde", "Havalimanından"
               for n in range(max(4, len(tok.folded) - _ENDING), len(tok.folded)))


def _after_end(tokens: list[Token], last: int, groups, clean: str) -> int:
    """Index of the after-word following token ``last`` (up to two "~" words between), or -1."""
    for k in range(last + 1, min(last + 4, len(tokens))):
        if not _joined(tokens, k, clean):
            break
        if _after_word(tokens[k], groups):
            return k
        if tokens[k].folded not in groups["~"]:
            break
    return -1


def _before_word(tokens: list[Token], k: int, groups, english: bool, clean: str) -> int:
    """Index of the place word ending before token ``k`` (a link word or an unlisted first name
    may sit between: "plaza de X", "Estádio Mané Garrincha"), or -1."""
    for j in (k - 1, k - 2):
        between = tokens[k - 1]
        if j < 0 or not _joined(tokens, j + 1, clean) or (
                j == k - 2 and between.folded not in _LINKS and not between.raw[:1].isupper()):
            break
        word = _bare(tokens[j])
        if word in groups["-"] or word in groups["-?"] and (
                not english or tokens[j].raw.rsplit("'", 1)[-1][:1].isupper()):
            return j
    return -1


def _glued_tail(clean: str, hit: Hit, groups) -> bool:
    """A name glued to an after-word in one compound: "Willem-Alexanderplein", "Atatürkstraße"."""
    glued, name = canonical(clean[hit.start:hit.end]), canonical("".join(hit.entry.words))
    tail = glued[len(name):] if glued.startswith(name) else ""
    return bool(tail) and tail in groups["+"] | groups["++"]


def namesake_hits(clean: str, tokens: list[Token], hits: list[Hit]) -> list[Hit]:
    """Benign spans over each person hit in ``hits`` (all hits, char spans in ``clean``) and
    the place word next to it; ``tokens`` are the prompt's tokens."""
    people = [h for h in hits if h.role in ("celebrity", "celebrity_cased")]
    if not people:
        return []
    others = [h for h in hits if h.role not in _PERSON_ROLES]
    groups, spans, english = place_words(), [], None
    for hit in people:
        inside = [k for k, t in enumerate(tokens) if t.end > hit.start and t.start < hit.end]
        start, end = hit.start, hit.end
        after = clean[end:end + _CJK_GAP + 6].lstrip(" ")[:6]
        cjk = next((w for w in groups[">"] if after.startswith(w)), None)
        if hit.how == "glued" and _glued_tail(clean, hit, groups):
            pass  # the compound is the place: its span is the hit's
        elif cjk:
            end = clean.index(cjk, end) + len(cjk)
        elif inside:
            first, last = inside[0], inside[-1]
            k = _after_end(tokens, last, groups, clean)
            if k > 0:
                end = tokens[k].end
            else:
                if english is None:
                    english = languages(clean) == {"en"}
                j = _before_word(tokens, first, groups, english, clean)
                if j < 0:
                    continue
                start = tokens[j].start
        else:
            continue
        if not any(o.start < end and start < o.end for o in others):
            spans.append(Hit(PLACE_ENTRY, start, end, -1, -1, "name"))
    return spans


_SPELLED = re.compile(r"(?<!\w)\w(?:[ .]\w){2,}(?!\w)")  # "G a r i b a l d i", "M.i.c.k.i.e.w.i.c.z.a"
_SPELLED_ROLES = {"celebrity", "celebrity_cased", "brand", "branded_ip", "branded_ip_cased"}


def spelled_places(clean: str, tokens: list[Token], hits: list[Hit]) -> list[tuple[int, int]]:
    """Spans of name or brand hits inside a spelled-out word right after a place word:
    "via G a r i b a l d i", "ulica M i c k i e w i c z a" are streets, as unspaced
    ("via Garibaldi"). ``tokens`` are the prompt's tokens as typed (one per letter there)."""
    before = place_words()["-"] | place_words()["-?"]
    spans = []
    for m in _SPELLED.finditer(clean):
        k = next((i for i, t in enumerate(tokens) if t.start == m.start()), -1)
        if k < 1 or not _joined(tokens, k, clean) or _bare(tokens[k - 1]) not in before:
            continue
        spans += [(h.start, h.end) for h in hits if h.role in _SPELLED_ROLES
                  and m.start() <= h.start and h.end <= m.end()]
    return spans
