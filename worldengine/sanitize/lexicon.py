"""Term lists: plain-text data files under ``data/``, loaded once into lookup indexes.

File format (UTF-8), one entry a line::

    # comment
    term                      -> default replacement for the list
    multi word term           -> matched as consecutive tokens (hyphens/spaces both fine)
    prefix*                   -> matches any word starting with "prefix" (single words only)
    term => safe replacement  -> replacement text; "term =>" (empty) drops the term

Each list has a role (see ``LISTS``). Add a list by adding a file and a line to ``LISTS``.

Other languages live in ``data/i18n/<lang>.txt``: ``[list stem]`` or ``[list stem => default]``
section headers, then entries as above. An entry written ``~term`` counts only when the prompt
is detected as that language (``language.py``): German "Kind" is a child, English "kind" is not.
Words are indexed by their folded spelling (``normalize.fold``), or by plain lower case when they
are not Latin (Cyrillic, Greek words stay in their own script). CJK entries are matched as
substrings of the prompt.
"""

from __future__ import annotations

import functools
import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from worldengine.errors import WaypointError
from worldengine.sanitize.normalize import CJK_GAP, canonical, clean_text, fold, has_cjk, tokenize

DATA_DIR = Path(__file__).resolve().parent / "data"

# file stem -> (role, default replacement). Roles drive the rules in detect.py.
LISTS = {
    "sexual_explicit": ("sexual", ""),
    "sexual_suggestive": ("suggestive", ""),
    "sexual_context": ("suggestive_context", None),
    "minors_explicit": ("minors", ""),
    "minor_subjects": ("minor_subject", "a quiet figure"),
    "minor_risks": ("minor_risk", ""),
    "hazard_places": ("hazard_place", ""),
    "hazard_cues": ("hazard_cue", ""),
    "labour_work": ("labour_work", ""),
    "labour_cues": ("labour_cue", ""),
    "bare_objects": ("bare_object", None),
    "art_objects": ("art_object", None),
    "celebrities": ("celebrity", "a person"),
    "ip_franchises": ("branded_ip", "an original character"),
    "ip_cased": ("branded_ip_cased", "an original character"),
    "celebrities_cased": ("celebrity_cased", "a person"),
    "brands": ("brand", ""),
    "violence_graphic": ("violence", ""),
    "violence_moderate": ("violence_moderate", ""),
    "harm_verbs": ("harm_verb", ""),
    "harm_verbs_passive": ("harm_verb_passive", ""),
    "harm_targets": ("harm_target", ""),
    "unsafe_other": ("unsafe", ""),
    "benign_phrases": ("benign", None),
    "given_names": ("given_name", "a person"),
    "given_names_census": ("given_name", "a person"),
    "person_cues": ("person_cue", ""),
    "name_stops": ("name_stop", None),
}
# Roles that only pair with other hits in the v13 rules (hazards.py, bare.py): they hide no
# other match (matching.py), block no name (names.py) and drop no overlapping hit (detect.py).
RULE_ROLES = ("hazard_place", "hazard_cue", "labour_work", "labour_cue", "bare_object",
              "art_object")
# Roles that only feed the rules in detect.py / names.py: never matched glued or by typo.
_NO_COMPACT = ("benign", "suggestive_context", "harm_verb", "harm_verb_passive", "harm_target",
               "given_name", "person_cue", "name_stop", "branded_ip_cased",
               "celebrity_cased") + RULE_ROLES
_NO_FUZZY = ("benign", "suggestive_context", "harm_target", "minor_subject", "given_name",
             "person_cue", "name_stop", "branded_ip_cased", "celebrity_cased") + RULE_ROLES


@dataclass(frozen=True)
class Entry:
    """One term. ``words`` are index keys; ``prefix`` makes the last word a prefix."""
    role: str
    words: tuple[str, ...]
    prefix: bool
    replacement: str | None
    source: str  # "file:line" for reports and debugging
    text: str
    lang: str | None = None  # set: the entry counts only in prompts detected as this language


def _key(word: str) -> str:
    folded = fold(word)
    return folded if folded.isascii() else word.lower()


def parse_line(line: str, role: str, default: str | None, source: str,
               lang: str | None = None) -> Entry | None:
    """One term-list line as an Entry (None for blanks and comments); ``lang`` for ``~term``."""
    body = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
    if not body:
        return None
    scoped = body.startswith("~")
    body = body.lstrip("~").strip()
    replacement = default
    if "=>" in body:
        body, replacement = (part.strip() for part in body.split("=>", 1))
    prefix = body.endswith("*")
    body = body.rstrip("*").strip()
    if "*" in body:  # a prefix mark inside a phrase would silently never match
        raise WaypointError(f"sanitizer term list {source}: '*' only at the end of an entry, "
                            f"got {line.strip()!r}")
    scope = lang if scoped else None
    if has_cjk(body):  # matched on the prompt with separators between CJK letters removed
        return Entry(role, (CJK_GAP.sub("", body.lower()),), False, replacement, source, body,
                     scope)
    words = tuple(_key(t.raw) for t in tokenize(clean_text(body)))
    if not words:
        raise WaypointError(f"sanitizer term list {source}: entry {line.strip()!r} has no words")
    return Entry(role, words, prefix, replacement, source, body, scope)


class Lexicon:
    """Indexes over all entries: by first word, prefixes, CJK substrings, compact names."""

    def __init__(self, entries: list[Entry]):
        self.entries = entries
        self.by_first: dict[str, list[Entry]] = {}
        self.prefixes: dict[str, list[Entry]] = {}
        self.cjk: list[Entry] = []
        self.cjk_by_head: dict[str, list[int]] = {}  # positions in `cjk` by the entry's first character
        self.compact: list[tuple[str, Entry]] = []
        self.compact_by_head: dict[str, list[tuple[str, Entry]]] = {}
        self.single_long: dict[str, list[Entry]] = {}  # for fuzzy (edit distance 1) matching
        for entry in entries:
            if has_cjk(entry.text):
                self.cjk_by_head.setdefault(entry.words[0][:1], []).append(len(self.cjk))
                self.cjk.append(entry)
                continue
            if entry.prefix and len(entry.words) == 1:
                self.prefixes.setdefault(entry.words[0], []).append(entry)
            else:
                self.by_first.setdefault(entry.words[0], []).append(entry)
            glued = canonical("".join(entry.words))
            if entry.role not in _NO_COMPACT and len(glued) >= 7:
                self.compact.append((glued, entry))
                self.compact_by_head.setdefault(glued[:3], []).append((glued, entry))
            if len(entry.words) == 1 and not entry.prefix and len(glued) >= 8 \
                    and entry.role not in _NO_FUZZY:
                for key in _deletions(glued):
                    self.single_long.setdefault(key, []).append(entry)
        self.prefix_lengths = sorted({len(p) for p in self.prefixes})
        # Every word of every entry by length: expands censored spellings ("t*ylor").
        self.words_by_len: dict[int, set[str]] = {}
        for entry in entries:
            for word in entry.words:
                self.words_by_len.setdefault(len(word), set()).add(word)


def _deletions(word: str) -> set[str]:
    return {word} | {word[:i] + word[i + 1:] for i in range(len(word))}


_SECTION = re.compile(r"^\[\s*([a-z_]+)\s*(?:=>\s*([^\]]*))?\]\s*$")


def _language_entries(path: Path) -> list[Entry]:
    """Entries of one ``i18n/<lang>.txt`` file (sections name the list, optionally a default)."""
    lang, entries, role, default = path.stem, [], None, None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        section = _SECTION.match(line.strip())
        if section:
            if section.group(1) not in LISTS:
                raise WaypointError(f"sanitizer term list {path.name}:{number}: unknown list "
                                    f"{section.group(1)!r}; choose one of: {', '.join(LISTS)}")
            role, list_default = LISTS[section.group(1)]
            given = section.group(2)
            default = list_default if given is None or list_default is None else given.strip()
            continue
        entry = parse_line(line, role or "", default, f"{path.name}:{number}", lang)
        if entry is not None and role is None:
            raise WaypointError(f"sanitizer term list {path.name}:{number}: entry before any "
                                f"[list] section")
        if entry is not None:
            entries.append(entry)
    return entries


def load_entries(data_dir: Path = DATA_DIR) -> list[Entry]:
    """Every entry of the English lists and of the ``i18n/`` language files under ``data_dir``."""
    entries = []
    for stem, (role, default) in LISTS.items():
        path = data_dir / f"{stem}.txt"
        if not path.is_file():
            raise WaypointError(f"sanitizer term list missing: {path}")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            entry = parse_line(line, role, default, f"{path.name}:{number}")
            if entry is not None:
                entries.append(entry)
    foreign = [e for path in sorted((data_dir / "i18n").glob("*.txt"))
               for e in _language_entries(path)]
    # A non-ASCII term in both an English list and its language file ("子供", "голая"): the
    # language file's replacement is in the prompt's language, so it wins.
    own = {(e.role, e.words, e.prefix) for e in foreign if not e.text.isascii()}
    return [e for e in entries if (e.role, e.words, e.prefix) not in own] + foreign


@functools.lru_cache(maxsize=4)
def get_lexicon(data_dir: str | None = None) -> Lexicon:
    """The lexicon for a data folder (default: the package data), built once per process."""
    return Lexicon(load_entries(Path(data_dir) if data_dir else DATA_DIR))


@functools.lru_cache(maxsize=1)
def english_words() -> frozenset[str]:
    """Lower-case English words (``data/english_words.txt.gz``, from SCOWL; see WORDLISTS.NOTICE)."""
    with gzip.open(DATA_DIR / "english_words.txt.gz", "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip() and line[0] != "#")
