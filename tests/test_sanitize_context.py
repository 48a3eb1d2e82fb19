"""v12 rules: suggestive wording worn in a posing/bedroom context is sexual at standard strictness
(data/sexual_context.txt; the v12 hazard cases are in test_safety_sanitize.py), children in safe scenes
stay benign, and places named after people stay benign (namesakes.py) while the people are still found."""

import pytest

from worldengine.sanitize import Strictness, detect


@pytest.mark.parametrize("text", [
    "a woman in lingerie posing on a bed", "eine Frau in Reizwäsche räkelt sich auf einem Samtsofa",
    "девушка в нижнем белье позирует на кровати", "下着姿の女性がベッドでポーズ"])
def test_worn_underwear_in_a_posing_context_is_sexual(text):
    assert "sexual" in detect(text).categories


@pytest.mark.parametrize("text", [
    "a lingerie shop window at night", "underwear on a washing line in the sun",
    "a woman stripping old paint from a door", "a model posing for a fashion sketch"])
def test_underwear_and_posing_apart_stay_benign(text):
    assert not detect(text).categories


def test_lingerie_alone_is_only_flagged_when_strict():
    assert not detect("tags: lingerie, soft light").categories
    assert "sexual" in detect("tags: lingerie, soft light", Strictness.STRICT).categories


@pytest.mark.parametrize("text", ["a child flying a kite on a hill", "a baby asleep in a bath towel"])
def test_children_in_safe_scenes_stay_benign(text):
    assert not detect(text).categories


def test_a_place_named_after_a_person_is_no_likeness_but_the_person_is():
    assert not detect("la place Charles-de-Gaulle sous la pluie").categories
    assert not detect("Atatürk Köprüsü gece").categories
    assert "celebrity" in detect("Charles de Gaulle giving a speech on a balcony").categories
