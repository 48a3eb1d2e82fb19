"""Rebuild worldengine/sanitize/data/english_words.txt.gz from Debian's wamerican word list.

    apt-get download wamerican && dpkg-deb -x wamerican_*.deb wam
    python tools/safety/build_wordlist.py wam/usr/share/dict/american-english

Keeps lower-case, letters-only entries (capitalised entries are proper names: exactly what the
list must not contain). See data/WORDLISTS.NOTICE for the licence.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "worldengine" / "sanitize" / "data" / "english_words.txt.gz"
HEADER = ("# Lower-case English words from SCOWL via Debian's wamerican 2020.12.07 "
          "(see WORDLISTS.NOTICE).\n")


def main(source: str) -> None:
    words = set()
    for line in Path(source).read_text(encoding="utf-8", errors="replace").splitlines():
        word = line.strip()
        if word and word.islower() and word.isalpha() and not word.endswith("'s"):
            words.add(word)
    data = (HEADER + "\n".join(sorted(words)) + "\n").encode("utf-8")
    with OUT.open("wb") as raw, gzip.GzipFile("", "wb", 9, raw, mtime=0) as fh:
        fh.write(data)  # mtime=0: the same words give the same bytes
    print(f"wrote {len(words)} words to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
