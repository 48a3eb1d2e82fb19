"""Headless chromium driven over the Chrome DevTools protocol (no browser download: Debian's `chromium`),
pointed at a ComfyUI host: what tests/test_browser.py and tools/make_thumbnails.py share.

`launch_chromium(profile)` starts the browser and yields its page's DevTools websocket URL; `DevTools`
is a minimal protocol client over aiohttp's websocket; `open_comfyui` loads ComfyUI's page and waits for
its frontend and this pack's node types; `queue_and_wait` queues the loaded graph from the page and waits
for the prompt's history entry (a failed prompt is an AssertionError with ComfyUI's status).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path


def chromium_binary() -> str | None:
    """$WAYPOINT_CHROMIUM, else chromium or chromium-browser on PATH, else None."""
    return os.environ.get("WAYPOINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


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


@contextlib.contextmanager
def launch_chromium(profile: Path, size: tuple[int, int] = (1600, 1000)):
    """Headless chromium with a DevTools port on loopback; yields the page's DevTools websocket URL."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    process = subprocess.Popen([binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                                "--disable-dev-shm-usage", "--no-first-run", "--remote-debugging-port=0",
                                "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
                                f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", "about:blank"],
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

    async def key(self, kind: str, key: str, code: str, vk: int, text: str | None = None, repeat=False,
                  modifiers: int = 0):
        params = {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk,
                  "autoRepeat": repeat, "modifiers": modifiers}
        if text:
            params["text"] = text
        await self.call("Input.dispatchKeyEvent", **params)

    async def mouse(self, kind: str, x: float, y: float, button="none", clicks=0):
        await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button=button, clickCount=clicks)

    async def click(self, x: float, y: float):
        await self.mouse("mouseMoved", x, y)
        await self.mouse("mousePressed", x, y, "left", 1)
        await self.mouse("mouseReleased", x, y, "left", 1)

    async def screenshot(self, path: Path, clip: dict | None = None, fmt: str = "png", quality: int = 80):
        params = {"format": fmt, **({"quality": quality} if fmt == "jpeg" else {})}
        if clip:
            params["clip"] = {**clip, "scale": clip.get("scale", 1)}
        shot = await self.call("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def skip_first_run_dialogs(url: str) -> None:
    for setting in ("Comfy.TutorialCompleted", "Comfy.Validation.Workflows"):
        body = b"true" if "Tutorial" in setting else b"false"
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/settings/{setting}", data=body, method="POST"),
                                   timeout=10).close()
        except OSError:
            pass   # older hosts without these settings


async def open_comfyui(tools: DevTools, url: str, node_type: str = "WaypointLivePlay") -> None:
    """Navigate to ComfyUI without first-run dialogs and wait for its frontend and `node_type`."""
    await asyncio.to_thread(skip_first_run_dialogs, url)
    await tools.call("Page.enable")
    await tools.call("Page.navigate", url=url + "/")
    await tools.until(f"!!(window.app && app.graph && window.LiteGraph && "
                      f"LiteGraph.registered_node_types.{node_type})", 90, "ComfyUI's frontend")


async def load_graph(tools: DevTools, workflow: dict) -> None:
    """Load a UI-format workflow and show it unzoomed from the top-left corner."""
    await tools.js(f"app.loadGraphData({json.dumps(workflow)}).then(() => true)")
    await tools.js("(() => { app.canvas.ds.offset = [0, 0]; app.canvas.ds.scale = 1; "
                   "app.graph.setDirtyCanvas(true, true); return true; })()")


async def queue_and_wait(tools: DevTools, url: str, timeout: float = 180) -> dict:
    """Queue the page's graph; wait for its /history entry; return it (AssertionError if it failed)."""
    before = set(http_json(f"{url}/history"))
    await tools.js("app.queuePrompt(0).then(() => true)")
    new = await asyncio.to_thread(wait_for, lambda: set(http_json(f"{url}/history")) - before, timeout,
                                  "the queued prompt in /history")
    entry = http_json(f"{url}/history")[next(iter(new))]
    status = entry.get("status", {})
    assert status.get("status_str", "success") == "success", json.dumps(status)[:3000]
    return entry
