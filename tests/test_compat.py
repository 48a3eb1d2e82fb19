"""Workflows saved by older versions of the pack still load: Load Waypoint's `compile` was a BOOLEAN
widget (true/false) before it became the auto/on/off combo, and quant had fewer choices.

ComfyUI checks a combo value against the list before any node code runs ("Value not in list"),
except for inputs the node validates itself (`VALIDATE_INPUTS`). The real host test queues a
shipped workflow with the old boolean in it; it skips where no ComfyUI host is installed.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes import NODE_CLASS_MAPPINGS, registry
from worldengine.options import Compile, Quant, parse_compile

REPO_ROOT = Path(__file__).resolve().parents[1]
LOAD = NODE_CLASS_MAPPINGS["WaypointLoad"]
# Every value the quant combo ever offered (nodes/registry.py before the options module).
OLD_QUANTS = ("none", "int8", "fp8")


def test_old_boolean_compile_values_validate_and_map_to_off_and_on():
    for old, new in ((False, Compile.OFF), (True, Compile.ON), ("false", Compile.OFF), ("true", Compile.ON)):
        assert LOAD.VALIDATE_INPUTS(compile=old, quant="auto") is True
        assert parse_compile(old) is new
    for quant in OLD_QUANTS:
        assert quant in Quant.values() and LOAD.VALIDATE_INPUTS(compile="auto", quant=quant) is True


def test_values_that_never_existed_are_refused_with_the_choices():
    message = LOAD.VALIDATE_INPUTS(compile="fast", quant="auto")
    assert isinstance(message, str) and "fast" in message and "auto, on, off" in message
    message = LOAD.VALIDATE_INPUTS(compile="auto", quant="int4")
    assert isinstance(message, str) and "int4" in message and "int8" in message


def test_old_compile_false_loads_the_same_engine_as_off(tiny_models_dir, monkeypatch):
    # The registry key holds the parsed choice, so an old `false` and a new "off" share one engine.
    monkeypatch.setenv("WAYPOINT_MODELS_DIR", str(tiny_models_dir / "waypoint"))
    registry.clear()
    try:
        old = LOAD().load("small-wp15", "cpu", "float32", "none", False)[0]
        new = LOAD().load("small-wp15", "cpu", "float32", "none", "off")[0]
        assert old is new and registry.load_count() >= 1
        assert old.options["compile"] is False and old.compile_status == "eager"
        assert [key.compile for key in registry.loaded_keys()] == ["off"]
    finally:
        registry.clear()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    from comfy_host import host_with_models
    server = host_with_models(tmp_path_factory, {"Overworld--Waypoint-1.5-1B-360P":
                                                 {"height": 2, "width": 4, "tokens_per_frame": 8}})
    with server:
        yield server


def _old_workflow(object_info, compile_value, quant="none") -> dict:
    """The shipped rollout as an older pack saved it: Load Waypoint's widgets end in quant, compile
    (a boolean), repo_id; one frame so the run is short."""
    from comfy_host import ui_to_api
    workflow = json.loads((REPO_ROOT / "workflows" / "rollout_60_frames.json").read_text())
    load = next(n for n in workflow["nodes"] if n["type"] == "WaypointLoad")
    load["widgets_values"][3:5] = [quant, compile_value]
    prompt = ui_to_api(workflow, object_info)
    step = next(k for k, v in prompt.items() if v["class_type"] == "WaypointStepWorld")
    prompt[step]["inputs"]["frames"] = 1
    return prompt


def test_real_host_runs_a_workflow_saved_with_the_old_boolean(comfy):
    object_info = comfy.get("/object_info")
    assert object_info["WaypointLoad"]["input"]["required"]["compile"][0] == Compile.values()
    result = comfy.run_prompt(_old_workflow(object_info, False))
    assert result["status"] == "success", result.get("error")
    assert len(comfy.output_images(result["outputs"])) == 4
    refused = comfy.run_prompt(_old_workflow(object_info, "fast"))
    assert refused["status"] == "rejected" and "auto, on, off" in json.dumps(refused["error"])
