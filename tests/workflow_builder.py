"""Writes the example workflows in workflows/ (UI format, as the ComfyUI frontend saves them).

    python tests/workflow_builder.py        # rewrite rollout_60_frames.json, img2img_loop.json, live_play.json

Socket lists come from the pack's own node classes, so the files follow the nodes when they change;
the end-to-end test checks every shipped workflow against a running ComfyUI, tests/test_web.py that
they are the generated ones, that no wire runs behind a node and that each explains itself.
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
    "Note": ([], []),   # frontend-only: a text box for the reader
    "CheckpointLoaderSimple": ([], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPTextEncode": ([("clip", "CLIP"), ("text", "STRING")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([], [("LATENT", "LATENT")]),
    "KSampler": ([("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
}
# A checkpoint the image-model workflow names (ComfyUI's own default template uses it); not shipped.
SD_CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
NOTE_COLOR = {"color": "#432", "bgcolor": "#653"}
GROUP_TITLE_H, NODE_TITLE_H, MARGIN = 40, 30, 10
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
    """A UI-format workflow: nodes with positions, links, notes and groups (boxes with a title)."""

    def __init__(self, title: str):
        self.title, self.nodes, self.links, self.groups = title, [], [], []

    def note(self, node_id: int, pos, text: str, size=(340, 200)):
        self.add(node_id, "Note", pos, [text], size=size, title="Note")
        self.nodes[-1].update(NOTE_COLOR)

    def group(self, title: str, *node_ids: int, color="#3f789e"):
        """A group framing the given nodes (title bars included)."""
        boxes = [(n["pos"][0], n["pos"][1] - NODE_TITLE_H, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
                 for n in self.nodes if n["id"] in node_ids]
        left, top = min(b[0] for b in boxes) - MARGIN, min(b[1] for b in boxes) - GROUP_TITLE_H
        right, bottom = max(b[2] for b in boxes) + MARGIN, max(b[3] for b in boxes) + MARGIN
        self.groups.append({"title": title, "bounding": [left, top, right - left, bottom - top],
                            "color": color, "font_size": 20})

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
                "nodes": self.nodes, "links": self.links, "groups": self.groups, "config": {},
                "extra": {"title": self.title}, "version": 0.4}


def _load_model_and_seed_image(g: Graph) -> None:
    """Nodes 1 (Load Waypoint, every option auto) and 2 (LoadImage of ComfyUI's example.png), stacked on
    the left: how every scripted workflow starts."""
    g.add(1, "WaypointLoad", (40, 60), [MODEL, "auto", "auto", "auto", "auto", ""], size=(340, 200))
    g.add(2, "LoadImage", (40, 320), ["example.png", "image"], size=(340, 320))


def rollout_60_frames() -> Graph:
    """Seed image -> 15 latent steps (60 video frames on Waypoint-1.5) of scripted controls -> saved frames.
    Laid out left to right so no wire runs behind a node."""
    g = Graph("Waypoint: seed image -> 60-frame scripted rollout -> saved frames")
    _load_model_and_seed_image(g)
    g.note(9, (40, 700), "A scripted walk: 8 latent steps forward, then 7 turning right = 15 steps.\n\n"
           "Waypoint-1.5 decodes 4 frames per step: 60 frames at 60 fps (1 s) land in output/waypoint/. "
           "Without its weights Load Waypoint runs the offline toy world (1 frame per step: 15 frames) "
           "and says so on the node.\n\nSwap in any seed image; other aspect ratios follow Seed Frame's fit.")
    g.add(3, "WaypointSeedFrame", (420, 60), ["crop"], engine=(1, 0), image=(2, 0))
    g.add(4, "WaypointControllerInput", (420, 260), ["W", 0.0, 0.0, 0, 8, ""], size=(340, 260),
          title="Walk forward (8 latent frames)")
    g.add(5, "WaypointControllerInput", (800, 260), ["W", 0.2, 0.0, 0, 7, ""], size=(340, 260),
          title="Walk and turn right (7 latent frames)", controls=(4, 0))
    g.add(6, "WaypointStepWorld", (1180, 60), [0, 0, "fixed"], size=(320, 150), world=(3, 0), controls=(5, 0))
    g.add(7, "WaypointDecodeLatent", (1540, 60), [0], size=(320, 90), latents=(6, 1))
    g.add(8, "SaveImage", (1900, 60), ["waypoint/rollout"], size=(420, 420), images=(7, 0))
    g.group("1. Model and seed image", 1, 2, 9)
    g.group("2. Seed the world, script the controls", 3, 4, 5)
    g.group("3. Generate, decode, save", 6, 7, 8)
    return g


def img2img_loop() -> Graph:
    """Rollout -> its last frame through an ordinary image node -> injected back -> rollout again.
    The world line runs along one row; the image branch sits below it, so wires stay in the open."""
    g = Graph("Waypoint: rollout -> last frame through an image node -> injected back (img2img loop)")
    _load_model_and_seed_image(g)
    g.note(14, (40, 700), "1. Roll the world out 6 latent steps.\n2. Decode Latent with last_frames = 1 gives "
           "just its last frame; any image node edits it (here: sharpen).\n3. Seed Frame with a world input "
           "injects the edited frame into that world (the input world itself is unchanged).\n4. Roll on 6 more "
           "steps and save them: 24 frames on Waypoint-1.5 (4 per step), 6 on the offline toy world.")
    g.add(3, "WaypointSeedFrame", (420, 320), ["crop"], engine=(1, 0), image=(2, 0))
    g.add(4, "WaypointControllerInput", (420, 520), ["W", 0.1, 0.0, 0, 6, ""], size=(340, 260),
          title="Walk, turning slightly")
    g.add(5, "WaypointStepWorld", (800, 320), [6, 1, "fixed"], size=(320, 150), world=(3, 0), controls=(4, 0))
    g.add(6, "WaypointDecodeLatent", (1160, 560), [1], size=(320, 90), title="Decode the last frame",
          latents=(5, 1))
    g.add(7, "ImageSharpen", (1520, 560), [1, 1.0, 0.5], size=(320, 130), title="Any image node (img2img)",
          image=(6, 0))
    g.add(8, "WaypointSeedFrame", (1900, 320), ["crop"], size=(320, 130), title="Inject back into the world",
          engine=(1, 0), image=(7, 0), world=(5, 0))
    g.add(9, "WaypointControllerInput", (1900, 520), ["W", 0.1, 0.0, 0, 6, ""], size=(340, 260),
          title="Keep walking")
    g.add(10, "WaypointStepWorld", (2280, 320), [6, 2, "fixed"], size=(320, 150), world=(8, 0), controls=(9, 0))
    g.add(11, "WaypointDecodeLatent", (2640, 320), [0], size=(320, 90), latents=(10, 1))
    g.add(12, "SaveImage", (3000, 320), ["waypoint/img2img_loop"], size=(380, 380), images=(11, 0))
    g.group("Model and seed image", 1, 2, 14)
    g.group("1. First rollout", 3, 4, 5)
    g.group("2. Last frame through an image node", 6, 7, color="#8a6d3b")
    g.group("3. Inject it back and roll on", 8, 9, 10, 11, 12)
    return g


def live_play() -> Graph:
    """Seed image -> Live Play (drive the world inside the node) -> Step World replays what was played ->
    saved frames. The widget sits below the world line, so the seed world's wire to Step World passes
    above it. Node ids 4 (Live Play) and 5 (Step World) are what tests/test_browser.py drives."""
    g = Graph("Waypoint: live play inside ComfyUI -> replay what you played -> saved frames")
    _load_model_and_seed_image(g)
    g.note(8, (40, 700), "1. Queue once: the Live Play node gets the seed world.\n2. Click its picture and press "
           "Play: W A S D + mouse drive the world, Esc releases keyboard and mouse.\n3. Queue again: Step World "
           "replays exactly what you played and the frames are saved.\n\nAny Waypoint-1.5 model; without its "
           "weights Load Waypoint runs the offline toy world and says so on the node.")
    g.add(3, "WaypointSeedFrame", (420, 60), ["crop"], size=(300, 100), engine=(1, 0), image=(2, 0))
    g.add(4, "WaypointLivePlay", (760, 260), [0, "fixed", "auto", "off"], size=(560, 500), world=(3, 0))
    g.add(5, "WaypointStepWorld", (1360, 60), [0, -1, "fixed"], size=(320, 150),
          title="Step World (replays what you played)", world=(3, 0), controls=(4, 0))
    g.add(6, "WaypointDecodeLatent", (1720, 60), [0], size=(320, 90), latents=(5, 1))
    g.add(7, "SaveImage", (2080, 60), ["waypoint/live_play"], size=(400, 420), images=(6, 0))
    g.group("1. Queue once", 1, 2, 8, 3)
    g.group("2. Click, Play, drive (Esc releases)", 4, color="#8a6d3b")
    g.group("3. Queue again: the replay is saved", 5, 6, 7)
    return g


def sanitize_to_seed_image() -> Graph:
    """Sanitize Prompt -> an ordinary text-to-image model (CLIPTextEncode -> KSampler -> VAE Decode) ->
    its picture seeds a Waypoint-1.5 world -> Step World -> Decode -> Save. The prompt line runs along
    the top row, the world line below it, so no wire runs behind a node."""
    g = Graph("Waypoint: sanitized prompt -> image model -> seed frame -> world rollout")
    g.add(2, "CheckpointLoaderSimple", (40, 60), [SD_CHECKPOINT], size=(360, 100))
    g.add(1, "WaypointSanitizePrompt", (40, 240), ["a knight on a castle wall at dawn, misty valley below",
                                                   "standard", True, "", "default"], size=(360, 260))
    g.note(13, (40, 560), "1. Sanitize Prompt rewrites the unsafe part of a prompt and keeps the scene.\n2. Its "
           "text drives an ordinary image model (any SD checkpoint in models/checkpoints: pick it in Load "
           "Checkpoint) at 16:9.\n3. That picture seeds a Waypoint-1.5 world: 15 latent steps walking "
           "forward, decoded and saved.\n\nTo check the picture too, put Safety Check (Waypoint) between VAE "
           "Decode and Seed Frame (needs the optional [safety] extra).", size=(360, 260))
    g.add(3, "CLIPTextEncode", (520, 340), [""], size=(320, 100), title="Prompt (sanitized)", clip=(2, 1),
          text=(1, 0))
    g.add(4, "CLIPTextEncode", (520, 500), ["blurry, text, watermark"], size=(320, 120),
          title="Negative prompt", clip=(2, 1))
    g.add(5, "EmptyLatentImage", (520, 680), [1024, 576, 1], size=(320, 130))
    g.add(6, "KSampler", (880, 260), [0, "fixed", 20, 7.0, "euler", "normal", 1.0], size=(320, 270),
          model=(2, 0), positive=(3, 0), negative=(4, 0), latent_image=(5, 0))
    g.add(7, "VAEDecode", (1240, 60), [], size=(240, 70), samples=(6, 0), vae=(2, 2))
    g.add(8, "WaypointLoad", (1640, 300), [MODEL, "auto", "auto", "auto", "auto", ""], size=(340, 200))
    g.add(9, "WaypointSeedFrame", (2040, 60), ["crop"], size=(300, 100), engine=(8, 0), image=(7, 0))
    g.add(10, "WaypointControllerInput", (2040, 300), ["W", 0.0, 0.0, 0, 15, ""], size=(340, 260),
          title="Walk forward (15 latent frames)")
    g.add(11, "WaypointStepWorld", (2420, 60), [0, 0, "fixed"], size=(320, 150), world=(9, 0), controls=(10, 0))
    g.add(12, "WaypointDecodeLatent", (2780, 60), [0], size=(320, 90), latents=(11, 1))
    g.add(14, "SaveImage", (3140, 60), ["waypoint/sanitized_seed"], size=(420, 420), images=(12, 0))
    clip_text = next(n for n in g.nodes if n["id"] == 3)
    text_input = next(i for i in clip_text["inputs"] if i["name"] == "text")
    text_input["widget"] = {"name": "text"}   # the frontend's widget turned into an input socket
    g.group("1. Checkpoint and prompt (sanitized)", 2, 1, 13)
    g.group("2. An ordinary image model draws the seed", 3, 4, 5, 6, 7, color="#8a6d3b")
    g.group("3. The picture seeds a Waypoint world", 8, 9, 10, 11, 12, 14)
    return g


WORKFLOWS = {"rollout_60_frames": rollout_60_frames, "img2img_loop": img2img_loop, "live_play": live_play,
             "sanitize_to_seed_image": sanitize_to_seed_image}


def main() -> None:
    for name, build in WORKFLOWS.items():
        path = REPO_ROOT / "workflows" / f"{name}.json"
        path.write_text(json.dumps(build().to_json(), indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
