"""Writes the example workflows in workflows/ (UI format, as the ComfyUI frontend saves them).

    python tests/workflow_builder.py        # rewrite workflows/rollout_60_frames.json, img2img_loop.json

Socket lists come from the pack's own node classes, so the files follow the nodes when they change;
the end-to-end test checks every shipped workflow against a running ComfyUI. (live_play.json is
written by the live-play part of the pack.)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = "Overworld/Waypoint-1.5-1B-360P"
# Sockets of the ComfyUI core nodes the examples use: (inputs, outputs) as (name, type) lists.
CORE_SOCKETS = {
    "LoadImage": ([], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "SaveImage": ([("images", "IMAGE")], []),
    "PreviewImage": ([("images", "IMAGE")], []),
    "ImageFromBatch": ([("image", "IMAGE")], [("IMAGE", "IMAGE")]),
    "ImageSharpen": ([("image", "IMAGE")], [("IMAGE", "IMAGE")]),
}
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def sockets(node_type: str):
    if node_type in CORE_SOCKETS:
        return CORE_SOCKETS[node_type]
    sys.path.insert(0, str(REPO_ROOT))
    from nodes import NODE_CLASS_MAPPINGS
    cls = NODE_CLASS_MAPPINGS[node_type]
    spec = cls.INPUT_TYPES()
    inputs = [(name, kind) for group in ("required", "optional") for name, (kind, *_) in spec.get(group, {}).items()
              if not isinstance(kind, list) and kind not in WIDGETS]
    names = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    return inputs, list(zip(names, cls.RETURN_TYPES))


class Graph:
    def __init__(self, title: str):
        self.title, self.nodes, self.links = title, [], []

    def add(self, node_id: int, node_type: str, pos, widgets, size=(320, 130), title=None, **inputs):
        """inputs: socket name -> (source node id, output slot)."""
        socket_in, socket_out = sockets(node_type)
        node = {"id": node_id, "type": node_type, "pos": list(pos), "size": list(size), "flags": {},
                "order": len(self.nodes), "mode": 0,
                "inputs": [], "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                                          for i, (n, t) in enumerate(socket_out)],
                "properties": {"Node name for S&R": node_type}, "widgets_values": list(widgets)}
        if title:
            node["title"] = title
        for name, kind in socket_in:
            link = None
            if name in inputs:
                source_id, slot = inputs[name]
                link = len(self.links) + 1
                source = next(n for n in self.nodes if n["id"] == source_id)
                source["outputs"][slot]["links"].append(link)
                self.links.append([link, source_id, slot, node_id, len(node["inputs"]), kind])
            node["inputs"].append({"name": name, "type": kind, "link": link})
        self.nodes.append(node)
        return node_id

    def to_json(self) -> dict:
        return {"last_node_id": max(n["id"] for n in self.nodes), "last_link_id": len(self.links),
                "nodes": self.nodes, "links": self.links, "groups": [], "config": {},
                "extra": {"title": self.title}, "version": 0.4}


def rollout_60_frames() -> Graph:
    """Seed image -> 15 latent steps (60 video frames on Waypoint-1.5) of scripted controls -> saved frames."""
    g = Graph("Waypoint: seed image -> 60-frame scripted rollout -> saved frames")
    g.add(1, "WaypointLoad", (40, 60), [MODEL, "auto", "auto", "none", False, ""], size=(340, 200))
    g.add(2, "LoadImage", (40, 320), ["example.png", "image"], size=(340, 320))
    g.add(3, "WaypointSeedFrame", (420, 60), ["crop"], engine=(1, 0), image=(2, 0))
    g.add(4, "WaypointControllerInput", (420, 260), ["W", 0.0, 0.0, 0, 8, ""], size=(340, 260),
          title="Walk forward (8 latent frames)")
    g.add(5, "WaypointControllerInput", (420, 560), ["W", 0.2, 0.0, 0, 7, ""], size=(340, 260),
          title="Walk and turn right (7 latent frames)", controls=(4, 0))
    g.add(6, "WaypointStepWorld", (800, 60), [0, 0, "fixed"], size=(320, 150), world=(3, 0), controls=(5, 0))
    g.add(7, "WaypointDecodeLatent", (800, 260), [], size=(320, 60), latents=(6, 1))
    g.add(8, "SaveImage", (1160, 60), ["waypoint/rollout"], size=(420, 420), images=(7, 0))
    return g


def img2img_loop() -> Graph:
    """Rollout -> its last frame through an ordinary image node -> injected back -> rollout again."""
    g = Graph("Waypoint: rollout -> last frame through an image node -> injected back (img2img loop)")
    g.add(1, "WaypointLoad", (40, 60), [MODEL, "auto", "auto", "none", False, ""], size=(340, 200))
    g.add(2, "LoadImage", (40, 320), ["example.png", "image"], size=(340, 320))
    g.add(3, "WaypointSeedFrame", (420, 60), ["crop"], engine=(1, 0), image=(2, 0))
    g.add(4, "WaypointControllerInput", (420, 260), ["W", 0.1, 0.0, 0, 6, ""], size=(340, 260))
    g.add(5, "WaypointStepWorld", (800, 60), [6, 1, "fixed"], size=(320, 150), world=(3, 0), controls=(4, 0))
    g.add(6, "WaypointDecodeLatent", (800, 260), [], size=(320, 60), latents=(5, 1))
    g.add(7, "ImageFromBatch", (800, 360), [4095, 1], size=(320, 110), title="Last frame", image=(6, 0))
    g.add(8, "ImageSharpen", (800, 510), [1, 1.0, 0.5], size=(320, 130), title="Any image node (img2img)",
          image=(7, 0))
    g.add(9, "WaypointSeedFrame", (1160, 60), ["crop"], size=(320, 130), title="Inject back into the world",
          engine=(1, 0), image=(8, 0), world=(5, 0))
    g.add(10, "WaypointStepWorld", (1160, 230), [6, 2, "fixed"], size=(320, 150), world=(9, 0), controls=(4, 0))
    g.add(11, "WaypointDecodeLatent", (1160, 420), [], size=(320, 60), latents=(10, 1))
    g.add(12, "PreviewImage", (1520, 60), [], size=(380, 380), title="Before injection", images=(6, 0))
    g.add(13, "SaveImage", (1520, 480), ["waypoint/img2img_loop"], size=(380, 380), images=(11, 0))
    return g


WORKFLOWS = {"rollout_60_frames": rollout_60_frames, "img2img_loop": img2img_loop}


def main() -> None:
    for name, build in WORKFLOWS.items():
        path = REPO_ROOT / "workflows" / f"{name}.json"
        path.write_text(json.dumps(build().to_json(), indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
