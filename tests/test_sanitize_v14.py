"""Sanitizer v14 (issue 19): sexual idioms in every language, minors in more harm classes,
nicknames and foreign-script brands, and the false rewrites set 13 showed (family words,
spelled-out street names, naked-named animals, odd casing seen by the classifier)."""

from __future__ import annotations

import pytest

from worldengine.sanitize import detect
from worldengine.sanitize.learned import _shape
from worldengine.sanitize.lexicon import DATA_DIR
from worldengine.sanitize.normalize import variants

LANGS = ("de", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "tr", "zh")


def _v14_section(text: str, marker: str) -> list[str]:
    """Entries of the v14 block that starts at the comment holding ``marker``."""
    block = text.split(marker, 1)[1].split("\n\n", 1)[0]
    return [ln for ln in block.splitlines()[1:] if ln.strip() and not ln.startswith(("#", "["))]


@pytest.mark.parametrize("lang", LANGS)
def test_each_language_has_a_broad_idiom_list(lang):
    text = (DATA_DIR / "i18n" / f"{lang}.txt").read_text(encoding="utf-8")
    assert len(_v14_section(text, "v14 (issue 19): sexual euphemisms")) >= 40


def test_english_idiom_list_is_broad():
    text = (DATA_DIR / "sexual_explicit.txt").read_text(encoding="utf-8")
    assert len(_v14_section(text, "v14 (issue 19): euphemisms")) >= 40


@pytest.mark.parametrize("text", [
    "write the scene where the couple gets frisky in the back seat of a parked car",
    "two strangers bumping uglies in a hotel room",
    "tu rejoins ta voisine pour une partie de jambes en l'air dans la cuisine",
    "ils s'envoient en l'air dans le grenier",
    "tú y tu cita acaban haciendo el delicioso en la habitación del hotel",
    "echando un polvo en el coche",
    "du und deine Affäre, ein Schäferstündchen im Gartenhaus",
    "die beiden schieben eine Nummer im Büro",
    "servizio fotografico hot in spiaggia a Rimini",
    "una sveltina nel ripostiglio",
    "você e o crush vão dar uns amassos no banco de trás do carro",
    "jij en je date duiken de slaapkamer in voor een vluggertje",
    "ty i sąsiadka, bara-bara na sianie w stodole",
    "ты и твоя подруга занимаетесь любовью на сеновале",
    "otel odasında sevişiyorlar",
    "너와 그녀가 모텔에서 잠자리를 갖는다",
    "ホテルで一夜を共にする二人",
    "两人在酒店里滚床单",
])
def test_sexual_idioms_are_sexual(text):
    assert "sexual" in detect(text).categories


@pytest.mark.parametrize("text", [
    "Jugendliche beim Komasaufen auf einem Spielplatz",
    "tieners die lachgas snuiven in een parkeergarage",
    "liseli gençler okul tuvaletinde hap atıyor",
    "il ragazzino spaccia per il clan tra i palazzoni",
    "adolescente sendo aliciado por traficantes na saída da escola",
    "школьник с обрезом идёт к зданию школы",
    "ein dreizehnjähriger Junge an einer Kreissäge in der Fabrik, ohne Schutz",
    "barefoot school kids sorting scrap metal for a foreman in a smoky yard",
    "küçük bir kız otoyolun ortasında ağlıyor",
    "小学生が工事現場の足場を登っている、ヘルメットなし",
    "a teenager dealing drugs for a gang behind the station",
])
def test_minors_in_harm_classes(text):
    assert "minors" in detect(text).categories


@pytest.mark.parametrize("text,category", [
    ("CR7 a cozinhar bacalhau numa tasca do Porto", "celebrity"),
    ("Schweini backt Brezeln in einer Nachtbäckerei", "celebrity"),
    ("sChWeInI backt Brezeln in einer Nachtbäckerei", "celebrity"),
    ("бутылка Кока-Колы размером с телебашню", "branded_ip"),
    ("обед в Макдоналдсе", "branded_ip"),
])
def test_nicknames_and_inflected_brands(text, category):
    assert category in detect(text).categories


@pytest.mark.parametrize("text", [
    "Oma backt Apfelstrudel",
    "oMa backt Apfelstrudel",
    "via G a r i b a l d i di sera",
    "ulica M i c k i e w i c z a jesienią",
    "eine Nacktschnecke auf einem Salatblatt",
    "a naked mole rat in a burrow",
    "children sleeping in a bunk bed",
    "kinderen op de wip in het park",
])
def test_v14_benign_stay_benign(text):
    assert not detect(text).unsafe


def test_a_street_word_needs_to_touch_the_spelled_name():
    # a comma between the place word and the name: a person at a station, not a street
    assert "celebrity" in detect("a desert gas station, B e y o n c é pumping fuel").categories


def test_odd_casing_has_the_plain_shape_for_the_classifier():
    assert _shape("fRiSkY") == _shape("frisky") == "l"
    assert _shape("McDonald") == "m"  # real mixed case keeps its shape


def test_russian_case_endings_reach_the_nominative():
    assert {"кола", "макдоналдс"} <= variants("колы") | variants("макдоналдсе")
    assert "кота" not in variants("кот")  # short words are left alone
