"""v13 rules: children with a hazard + danger cue or work + labour cue are "minors" (hazards.py),
either half alone stays benign; a nudity word on a thing is "bare" (bare.py); sex euphemisms,
regional brands and one-word stage names before a participle; a name glued into a place compound."""

import pytest

from worldengine.sanitize import detect
from worldengine.sanitize.hazards import hazard_pair
from worldengine.sanitize.lexicon import get_lexicon
from worldengine.sanitize.matching import find_hits
from worldengine.sanitize.normalize import clean_text


def _roles(text: str) -> dict:
    by_role: dict = {}
    for hit in find_hits(get_lexicon(), clean_text(text))[1]:
        by_role.setdefault(hit.role, []).append(hit)
    return by_role


@pytest.mark.parametrize("text", [
    "a toddler alone near a swimming pool", "kinderen alleen op het ijs dat kraakt",
    "아이가 혼자 얼음 위에 있다", "kids mixing chemicals in a garage"])
def test_child_with_a_hazard_and_a_danger_cue_is_minors(text):
    assert "minors" in detect(text).categories


@pytest.mark.parametrize("text", [
    "crianças trabalhando na lavoura de cana o dia inteiro", "dzieci pracujące całą noc w fabryce",
    "çocuklar tarlada saatlerce çalışıyor", "孩子们在工厂里通宵干活"])
def test_child_labour_is_minors(text):
    assert "minors" in detect(text).categories


@pytest.mark.parametrize("text", [
    "children flying a kite in a park", "a boy swimming in a pool with a lifeguard",
    "children watching fireworks at night", "a girl picking apples in an orchard",
    "niños jugando en la orilla del mar", "une fille qui fait du vélo au bord de la mer",
    "a kid building a sandcastle by the sea", "a child with a toy sword"])
def test_children_with_half_a_pair_stay_benign(text):
    assert not detect(text).categories


def test_a_pair_needs_both_halves_on_different_words():
    assert hazard_pair(_roles("alone by the river"))
    assert hazard_pair(_roles("working for twelve hours"))
    assert not hazard_pair(_roles("by the river"))
    assert not hazard_pair(_roles("working in the garden"))


@pytest.mark.parametrize("text", [
    "naakte bomen in de mist", "голые ветки зимой", "nackte Felsen am Meer", "des arbres nus sous la neige",
    "árboles desnudos en invierno", "çıplak ağaçlar kışın", "г о л ы е деревья зимой"])
def test_a_nudity_word_on_a_thing_is_bare(text):
    assert not detect(text).categories


@pytest.mark.parametrize("text", ["a naked man by a tree", "eine nackte Frau an einer Eiche"])
def test_a_nudity_word_on_a_person_stays_sexual(text):
    assert "sexual" in detect(text).categories


@pytest.mark.parametrize("text", [
    "the bard and the elf queen sleep together in a loft", "zwei Liebende schlafen miteinander im Heu",
    "eine Frau in Reizwäsche auf einem Hotelbett, verführerisch", "um casal seminu num motel"])
def test_euphemisms_and_worn_underwear_in_context_are_sexual(text):
    assert "sexual" in detect(text).categories


@pytest.mark.parametrize("text", ["two kittens sleeping together on a sofa",
                                  "kids sleeping together in a tent"])
def test_sleeping_side_by_side_stays_benign(text):
    assert not detect(text).categories


@pytest.mark.parametrize("text", [
    "a giant Guaraná Antarctica bottle in a forest", "Türk Telekom reklamı bir stadyumda",
    "a huge Nongfu Spring bottle in a desert"])
def test_regional_brands_are_branded_ip(text):
    assert "branded_ip" in detect(text).categories


def test_a_first_word_stage_name_before_a_participle_is_a_person():
    assert "celebrity" in detect("Doda śpiewająca na scenie").categories
    assert "celebrity" in detect("Sanah śpiewa na scenie").categories


def test_a_name_glued_into_a_place_compound_is_a_place():
    assert not detect("het Willem-Alexanderplein in de regen").categories
    assert "celebrity" in detect("Willem-Alexander op het plein").categories


@pytest.mark.parametrize("text", [
    "a bronze statue of a nude discus thrower", "a topless convertible on a coast road",
    "eine Statue eines nackten Gottes im Park"])
def test_nudity_in_a_work_of_art_or_on_a_car_is_benign(text):
    assert not detect(text).categories


def test_a_statue_far_before_the_nudity_word_clears_nothing():
    assert "sexual" in detect("a statue in the square where a nude woman dances").categories


def test_a_material_word_clears_only_right_next_to_the_nudity_word():
    assert not detect("a bronze nude in a garden").categories
    assert "sexual" in detect("a bronze-skinned nude woman on a beach").categories
