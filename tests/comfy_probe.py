"""Test-only custom node module that comfy_host.py installs beside the pack in the test server's
custom_nodes/ (never imported by pytest itself): a route listing ComfyUI's loaded models
(`comfy.model_management.current_loaded_models`, which lives in the server process) and a node that
loads another model (a real ModelPatcher) and then frees memory for it, as a big image model would."""

import torch
import comfy.model_management as mm
import comfy.model_patcher
from aiohttp import web
from server import PromptServer

EVENTS = []


def loaded_models():
    out = []
    for entry in mm.current_loaded_models:
        patcher = entry.model
        out.append({"name": type(patcher.model).__name__, "size": int(entry.model_memory()),
                    "waypoint": hasattr(patcher, "engine"), "device": str(getattr(patcher, "current_device", "")),
                    "loads": getattr(patcher, "loads", None), "unloads": getattr(patcher, "unloads", None)})
    return out


@PromptServer.instance.routes.get("/waypoint_test/loaded_models")
async def _loaded(request):
    return web.json_response({"models": loaded_models(), "events": EVENTS})


class WaypointTestOtherModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"
    CATEGORY = "testing"

    def run(self, image):
        before = any(m["waypoint"] for m in loaded_models())
        patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(8, 8), mm.get_torch_device(), torch.device("cpu"))
        mm.load_models_gpu([patcher])
        mine = [e for e in mm.current_loaded_models if e.model is patcher]
        mm.free_memory(1e30, mm.get_torch_device(), keep_loaded=mine)   # as if it needed the whole card
        EVENTS.append({"engine_before": before, "engine_after": any(m["waypoint"] for m in loaded_models())})
        return (image,)


NODE_CLASS_MAPPINGS = {"WaypointTestOtherModel": WaypointTestOtherModel}
