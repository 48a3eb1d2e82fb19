"""The live-play widget's pure JS modules (web/live_input.js, web/live_socket.js) under node's test
runner; the widget itself is exercised in a real browser by test_browser.py. Skips without node."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_web_modules_with_node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install -y nodejs), so the JS unit tests cannot run")
    version = subprocess.run([node, "--version"], check=False, capture_output=True, text=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    if major < 20:
        pytest.skip(f"node {major} is too old for --experimental-default-type (needs 20+)")
    # The web files are ES modules without a package.json saying so: tell node.
    flags = ["--experimental-default-type=module"] if major < 22 else []
    result = subprocess.run([node, *flags, "--test", str(REPO / "tests" / "js" / "live_web.test.mjs")],
                            check=False, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 5" in result.stdout, result.stdout[-2000:]


# ---- the shipped workflows as a reader sees them in the editor (issue 16) -------------------------------
SLOT_H, TITLE_H = 20, 30   # LiteGraph's slot height and title bar height (px)
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


def node_box(node) -> tuple[float, float, float, float]:
    (x, y), (w, h) = node["pos"], node["size"]
    return x, y - TITLE_H, x + w, y + h


def link_points(source, slot_out: int, target, slot_in: int, samples: int = 64):
    """Points of the wire as LiteGraph draws it: a cubic spline from the output slot to the input slot,
    its control points a quarter of the distance out horizontally."""
    ax, ay = source["pos"][0] + source["size"][0], source["pos"][1] + (slot_out + 0.7) * SLOT_H
    bx, by = target["pos"][0], target["pos"][1] + (slot_in + 0.7) * SLOT_H
    d = 0.25 * ((bx - ax) ** 2 + (by - ay) ** 2) ** 0.5
    for i in range(samples + 1):
        t = i / samples
        u = 1 - t
        x = u ** 3 * ax + 3 * u * u * t * (ax + d) + 3 * u * t * t * (bx - d) + t ** 3 * bx
        y = u ** 3 * ay + 3 * u * u * t * ay + 3 * u * t * t * by + t ** 3 * by
        yield x, y


def wires_behind_nodes(workflow: dict) -> list[str]:
    nodes = {n["id"]: n for n in workflow["nodes"]}
    hidden = []
    for link_id, source_id, slot_out, target_id, slot_in, _ in workflow["links"]:
        points = list(link_points(nodes[source_id], slot_out, nodes[target_id], slot_in))
        for other in nodes.values():
            left, top, right, bottom = node_box(other)
            if other["id"] in (source_id, target_id):   # the wire starts on its edge: only a loop back counts
                left, right = left + 2, right - 2
            if any(left < x < right and top < y < bottom for x, y in points):
                hidden.append(f"link {link_id} ({source_id} -> {target_id}) runs behind node {other['id']}")
    return hidden


def test_wire_check_sees_a_wire_behind_a_node():
    nodes = [{"id": 1, "pos": [0, 0], "size": [100, 50]}, {"id": 2, "pos": [200, 0], "size": [100, 50]},
             {"id": 3, "pos": [500, 0], "size": [100, 50]}]
    assert wires_behind_nodes({"nodes": nodes, "links": [[1, 1, 0, 3, 0, "X"]]}) == \
        ["link 1 (1 -> 3) runs behind node 2"]
    assert wires_behind_nodes({"nodes": nodes, "links": [[1, 1, 0, 2, 0, "X"]]}) == []
    assert wires_behind_nodes({"nodes": nodes, "links": [[1, 2, 0, 1, 0, "X"]]}) == \
        ["link 1 (2 -> 1) runs behind node 1", "link 1 (2 -> 1) runs behind node 2"]   # a wire going back


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_shipped_workflow_is_readable(path):
    workflow = json.loads(path.read_text())
    assert not wires_behind_nodes(workflow), wires_behind_nodes(workflow)
    assert workflow.get("groups") and all(g["title"].strip() for g in workflow["groups"]), "no titled groups"
    explained = [n for n in workflow["nodes"] if n["type"] in ("Note", "MarkdownNote")] or workflow["groups"]
    assert explained, "neither a note nor a group says what the workflow does"
    values = [v for n in workflow["nodes"] for v in n.get("widgets_values") or []]
    assert 4095 not in values, "a magic 4095 frame index: use Decode Latent's last_frames"
    thumbnail = path.with_suffix(".jpg")
    assert thumbnail.is_file() and 10_000 < thumbnail.stat().st_size <= 160_000, thumbnail


def test_scripted_workflows_are_the_generated_ones():
    import workflow_builder
    for name, build in workflow_builder.WORKFLOWS.items():
        shipped = json.loads((REPO / "workflows" / f"{name}.json").read_text())
        assert shipped == build().to_json(), f"workflows/{name}.json is stale: run python tests/workflow_builder.py"
