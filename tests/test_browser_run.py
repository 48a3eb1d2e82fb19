"""The shipped rollout template run as a newcomer runs it, in a real browser (issue 16): headless chromium
(tests/cdp.py) against the vendored 2024 ComfyUI, no Waypoint weights installed.

Checks that Load Waypoint's one-line note (it runs the offline toy world instead of the named model, and
names the files to install) is visible on the node (and as a toast on frontends that have toasts), and
that Step World's progress bar moves: the page gets progress events for the Step World node, and the
frontend's own progress state (what it draws as the bar on the running node) passes through values
between 0 and the step count during the run. Skips like tests/test_browser.py.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cdp import launch_chromium, load_graph, open_comfyui, queue_and_wait
from test_browser import host_for_browser, page

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "workflows" / "rollout_60_frames.json"

RECORDERS = """import("/scripts/api.js").then(({ api }) => {
  window.__progress = []; window.__drawnProgress = [];
  api.addEventListener("progress", (e) => window.__progress.push([String(e.detail.node), e.detail.value, e.detail.max]));
  window.__sampler = setInterval(() => {   // what app.js draws: a bar of progress.value / max on runningNodeId
    if (app.progress && app.runningNodeId != null)
      window.__drawnProgress.push([String(app.runningNodeId), app.progress.value, app.progress.max]);
  }, 5);
  return true; })"""

NOTE_STATE = """((id) => {
  const node = app.graph.getNodeById(id), element = node && node.waypointNote;
  if (!element) return { text: window.__waypointNotes?.[String(id)] ?? null, visible: false };
  const r = element.getBoundingClientRect();
  const hit = document.elementFromPoint(r.left + r.width / 2, r.top + Math.min(r.height / 2, 8));
  const toasts = [...document.querySelectorAll(".p-toast-message")].map((t) => t.textContent);
  return { text: element.textContent, visible: r.width > 50 && r.height > 10 && element.contains(hit),
           rect: [r.left, r.top, r.width, r.height], toastApi: !!app.extensionManager?.toast, toasts };
})"""


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A running ComfyUI with this pack and no Waypoint model: the shipped template falls back."""
    with host_for_browser(tmp_path_factory, {}) as host:
        yield host


async def run_template(page_ws: str, url: str) -> dict:
    workflow = json.loads(TEMPLATE.read_text())
    ids = {node["type"]: node["id"] for node in workflow["nodes"]}
    async with page(page_ws) as tools:
        await open_comfyui(tools, url)
        await load_graph(tools, workflow)
        await tools.js(RECORDERS)
        await queue_and_wait(tools, url)
        await asyncio.sleep(0.5)   # let the canvas place the note's DOM widget
        await tools.js("(() => { clearInterval(window.__sampler); return true; })()")
        return {"note": await tools.js(f"{NOTE_STATE}({ids['WaypointLoad']})"),
                "events": await tools.js("window.__progress"), "drawn": await tools.js("window.__drawnProgress"),
                "step": str(ids["WaypointStepWorld"])}


def test_template_shows_the_fallback_note_and_a_moving_progress_bar(comfy, tmp_path):
    with launch_chromium(tmp_path / "profile") as page_ws:
        seen = asyncio.run(asyncio.wait_for(run_template(page_ws, comfy.url), 300))
    note = seen["note"]
    assert note["text"] and "toy world" in note["text"], f"no fallback note on Load Waypoint: {note}"
    assert "config.yaml" in note["text"] and "Overworld--Waypoint-1.5-1B-360P" in note["text"], note["text"]
    assert note["visible"], f"the note is not visible on the node: {note}"
    if note["toastApi"]:   # frontends with toasts (1.x) also show it there
        assert any("toy world" in t for t in note["toasts"]), note["toasts"]

    steps = [value for node, value, _ in seen["events"] if node == seen["step"]]
    maxima = {top for node, _, top in seen["events"] if node == seen["step"]}
    assert maxima == {15} and [v for v in steps if v > 0] == list(range(1, 16)), \
        f"Step World's progress events: {seen['events']}"
    drawn = sorted({value for node, value, top in seen["drawn"] if node == seen["step"] and 0 < value < top})
    assert len(drawn) >= 2, f"the bar on Step World never moved mid-run (frontend state seen: {seen['drawn']})"
    print(f"\nfallback note at {note['rect']}; Step World's bar seen at {drawn} of 15")
