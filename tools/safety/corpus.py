"""Training corpus for the learned prompt classifier (worldengine/sanitize/learned.py).

Deterministic (``random.Random(seed)``). Three sources, all multilingual:
1. the hand-written dev items (``dev_items``, ``heldout*_items`` 1-14: dev data since their first
   runs; v10's ``generated_items`` and v15's ``generated15a_items`` / ``generated15b_items``): every unsafe item in its plain form and under every
   evasion of its script, plus a counterfactual benign twin (the bracketed element dropped, or a child word swapped for an
   adult one), and every benign look-alike with its evasions;
2. template prompts: term-list entries of each language (child words x risk wording, explicit
   terms, names, franchises) placed in the languages' benign scenes, and child words in benign
   scenes (label safe: a child alone is fine);
3. the v1 prompt items (``tools/prompt_set_items.py``).
Labels are ``learned.LABELS``; violence / other lexicon categories are "safe" here (the term
lists keep those).
"""

from __future__ import annotations

import importlib
import random
import re
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TOOLS), str(TOOLS / "safety"), str(TOOLS.parent)]
from make_prompt_sets import apply, plain
from make_sets import evasions, odd_case

from worldengine.sanitize.learned import LABELS
from worldengine.sanitize.lexicon import DATA_DIR

LANGS = ("en", "fr", "es", "de", "it", "pt", "nl", "pl", "ru", "tr", "ja", "zh", "ko")
ADULT = {"en": "a man", "fr": "un homme", "es": "un hombre", "de": "ein Mann", "it": "un uomo",
         "pt": "um homem", "nl": "een man", "pl": "mężczyzna", "ru": "мужчина", "tr": "bir adam",
         "ja": "男性", "zh": "男人", "ko": "남자"}
DEV_MODULES = ("dev_items",) + tuple(f"heldout{n}_items" for n in ("", *range(2, 15)))
# own training items, never an evaluation set: v10's, and v15's two broad natural corpora
GENERATED = ("generated_items", "generated15a_items", "generated15b_items")
_SECTION = re.compile(r"^\[([a-z_]+)")


def _entries(lines: list[str]) -> dict[str, list[str]]:
    """{list stem: plain terms} from a term file's lines (replacements, ~ and * stripped)."""
    out: dict[str, list[str]] = {}
    section = None
    for line in lines:
        line = line.strip()
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        if not line or line.startswith("#") or section is None:
            continue
        term = line.split("=>")[0].strip().lstrip("~").rstrip("*").strip()
        if len(term) >= 2:
            out.setdefault(section, []).append(term)
    return out


def term_lists() -> dict[str, dict[str, list[str]]]:
    """{lang: {stem: terms}} for the stems the templates use."""
    stems = ("minor_subjects", "minor_risks", "sexual_explicit", "celebrities", "ip_franchises")
    lists = {"en": {s: _entries(["[" + s + "]"] + (DATA_DIR / f"{s}.txt").read_text(
        encoding="utf-8").splitlines()).get(s, []) for s in stems}}
    for lang in LANGS[1:]:
        lists[lang] = _entries((DATA_DIR / "i18n" / f"{lang}.txt").read_text(
            encoding="utf-8").splitlines())
    return lists


def _variants(text: str, lang: str) -> list[str]:
    return [plain(text)] + [apply(text, t) for t in evasions(lang)] + [
        apply(text, odd_case)] if "[" in text else [plain(text)]


def _twin(category: str, text: str, lang: str) -> str | None:
    """The benign counterfactual of an unsafe item: its unsafe element gone or made adult."""
    if category == "minors":
        return re.sub(r"\[[^\]]+\]", ADULT[lang], text)
    if category in ("sexual", "celebrity", "branded_ip"):
        return re.sub(r"\s*\[[^\]]+\]\s*", " ", text).strip()
    return None


def _still_unsafe(twin: str) -> bool:
    """True when the term lists still flag a twin in a classifier category: an unsafe remainder
    outside the brackets ("un homme de 13 ans", "até tirar a roupa") makes it no benign
    counterfactual, and training it as "safe" would teach that remainder is fine."""
    from worldengine.sanitize.detect import detect
    return bool(set(detect(twin, use_model=False).categories) & set(LABELS[1:]))


def dev_items() -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    """(text, label, lang) rows from the dev modules, and benign scenes per language."""
    rows, scenes = [], {lang: [] for lang in LANGS}
    for name in DEV_MODULES + GENERATED:
        mod = importlib.import_module(name)
        for lang, items in mod.UNSAFE.items():
            for category, text in items:
                label = category if category in ("sexual", "minors", "celebrity",
                                                 "branded_ip") else "safe"
                forms = _variants(text, lang)
                rows += [(v, label, lang) for v in forms]
                twin = _twin(category, text, lang)
                if twin and not _still_unsafe(twin):  # as often as the unsafe forms: the
                    # scene words must stay neutral
                    rows += [(twin, "safe", lang)] * len(forms)
        for lang, texts in mod.BENIGN.items():
            for text in texts:
                rows += [(v, "safe", lang) for v in _variants(text, lang)]
                scenes.setdefault(lang, []).append(plain(text))
    return rows, scenes


def _glue(lang: str, scene: str, element: str, rng: random.Random) -> str:
    if lang in ("ja", "zh"):
        return rng.choice([f"{scene}、{element}", f"{element}、{scene}"])
    return rng.choice([f"{scene}, {element}", f"{element}, {scene}", f"{element} — {scene}"])


def _evade(element: str, lang: str, rng: random.Random) -> str:
    transform = rng.choice([None, None] + evasions(lang) + [odd_case])
    return apply(f"[{element}]", transform) if transform else element


def templates(scenes: dict[str, list[str]], per_lang: int, seed: int = 0) -> list[tuple]:
    """Generated (text, label, lang) rows: term-list entries placed in benign scenes."""
    rng = random.Random(seed)
    lists, rows = term_lists(), []
    for lang in LANGS:
        own = lists.get(lang, {})
        kids, risks = own.get("minor_subjects", []), own.get("minor_risks", [])
        pools = {"sexual": own.get("sexual_explicit", []),
                 "celebrity": own.get("celebrities", []) or lists["en"]["celebrities"],
                 "branded_ip": own.get("ip_franchises", []) or lists["en"]["ip_franchises"]}
        if lang != "en":
            pools["celebrity"] = pools["celebrity"] + rng.sample(lists["en"]["celebrities"], 80)
        sc = scenes.get(lang) or scenes["en"]
        for _ in range(per_lang):
            scene = rng.choice(sc)
            if kids and risks:
                kid = _evade(rng.choice(kids), lang, rng)
                sep = "" if lang in ("ja", "zh", "ko") else " "
                risk = rng.choice(risks)
                rows.append((_glue(lang, scene, f"{kid}{sep}{risk}", rng), "minors", lang))
                # twins: the same scene with the child alone, or an adult at the same risk, is
                # "safe", so scene and risk words carry no weight on their own
                rows.append((_glue(lang, scene, kid, rng), "safe", lang))
                rows.append((_glue(lang, scene, f"{ADULT[lang]}{sep}{risk}", rng), "safe", lang))
            for label, pool in pools.items():
                if pool:
                    rows.append((_glue(lang, scene, _evade(rng.choice(pool), lang, rng), rng),
                                 label, lang))
                    rows.append((_glue(lang, scene, rng.choice([ADULT[lang], rng.choice(sc)]),
                                       rng), "safe", lang))
            rows.append((scene, "safe", lang))
    rows += [(_english_scene(rng), "safe", "en") for _ in range(4 * per_lang)]
    return rows


def _english_scene(rng: random.Random) -> str:
    """A benign English scene from the scene vocabulary (place, weather, time, style...)."""
    from worldengine.sanitize.scene import vocabulary
    vocab = vocabulary()
    parts = [rng.choice(vocab[a]) for a in ("place", "weather", "time", "mood", "style",
                                             "camera") if vocab.get(a) and rng.random() < 0.6]
    subject = rng.choice(["a traveler", "a woman", "a man", "an old fisherman", "a fox",
                          "a child", "kids", "a robot", "a knight", "a girl", "a boy", ""])
    return ", ".join(p for p in [f"{subject} in a {rng.choice(vocab['place'])}"] + parts if p)


def v1_items() -> list[tuple[str, str, str]]:
    """The v1 prompt items (English, a few foreign ones)."""
    mod = importlib.import_module("prompt_set_items")
    rows = []
    for category, items in getattr(mod, "UNSAFE", {}).items():
        label = category if category in ("sexual", "minors", "celebrity", "branded_ip") else "safe"
        for text in items:
            text = text if isinstance(text, str) else text[-1]
            rows += [(v, label, "en") for v in _variants(text, "en")]
    for text in getattr(mod, "BENIGN", []):
        if isinstance(text, str):
            rows += [(v, "safe", "en") for v in _variants(text, "en")]
    return rows


def build(per_lang: int = 600, seed: int = 0) -> list[tuple[str, str, str]]:
    rows, scenes = dev_items()
    rows += templates(scenes, per_lang, seed)
    try:
        rows += v1_items()
    except (ImportError, AttributeError, TypeError):
        pass
    return rows
