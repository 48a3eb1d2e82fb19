"""Which languages a prompt is written in: writing systems plus votes of function words.

``languages(clean)`` returns a set of codes ("en", "fr", "ja", ...). It only scopes the few
lexicon entries that are harmless words in another language (``~term`` in ``data/i18n``); every
other entry applies whatever the language, so a misdetected or mixed prompt still gets checked.
Deterministic and cheap (one pass over the tokens); no package needed.
"""

from __future__ import annotations

import functools
import json
import re

from worldengine.sanitize.lexicon import DATA_DIR

_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
# Cyrillic letters with no Latin look-alike: a word made only of look-alikes ("ѕеху") is an
# evasion of a Latin word, not Russian.
_RUSSIAN_ONLY = re.compile(r"[бгджзийлфцчшщъыьэюя]", re.I)
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


@functools.lru_cache(maxsize=1)
def function_words() -> dict[str, frozenset[str]]:
    """Language code -> its function words (``data/languages.json``)."""
    data = json.loads((DATA_DIR / "languages.json").read_text(encoding="utf-8"))
    return {k: frozenset(v) for k, v in data.items() if not k.startswith("_")}


def _script_languages(text: str) -> set[str]:
    found = set()
    if _KANA.search(text):
        found.add("ja")
    if _HANGUL.search(text):
        found.add("ko")
    if _HAN.search(text) and "ja" not in found:
        found.add("zh")
    if _RUSSIAN_ONLY.search(text):
        found.add("ru")
    return found


def languages(clean: str) -> frozenset[str]:
    """Languages of ``clean`` (cleaned prompt text): by script, then by the best word vote.

    Ties keep every tied language; a prompt with no function words counts as English.
    """
    found = _script_languages(clean)
    words = [w.lower() for w in _WORD.findall(clean)]
    votes = {lang: sum(w in table for w in words) for lang, table in function_words().items()}
    best = max(votes.values(), default=0)
    if best:
        found |= {lang for lang, n in votes.items() if n == best}
    elif not found:
        found.add("en")
    return frozenset(found)
