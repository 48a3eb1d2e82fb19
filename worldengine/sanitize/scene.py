"""Scene vocabulary: pull place/weather/time/mood/style/camera words out of a prompt, rebuild a
safe scene description from them, and enrich very short prompts. Deterministic (choices use a
CRC32 of the text, never a random generator)."""

from __future__ import annotations

import functools
import json
import re
import zlib

from worldengine.sanitize.lexicon import DATA_DIR

ASPECTS = ("style", "mood", "place", "weather", "time", "camera")
DEFAULT_SCENE = "An explorable world"
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
SHORT_PROMPT_WORDS = 4  # prompts with fewer content words than this get enriched
_STOP = {"a", "an", "the", "of", "in", "on", "at", "with", "and", "to", "by", "for", "from",
         "into", "near", "under", "over", "some", "very", "is", "are"}


@functools.lru_cache(maxsize=1)
def vocabulary() -> dict[str, list[str]]:
    data = json.loads((DATA_DIR / "scene_words.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _pick(options: list[str], text: str, salt: str) -> str:
    return options[zlib.crc32(f"{salt}:{text}".encode("utf-8")) % len(options)]


def scene_aspects(text: str) -> dict[str, list[str]]:
    """Scene words found in ``text`` per aspect, in order of appearance."""
    lowered = " " + " ".join(_WORD.findall(text.lower())) + " "
    vocab = vocabulary()
    found = {}
    for aspect in ASPECTS:
        hits = [(lowered.find(f" {w} "), w) for w in vocab[aspect] if f" {w} " in lowered]
        words = []
        for _, word in sorted(hits):
            if not any(word in other for other in words):
                words.append(word)
        found[aspect] = words
    return found


def rebuild_scene(text: str) -> str:
    """A safe description from the scene words of ``text`` alone (the subject is dropped)."""
    aspects = scene_aspects(text)
    head = " ".join(aspects["style"][:2] + aspects["mood"][:2])
    place = " and ".join(aspects["place"][:2])
    if place:
        subject = f"{head} {place}".strip()
        subject = f"{'an' if subject[0] in 'aeiou' else 'a'} {subject}"
    else:
        subject = f"{head} explorable world".strip()
        subject = f"{'an' if subject[0] in 'aeiou' else 'a'} {subject}"
    extras = aspects["weather"][:2] + aspects["time"][:1] + aspects["camera"][:1]
    return ", ".join([subject[0].upper() + subject[1:]] + extras)


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def needs_enrichment(text: str) -> bool:
    return len(content_words(text)) < SHORT_PROMPT_WORDS


def enrich(text: str) -> str:
    """Expand a short prompt ("forest") into the descriptive form the model was trained on."""
    base = text.strip().rstrip(".,;:") or DEFAULT_SCENE
    aspects = scene_aspects(base)
    vocab = vocabulary()
    parts = [base[0].upper() + base[1:]]
    if not aspects["place"]:
        parts.append("an explorable environment")
    parts.append(_pick(vocab["enrich_detail"], base, "detail"))
    if not (aspects["time"] or aspects["weather"]):
        parts.append(_pick(vocab["enrich_light"], base, "light"))
    if not aspects["camera"]:
        parts.append(_pick(vocab["enrich_camera"], base, "camera"))
    return ", ".join(parts)
