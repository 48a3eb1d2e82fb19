"""Children in everyday danger or at work, from word classes rather than phrases (v13).

A child word (role ``minor_subject``) makes a prompt "minors" when the prompt also holds one
of two pairs, each half from its own list (``data/*.txt`` and the ``i18n`` sections):
- a hazard place or thing (``hazard_places``: water, ice, heights, fire, traffic, machines)
  and a danger cue (``hazard_cues``: alone, unattended, on the edge, cracking, trapped...);
- work wording (``labour_work``: working, picking, carrying, digging, sewing...) and a labour
  cue (``labour_cues``: hours, all night, factory, mine, plantation, under the sun...).
Either half alone is harmless: "a boy swimming in a pool with a lifeguard", "children watching
fireworks", "kids picking apples in an orchard", "a factory at dusk".
"""

from __future__ import annotations

from worldengine.sanitize.matching import Hit

PAIRS = (("hazard_place", "hazard_cue"), ("labour_work", "labour_cue"))


def _apart(first: list[Hit], second: list[Hit]) -> bool:
    """Some hit of ``first`` and some of ``second`` cover different text (one word that is in
    both lists is no pair)."""
    return any(not (a.start < b.end and b.start < a.end) for a in first for b in second)


def hazard_pair(by_role: dict[str, list[Hit]]) -> bool:
    """Whether the prompt's hits (by role) hold a hazard + cue or a work + labour-cue pair."""
    return any(_apart(by_role.get(a, []), by_role.get(b, [])) for a, b in PAIRS)
