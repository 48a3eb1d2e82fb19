"""Nudity words on things: "eine nackte Eiche", "naakte bomen", "des murs nus", "голые ветки".

A one-word sexual hit (nackt, naakt, nu, desnudo, голый, çıplak...) right before or after a
word of ``data/bare_objects.txt`` (and its ``i18n`` sections: trees and branches, rock and
stone, walls and floors, earth, bulbs, wires, beams) says "bare", not "naked": the pair becomes
a benign span, which detect.py uses to drop the hit. A person next to the word keeps it
("a naked man by a tree": "naked" is next to "man"). Works of art (``data/art_objects.txt``:
statue, sculpture, fresco...) also clear a nudity word up to ``ART_GAP`` words after
them: "a marble statue of a nude athlete", "eine Statue eines nackten Gottes" (the dev sets'
benign look-alikes).
"""

from __future__ import annotations

from worldengine.sanitize.lexicon import Entry
from worldengine.sanitize.matching import Hit

ART_GAP = 2  # words between a statue word and the nudity word: "statue of a nude"
BARE_ENTRY = Entry("benign", ("<bare>",), False, None, "bare_objects.txt", "<bare>")


def _next_to(clean: str, left: Hit, right: Hit) -> bool:
    """``right`` follows ``left`` with only spaces or a hyphen between."""
    return left.end <= right.start and clean[left.end:right.start].strip(" -") == ""


def _art_before(clean: str, art: Hit, hit: Hit) -> bool:
    """``art`` ends at most ``ART_GAP`` words before ``hit`` starts."""
    return art.end <= hit.start and len(clean[art.end:hit.start].split()) <= ART_GAP


def bare_spans(clean: str, hits: list[Hit]) -> list[Hit]:
    """Benign spans over each one-word sexual hit in ``hits`` (char spans in ``clean``;
    spelled out or not) and a bare object right before or after it, or a work of art
    shortly before it."""
    objects = [h for h in hits if h.role in ("bare_object", "art_object")]
    spans = []
    for hit in hits:
        if hit.role != "sexual" or len(hit.entry.words) != 1:
            continue
        for obj in objects:
            if _next_to(clean, hit, obj) or _next_to(clean, obj, hit) or (
                    obj.role == "art_object" and _art_before(clean, obj, hit)):
                spans.append(Hit(BARE_ENTRY, min(hit.start, obj.start), max(hit.end, obj.end),
                                 -1, -1, "bare"))
                break
    return spans
