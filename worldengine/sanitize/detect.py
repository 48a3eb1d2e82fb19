"""Category detection: term-list hits (matching.py) turned into categories by context rules.

Rules, per strictness (``Strictness``):
- benign phrases ("shooting range", "blood moon", "photo shoot") hide the hits inside them,
  and so does a nudity word on a thing (bare.py: "eine nackte Eiche", "naked trees");
- explicit sexual terms -> "sexual"; explicit minor terms (loli, jailbait...) -> "minors";
- a child/teen word is fine alone ("a kid's bedroom"), but with sexual or suggestive wording,
  graphic violence, other unsafe content or a harm verb aimed at people -> "minors";
- suggestive wording (sexy, lingerie) alone -> "sexual" only at strict; next to a posing,
  bedroom or seductive cue (sexual_context: "posing", "on a bed", "writhing") -> "sexual" at
  standard too ("lingerie on a washing line", "a lingerie shop window" stay benign);
- graphic violence/gore -> "violence"; grim but non-graphic words (corpse, blood) only at strict;
- a harm verb with a human target within a few words ("shooting civilians") -> "violence";
  game targets (zombies, robots, targets at a range) are not human targets;
- minors with danger or harm wording (in any listed language) -> "minors", sexual or not;
  also minors with a hazard + danger cue or work + labour cue pair (hazards.py: "a toddler
  alone on a canal edge", "kids picking tomatoes for twelve hours");
- entries marked for one language (``~term``) count only in prompts of that language;
- celebrity names, and people found by name shape or a person cue (names.py) -> "celebrity";
  franchises/characters -> "branded_ip"; characters and stage names that are also words
  (ip_cased, celebrities_cased) only when written like a name and, as the first word, followed by
  a function word or a participle ("Sonic running", "Drake in a cabin", "Doda śpiewająca"; not
  "sonic boom", "a drake on a pond");
  commercial brands ->
  "branded_ip" except at relaxed; self-harm, hard drugs, terrorism, hate symbols -> "unsafe";
- when none of that fires, the learned classifier (learned_stage.py) may still flag one of
  sexual / minors / celebrity / branded_ip (``Detection.learned``; no term spans).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worldengine.errors import Choice, WaypointError
from worldengine.sanitize.bare import bare_spans
from worldengine.sanitize.hazards import hazard_pair
from worldengine.sanitize.language import languages
from worldengine.sanitize.learned_stage import learned_flag
from worldengine.sanitize.lexicon import RULE_ROLES, Lexicon, get_lexicon
from worldengine.sanitize.matching import Hit, find_hits
from worldengine.sanitize.names import name_cased, name_hits
from worldengine.sanitize.namesakes import spelled_places
from worldengine.sanitize.normalize import Token, clean_text, tokenize
from worldengine.sanitize.spacing import reindex

CATEGORIES = ("sexual", "minors", "celebrity", "branded_ip", "violence", "unsafe")
_MAX_CHARS = 8000  # sanitize() cuts at 4000 on a word break; detect() alone never reads more
_TARGET_WINDOW = 5  # tokens between a harm verb and its victim
_PASSIVE = {"being", "getting", "got", "get", "gets", "was", "were", "is", "are", "been"}
_FOLLOWERS = {"in", "on", "at", "and", "with", "from", "under", "near", "inside", "riding",
              "walking", "running", "standing", "sitting", "flying", "eating", "playing",
              # the same role in the other listed languages ("Topolino che guida", "Red Kit bir")
              "dans", "sur", "avec", "et", "qui", "en", "con", "y", "que", "im", "auf", "mit", "und",
              "che", "e", "nel", "nella", "sul", "em", "no", "na", "com", "op", "met", "die", "w",
              "z", "i", "bir", "ve", "ile"}
# A participle or gerund after a first-word stage name makes it someone doing something
# ("Doda śpiewająca", "Anitta cantando", "Edis söylüyor"): -ing, -ando/-endo/-indo, -ąca/-ący/
# -ące/-jąc, -iyor, -ющий/-ящая, -end(e). Other verb forms say nothing ("Sonic boom").
_PARTICIPLE = re.compile(r"(?:ing|ando|endo|indo|ąca|ący|ące|jąc|[iıuü]yor|[юя]щ[аи][йя]|ende?)$")
_LEET_HEADS = frozenset("013456789@$")
_SIGNALS = ("harm_target", "minor_subject", "harm_verb", "harm_verb_passive", "minor_risk")


class Strictness(Choice):
    RELAXED = "relaxed"
    STANDARD = "standard"
    STRICT = "strict"

    @classmethod
    def label(cls) -> str:
        return "strictness"


@dataclass
class Detection:
    """Categories found in ``clean`` and the hits that must be rewritten (char spans)."""
    clean: str
    categories: list[str] = field(default_factory=list)
    flagged: list[Hit] = field(default_factory=list)
    pairs: list[tuple[Hit, Hit]] = field(default_factory=list)  # (harm verb, victim)
    learned: tuple[str, float] | None = None  # (category, probability) when only the model flagged

    @property
    def unsafe(self) -> bool:
        return bool(self.categories)


def _inside(hit: Hit, spans: list[tuple[int, int]]) -> bool:
    """Starting inside a benign phrase (a glued "[water pistol] at" -> "pistola" runs out of
    it), or running into one ("avec un [pistolet à eau]")."""
    return any(s <= hit.start < e or hit.start < s < hit.end <= e for s, e in spans)


def _drop_contained(hits: list[Hit]) -> list[Hit]:
    """Keep the longest of overlapping term hits ("torture chamber" over "torture")."""
    kept = []
    for hit in hits:
        if hit.role in _SIGNALS[:2]:
            kept.append(hit)
            continue
        longer = any(o is not hit and o.role not in _SIGNALS + RULE_ROLES
                     and o.start <= hit.start and hit.end <= o.end
                     and (o.end - o.start) > (hit.end - hit.start) for o in hits)
        if not longer:
            kept.append(hit)
    return kept


def _as_name(tokens: list[Token], hit: Hit) -> bool:
    """Written like a name, and not the prompt's first word unless a function word follows
    ("Sonic running", "Sonic in a jungle"; not "sonic boom", "Sonic boom over a desert")."""
    if not 0 <= hit.tok_start < len(tokens):
        return False
    raw = tokens[hit.tok_start].raw
    # a leet digit for the first letter ("5on1c", "0laf") hides the capital: disguise, a name
    if not name_cased(raw) and not (raw[:1] in _LEET_HEADS and any(c.isalpha() for c in raw)):
        return False
    capitals = sum(t.raw[:1].isupper() for t in tokens)
    if capitals > 0.6 * len(tokens) and not any(c.isupper() for c in raw[1:]):
        return False  # Title Case Prompt: a capital says nothing (oDd casing still counts)
    after = tokens[hit.tok_end].raw.lower() if hit.tok_end < len(tokens) else ""
    return hit.tok_start > 0 or after in _FOLLOWERS or bool(_PARTICIPLE.search(after))


def _tok_index(tokens: list[Token], hit: Hit) -> tuple[int, int]:
    if hit.tok_start >= 0:
        return hit.tok_start, hit.tok_end
    inside = [i for i, t in enumerate(tokens) if t.start >= hit.start and t.end <= hit.end]
    if not inside:
        inside = [i for i, t in enumerate(tokens) if t.start < hit.end and t.end > hit.start]
    return (inside[0], inside[-1] + 1) if inside else (-1, -1)


def _harm_pairs(tokens: list[Token], verbs: list[Hit], passive_verbs: list[Hit],
                victims: list[Hit]) -> list[tuple]:
    """(verb, victim) when the victim follows within the window, or precedes it in passive voice."""
    pairs = []
    for verb in verbs + passive_verbs:
        vs, ve = _tok_index(tokens, verb)
        for victim in victims:
            ts, te = _tok_index(tokens, victim)
            if vs < 0 or ts < 0:
                continue
            after = 0 <= ts - ve < _TARGET_WINDOW and verb.role == "harm_verb"
            between = {t.folded for t in tokens[te:vs]}
            passive = 0 <= vs - te <= 3 and bool(between & _PASSIVE) or (
                verb.role == "harm_verb_passive" and vs == te)
            glued = (verb.start, verb.end) == (victim.start, victim.end)  # "shootingpeople"
            if after or passive or glued:
                pairs.append((verb, victim))
    return pairs


def _cued(by_role: dict[str, list[Hit]]) -> bool:
    """A posing/bedroom cue beside a suggestive word. The cue must be another word: "stripping"
    is both, and alone it is "stripping old paint"."""
    suggestive = by_role.get("suggestive", [])
    return bool(suggestive) and any(
        not any(s.start < c.end and c.start < s.end for s in suggestive)
        for c in by_role.get("suggestive_context", ()))


def _names(clean: str, tokens: list[Token], typed: list[Token], hits: list[Hit]) -> list[Hit]:
    """Name-rule hits (names.py). ``typed``: the tokens as typed; when spelled-out runs were
    split into words (spacing.py, ``tokens``), names see the letters as typed, so a split of an
    unknown name ("S a g r a d a" -> sa gr ada) makes no name shape."""
    if len(typed) == len(tokens):
        return name_hits(clean, tokens, hits)
    return [reindex(h, tokens) for h in name_hits(clean, typed, hits)]


def detect(text: str, strictness: str | Strictness = Strictness.STANDARD,
           lexicon: Lexicon | None = None, use_model: bool = True) -> Detection:
    """Detect unsafe categories in ``text`` (any string; normalised here); ``use_model=False``
    skips the learned classifier."""
    if not isinstance(text, str):
        raise WaypointError(f"prompt must be a string, got {type(text).__name__}")
    level = Strictness.parse(strictness)
    lex = lexicon or get_lexicon()
    clean = clean_text(text[:_MAX_CHARS])
    tokens, hits = find_hits(lex, clean, fuzzy=level is not Strictness.RELAXED)
    if any(h.entry.lang for h in hits):
        langs = languages(clean)
        hits = [h for h in hits if h.entry.lang is None or h.entry.lang in langs]
    words = tokenize(clean)
    hits += _names(clean, tokens, words, hits)
    bare = bare_spans(clean, hits)
    benign = [(h.start, h.end) for h in hits + bare if h.role == "benign"] + spelled_places(
        clean, words, hits)
    hits = _drop_contained([h for h in hits if h.role != "benign" and not _inside(h, benign)])
    by_role: dict[str, list[Hit]] = {}
    for hit in hits:
        by_role.setdefault(hit.role, []).append(hit)
    strict = level is Strictness.STRICT
    found: dict[str, list[Hit]] = {}

    def flag(category: str, role_hits) -> None:
        if role_hits:
            found.setdefault(category, []).extend(role_hits)

    for role in ("sexual", "minors", "celebrity", "branded_ip", "violence", "unsafe"):
        flag(role, by_role.get(role))
    flag("celebrity", [h for h in by_role.get("celebrity_cased", ()) if _as_name(tokens, h)])
    flag("branded_ip", [h for h in by_role.get("branded_ip_cased", ()) if _as_name(tokens, h)])
    if level is not Strictness.RELAXED:
        flag("branded_ip", by_role.get("brand"))
    if strict or (level is Strictness.STANDARD and _cued(by_role)):
        flag("sexual", by_role.get("suggestive"))
        flag("violence", by_role.get("violence_moderate"))
    minors = by_role.get("minor_subject", [])
    victims = by_role.get("harm_target", []) + minors
    pairs = _harm_pairs(tokens, by_role.get("harm_verb", []),
                        by_role.get("harm_verb_passive", []), victims)
    flag("violence", [h for pair in pairs for h in pair])
    moderate = by_role.get("violence_moderate", [])
    if moderate and victims and not strict:  # grim words next to a person: "a victim screaming"
        flag("violence", moderate)
    risky = (found.get("sexual") or found.get("violence") or found.get("unsafe")
             or by_role.get("suggestive") or by_role.get("minor_risk") or hazard_pair(by_role))
    if minors and risky:
        flag("minors", minors + by_role.get("suggestive", []) + by_role.get("minor_risk", []))
    categories = [c for c in CATEGORIES if c in found]
    if categories:  # once a prompt is rewritten, soften its grim/suggestive words as well
        flag("context", by_role.get("suggestive"))
        flag("context", by_role.get("violence_moderate"))
    categories_hits = categories + ["context"] if categories else categories
    flagged = {id(h): h for c in categories_hits for h in found.get(c, ())}
    # a nudity word the bare rule cleared is no cue for the classifier either ("nackte Felsen")
    learned = None if categories or bare or not use_model else learned_flag(clean, level.value)
    return Detection(clean, [learned[0]] if learned else categories,
                     sorted(flagged.values(), key=lambda h: h.start), pairs, learned)
