"""Text normalisation for prompt safety checks.

Two views of a prompt:
- ``clean_text(text)``: what users see — NFKC, invisible/control characters removed, whitespace
  collapsed. Rewrites edit this string; benign prompts come back as this string.
- ``tokenize(clean)``: detection tokens with character spans into the clean text. Each token has a
  small set of *variants* (lower case, accents stripped, homoglyphs folded, leetspeak folded,
  letter runs squeezed, plural/possessive endings dropped, Russian case endings undone) so one lookup per variant covers the
  usual evasions. ``join_singles`` undoes s-p-a-c-e-d spelling.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

# Zero-width, bidi, soft hyphen, variation selectors, tag characters: invisible, only used to split
# words so a term list misses them.
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
                        "\U000e0000-\U000e007f]")
_SPACES = re.compile(r"\s+")

# Look-alike letters from other scripts (Cyrillic, Greek, small capitals, IPA) -> Latin.
_HOMOGLYPHS = {
    "а": "a", "б": "b", "в": "b", "г": "r", "е": "e", "ё": "e", "з": "3", "и": "u", "й": "u",
    "к": "k", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "ь": "b", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d", "ɡ": "g", "һ": "h",
    "ӏ": "l", "ԛ": "q", "ԝ": "w", "ү": "y", "ɑ": "a", "ο": "o", "α": "a", "β": "b", "ε": "e",
    "η": "n", "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "γ": "y",
    "ω": "w", "μ": "u", "ϲ": "c", "ϳ": "j", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e",
    "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n",
    "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y",
    "ᴢ": "z", "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ß": "ss", "æ": "ae", "œ": "oe",
    # Armenian, Greek and Latin-extension look-alikes (issue 19)
    "ս": "u", "օ": "o", "ո": "n", "հ": "h", "ց": "g", "ք": "p", "ζ": "z", "ɩ": "i", "ʋ": "u",
    "ɾ": "r", "ȷ": "j", "ꓲ": "i", "ꓳ": "o", "ꓢ": "s", "ꓑ": "p", "ꓐ": "b", "ꓮ": "a", "ꓰ": "e",
}
_HOMOGLYPH_TABLE = str.maketrans(_HOMOGLYPHS)
# Regional-indicator "flag letters" spell words too.
_REGIONAL = {chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)}
_REGIONAL_TABLE = str.maketrans(_REGIONAL)

# Leetspeak: one primary reading per symbol; '1' and '|' are also read as 'l'.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
                       "8": "b", "9": "g", "@": "a", "$": "s", "!": "i", "|": "i", "+": "t",
                       "€": "e", "¡": "i"})
_LEET_ALT = str.maketrans({"1": "l", "|": "l", "!": "l"})
_LEET_CHARS = set("0134567 89@$!|+€¡".replace(" ", ""))

# Tokens: letters/digits plus leet symbols and inner apostrophes or censor stars.
_TOKEN = re.compile(r"\*?[\w@$!|+€¡]+(?:['’*]+[\w@$!|+€¡]+)*\*?")
_RUN3 = re.compile(r"(.)\1{2,}")
_RUN2 = re.compile(r"(.)\1+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_CJK_CHAR = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
# Separators slipped between CJK characters to split a term ("裸 体", "ポ・ル・ノ").
_GAP = "[\\s.·・_*~-]+"
# ...and around single letters mixed in ("哆 啦 A 梦"): only the compact copy for matching.
CJK_GAP = re.compile(f"(?<=[{_CJK_CHAR}]){_GAP}(?=[{_CJK_CHAR}a-z0-9])|"
                      f"(?<=[a-z0-9]){_GAP}(?=[{_CJK_CHAR}])")



def clean_text(text: str) -> str:
    """NFKC, invisible/control characters removed, whitespace collapsed, ends stripped."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    text = text.translate(_REGIONAL_TABLE)
    return _SPACES.sub(" ", text).strip()


def fold(word: str) -> str:
    """Lower case, accents stripped, homoglyphs mapped to Latin (no leetspeak)."""
    word = unicodedata.normalize("NFD", word.lower())
    word = "".join(ch for ch in word if unicodedata.category(ch) != "Mn")
    return word.translate(_HOMOGLYPH_TABLE).replace("’", "'")


def has_cjk(text: str) -> bool:
    return _CJK.search(text) is not None


def _endings(word: str) -> set[str]:
    """The word plus forms with a possessive or plural ending removed."""
    forms = {word}
    if "'" in word:
        base = word.split("'")[0]
        forms |= {base, word.replace("'", "")}
    for form in list(forms):
        if len(form) > 4 and form.endswith("ies"):
            forms.add(form[:-3] + "y")
        if len(form) > 4 and form.endswith("es"):
            forms.add(form[:-2])
        if len(form) > 3 and form.endswith("s") and not form.endswith("ss"):
            forms.add(form[:-1])
    return forms


@functools.lru_cache(maxsize=65536)
def variants(raw: str) -> frozenset[str]:
    """All spellings one token is checked under (at most a few dozen short strings)."""
    lower = raw.lower().replace("’", "'")
    folded = fold(raw)
    bases = {lower, folded, folded.strip("!|+¡.")}
    if any(ch.isalpha() for ch in folded) and any(ch in _LEET_CHARS for ch in folded):
        bases |= {folded.translate(_LEET), folded.translate(_LEET_ALT).translate(_LEET)}
    for base in list(bases):
        if _RUN3.search(base):
            bases |= {_RUN3.sub(r"\1", base), _RUN3.sub(r"\1\1", base)}
    for base in list(bases):
        squeezed = _RUN2.sub(r"\1", base)
        if squeezed != base and len(squeezed) >= 4:
            bases.add(squeezed)
    out: set[str] = set()
    for base in bases:
        out |= _endings(base)
    if _CYRILLIC_WORD.fullmatch(lower):
        out |= _case_forms(lower)
    return frozenset(w for w in out if w)


# Russian case endings, longest first: "Кока-Колы", "в Макдоналдсе", "с Адидасом" (v14)
_RU_ENDINGS = ("ами", "ями", "ой", "ей", "ом", "ем", "ам", "ям", "ах", "ях", "ов", "ы", "и",
               "е", "у", "ю", "а", "я")
_CYRILLIC_WORD = re.compile("[\u0400-\u04ff]{4,}")


def _case_forms(word: str) -> set[str]:
    """The nominative forms an inflected Russian word may stand for: its stem (a consonant
    ending, "макдоналдс") and the stem + а/я ("кола", "тойота"); stems of 3+ letters only."""
    for ending in _RU_ENDINGS:
        stem = word[:-len(ending)]
        if word.endswith(ending) and len(stem) >= 3:
            return {stem, stem + "а", stem + "я"}
    return set()


@dataclass(frozen=True)
class Token:
    """One detection token: ``clean[start:end]`` and its lookup spellings."""
    start: int
    end: int
    raw: str
    variants: frozenset[str]
    folded: str  # canonical lower-case, leet-folded spelling (for joins and compact search)


@functools.lru_cache(maxsize=65536)
def canonical(raw: str) -> str:
    folded = fold(raw)
    if any(ch.isalpha() for ch in folded):
        folded = folded.translate(_LEET)
    return "".join(ch for ch in folded if ch.isalnum())


def tokenize(clean: str) -> list[Token]:
    """Split clean text into tokens with spans; '*' inside a token is a censor mark, kept."""
    tokens = []
    for m in _TOKEN.finditer(clean):
        raw = m.group(0)
        tokens.append(Token(m.start(), m.end(), raw, variants(raw), canonical(raw)))
    return tokens


def join_singles(tokens: list[Token], min_run: int = 3, clean: str | None = None) -> list[Token]:
    """Merge runs of >= min_run one-character tokens ("s e x", "n.u.d.e") into one token.

    With ``clean`` given, a run also ends where the separator changes ("n.u.d.e g.i.r.l").
    """
    merged, run = [], []
    gap = [None]

    def flush():
        if len(run) >= min_run:
            raw = "".join(t.raw for t in run)
            merged.append(Token(run[0].start, run[-1].end, raw, variants(raw), canonical(raw)))
        run.clear()

    for tok in tokens:
        if len(tok.folded) != 1:
            flush()
            continue
        if run and clean is not None:
            sep = clean[run[-1].end:tok.start]
            if len(run) == 1:
                gap[0] = sep
            elif sep != gap[0] and len(run) == 2:  # "a h.o.o.k": the first letter was a word
                run.pop(0)
                gap[0] = sep
            elif sep != gap[0]:
                flush()
        run.append(tok)
    flush()
    return merged


def compact(text: str) -> str:
    """Letters and digits only, folded: for names glued together or split at odd places."""
    return "".join(canonical(t) for t in _TOKEN.findall(text))
