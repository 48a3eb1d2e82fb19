"""Titles that make the name next to them a real person: the list ``data/titles.txt`` and the
CJK/Hangul form of the rule, where titles are written after the name with no space ("岸田総理",
"习近平主席") or one space ("윤석열 대통령"). The Latin/Cyrillic form ("Pope Francis", "koning
Willem-Alexander") works on tokens and lives in names.py with the other name rules.
"""

from __future__ import annotations

import functools
import re

from worldengine.sanitize.lexicon import DATA_DIR, Entry, parse_line
from worldengine.sanitize.matching import Hit


@functools.lru_cache(maxsize=1)
def titles() -> dict[str, set]:
    """``data/titles.txt`` by mark: "" / "?" title word tuples, ">" ">>" "<" CJK titles, "!"
    stop word tuples, "!!" CJK stops (format in the file's header)."""
    groups: dict[str, set] = {m: set() for m in ("", "?", ">", ">>", "<", "!", "!!", "+")}
    path = DATA_DIR / "titles.txt"
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        mark, _, rest = body.partition(" ")
        if not body or mark not in groups:
            mark, rest = "", body
        if mark in (">", ">>", "<", "!!"):
            groups[mark].add(rest.strip().lower())
        elif rest:
            groups[mark].add(parse_line(rest, "title", None, f"{path.name}:{number}").words)
    groups["first"] = {t[0] for t in groups[""] | groups["?"]}
    return groups


_RUNS = (("kata", re.compile(r"[\u30a0-\u30ff]+$")), ("han", re.compile(r"[\u4e00-\u9fff]+$")),
         ("hangul", re.compile(r"[\uac00-\ud7af]+$")))
_AFTER_TITLE = re.compile(r"^ ?([\u30a0-\u30ff]{2,12}|[\uac00-\ud7af]{3,5})")


def cjk_title_hits(clean: str, entry: Entry) -> list[Hit]:
    """CJK/Hangul titles after a name ("岸田総理", "习近平主席", "윤석열 대통령") or before a
    katakana/Hangul name ("教皇フランシスコ"); the name is the same-script run next to it.
    ``entry`` is the person entry the hits carry."""
    groups, hits, low = titles(), [], clean.lower()
    kana = re.search(r"[\u3040-\u30ff]", clean) is not None
    for title in groups[">"] | groups[">>"]:
        for m in re.finditer(re.escape(title), low):
            end = m.start() - (1 if low[:m.start()].endswith(" ") and "\uac00" <= title[0] else 0)
            head = low[max(0, end - 24):end]
            for script, pattern in _RUNS:
                run = pattern.search(head)
                if run:
                    break
            if not run or any(run.group().endswith(s) for s in groups["!!"]):
                continue
            size = {"kata": 12, "han": 4 if kana else 3, "hangul": 5}[script]
            name = run.group()[-size:]
            royal_ok = script == "kata" or kana
            if len(name) < 2 or (title in groups[">>"] and title not in groups[">"]
                                 and not royal_ok) or (script == "hangul" and len(run.group()) > 5):
                continue
            hits.append(Hit(entry, end - len(name), m.end(), -1, -1, "name"))
    for title in groups["<"]:
        for m in re.finditer(re.escape(title), low):
            after = _AFTER_TITLE.match(low[m.end():])
            if after:
                hits.append(Hit(entry, m.start(), m.end() + after.end(1), -1, -1, "name"))
    return hits
