"""The main Waypoint nodes: LoadWaypoint, SeedFrame, StepWorld, DecodeLatent (+ ControllerInput
from controls_node). Thin: each converts ComfyUI values to one engine call and back. No state on
node instances: engines live in `registry`, worlds travel as immutable `World` handles."""
from __future__ import annotations

import logging

from worldengine.options import Compile, Device, DType, FitMode, Quant, parse_compile

from . import codec, host, model_management, registry
from .controls_node import WaypointControllerInput
from .world import WAYPOINT_CONTROLS, WAYPOINT_ENGINE, WAYPOINT_LATENTS, WAYPOINT_WORLD, WorldLatents, new_world

CATEGORY = "Waypoint"
TOY_WORLD = "toyworld (offline demo)"   # the small world this pack ships (models/toyworld)


def _error(message: str):
    from worldengine.errors import WaypointError
    return WaypointError(message)


def model_choices() -> list[str]:
    """Known Hugging Face repo ids (downloaded into models/waypoint/<owner>--<name> on first use),
    then other local model folders. A downloaded repo is listed once, by its repo id, so shared
    workflows name models the same way on every machine."""
    from worldengine.hub import KNOWN_MODELS, local_folder_for
    known = list(KNOWN_MODELS)
    downloaded = {local_folder_for(repo_id, "").name for repo_id in known}
    return known + [name for name in host.local_model_names() if name not in downloaded] + [TOY_WORLD]


class WaypointLoad:
    DESCRIPTION = ("Load a Waypoint world model (kept in memory and shared by every node asking for the same "
                   "model and options; changing an option loads a new one and frees the old one).")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (model_choices(), {"tooltip": "A model folder under models/waypoint/ (config.yaml + "
                                                       "model.safetensors + autoencoder files), or a Hugging Face "
                                                       "repo id, downloaded into models/waypoint/ on first use."}),
                "device": (Device.values(), {"default": "auto", "tooltip": "auto = ComfyUI's device (CPU with --cpu)."}),
                "dtype": (DType.values(), {"default": "auto",
                                                 "tooltip": "auto = bfloat16 on GPU; on CPU bfloat16 where it measured "
                                                            "faster than float32 (AMX), else float32."}),
                "quant": (Quant.values(), {"default": "auto",
                                                 "tooltip": "auto (default) = int8 on GPU; on CPU int8 only where an "
                                                            "int8 kernel measured faster than float on this machine "
                                                            "(the toy world stays float: int8 was 2-3x slower per layer "
                                                            "there; the 1B layouts get int8). int8 = W8A8 "
                                                            "linears: faster, less memory, small drift. fp8 = e4m3 "
                                                            "W8A8, on GPUs with fp8 (Ada, Hopper)."}),
                "compile": (Compile.values(), {"default": "auto",
                                               "tooltip": "torch.compile the model. Frames start at once on the "
                                                          "plain path while it compiles in the background (on CPU "
                                                          "in a low-priority child process), then it switches "
                                                          "between two Step World runs (the live HUD says which "
                                                          "runs). auto (default) = on for GPU (with CUDA graphs); "
                                                          "on CPU only with int8 layers and only if the compiled "
                                                          "step measures faster. Old true/false = on/off."}),
            },
            "optional": {
                "repo_id": ("STRING", {"default": "", "tooltip": "Type any Hugging Face repo id (owner/name) or "
                                                                 "folder path here to override 'model'."}),
            },
        }

    RETURN_TYPES = (WAYPOINT_ENGINE,)
    RETURN_NAMES = ("engine",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def VALIDATE_INPUTS(cls, compile="auto", quant="auto"):
        """Replaces ComfyUI's combo check for these two inputs (the host skips its own "Value not in
        list" for every input named here): workflows saved before `compile` became a combo carry the
        old BOOLEAN widget's true/false, which `load` maps to on/off. Anything else must be a choice."""
        from worldengine.errors import WaypointError
        try:
            parse_compile(compile)
            Quant.parse(quant)
        except WaypointError as err:
            return str(err)
        return True

    def load(self, model, device="auto", dtype="auto", quant="auto", compile="auto", repo_id=""):
        from worldengine.errors import WaypointError
        from worldengine.hub import DEFAULT_MODEL, TOY_MODEL_DIR, missing_model_note

        source = (repo_id or "").strip() or model
        if source == TOY_WORLD:
            source = str(TOY_MODEL_DIR)
        device = host.default_device() if device == "auto" else device

        def engine_for(name):
            key = registry.EngineKey(model=host.resolve_local_model(name) or name, device=device, dtype=dtype,
                                     quant=quant, compile=parse_compile(compile).value)
            return registry.get_engine(key, models_dir=host.waypoint_model_dirs()[0])

        try:
            return (engine_for(source),)
        except WaypointError:
            # The default model is what shipped workflows name: without its weights (offline, not
            # installed) they run on the shipped toy world instead, and say so in one line, in the
            # console and in the browser (a note on this node and a toast, web/waypoint_notes.js).
            if source != DEFAULT_MODEL or not (TOY_MODEL_DIR / "model.safetensors").is_file():
                raise
            note = missing_model_note(DEFAULT_MODEL, host.waypoint_model_dirs()[0],
                                      f"the offline toy world ('{TOY_WORLD}')")
            logging.getLogger("waypoint").warning("Load Waypoint: %s", note)
            self._announce(note)
            return (engine_for(str(TOY_MODEL_DIR)),)

    @staticmethod
    def _announce(note: str) -> None:
        """Send `note` to the browser as a "waypoint.note" event for the running node (no-op outside ComfyUI)."""
        try:
            from server import PromptServer   # ComfyUI's; imported here, it is not ready at pack import
            server = PromptServer.instance
            server.send_sync("waypoint.note", {"node": server.last_node_id, "text": note, "level": "warn"})
        except (ImportError, AttributeError):
            return


def _seed_frames(engine, image):
    """IMAGE [B,H,W,3] -> frames [T,3,H,W] float 0..1, T a multiple of the frames per latent (a short
    batch is padded at the front with copies of its first frame: 1 image -> 4 equal frames)."""
    import torch
    from worldengine import images
    frames = images.to_frames(image)
    per_latent = codec.autoencoder(engine).frames_per_latent
    if frames.shape[0] % per_latent:
        pad = per_latent - frames.shape[0] % per_latent
        frames = torch.cat([frames[:1].expand(pad, -1, -1, -1), frames], 0)
    return frames


class WaypointSeedFrame:
    DESCRIPTION = ("Start a world from an image (or inject an image into an existing world): the image is "
                   "encoded and written into the world's memory; nothing is generated.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "engine": (WAYPOINT_ENGINE, {"tooltip": "The model, from Load Waypoint."}),
                "image": ("IMAGE", {"tooltip": "Seed image(s) from any image node. Waypoint-1.5 encodes 4 frames "
                                               "per latent: 1 image is repeated 4x, a batch of 4k images gives k "
                                               "seed latents (other counts are padded with the first image)."}),
                "fit": (FitMode.values(), {"default": "crop",
                                          "tooltip": "Images not 16:9: crop (centre), stretch, pad (black bars) or "
                                                     "error. 16:9 images are simply resized."}),
            },
            "optional": {
                "world": (WAYPOINT_WORLD, {"tooltip": "Inject into this world (mid-rollout) instead of starting a "
                                                      "new one. The input world itself is left unchanged."}),
            },
        }

    RETURN_TYPES = (WAYPOINT_WORLD, WAYPOINT_LATENTS)
    RETURN_NAMES = ("world", "seed_latents")
    FUNCTION = "seed"
    CATEGORY = CATEGORY

    def seed(self, engine, image, fit="crop", world=None):
        model_management.make_room(engine)
        base = world if world is not None else new_world(engine)
        if base.engine is not engine:
            raise _error("SeedFrame: the world comes from a different engine than the 'engine' input; "
                         "connect the engine the world was made with")
        if engine.config.has_prompt and not base.has_prompt:
            raise _error(f"SeedFrame: this {engine.config.model_type} model is text-conditioned; give it a prompt "
                         "first: Set World Prompt (engine input) -> world input of Seed Frame")
        frames = _seed_frames(engine, image)
        encoder = codec.copy_encoder(base.encoder) if base.encoder is not None else codec.new_encoder(engine)
        latents = codec.encode(encoder, frames, fit)
        with base.advance() as session:
            session.append_latents(latents)
            out = base.derive(new_latents=latents, encoder=encoder)
        return (out, WorldLatents(engine, out.decode_tail))


def _frame_controls(track, frames: int) -> list:
    """Per-frame controls for `frames` frames (0 = the track's length); a short track holds its last frame."""
    count = frames if frames > 0 else len(track)
    items = list(track.frames[:count])
    items += [track.frames[-1]] * (count - len(items))
    return items


class WaypointStepWorld:
    DESCRIPTION = ("Advance a world by N latent frames with the given controls (Waypoint-1.5: 4 video frames "
                   "each). Runs on every queue; the input world is never changed, so re-runs and branches "
                   "start from the same place.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "world": (WAYPOINT_WORLD, {"tooltip": "The world to continue (from Seed Frame or another Step World)."}),
                "controls": (WAYPOINT_CONTROLS, {"tooltip": "Controls per latent frame, from Controller Input. "
                                                            "A single control is held for every frame; a track "
                                                            "shorter than 'frames' holds its last control."}),
                "frames": ("INT", {"default": 15, "min": 0, "max": 100000,
                                   "tooltip": "Latent frames to generate; 0 = the length of the control track."}),
                "seed": ("INT", {"default": 0, "min": -1, "max": 0xFFFFFFFFFFFFFFFF,
                                 "tooltip": "Noise seed of this rollout (same seed + controls = same frames). "
                                            "-1 = the seed recorded in the control track."}),
            },
        }

    RETURN_TYPES = (WAYPOINT_WORLD, WAYPOINT_LATENTS)
    RETURN_NAMES = ("world", "latents")
    FUNCTION = "step"
    CATEGORY = CATEGORY

    @classmethod
    def IS_CHANGED(cls, **_):
        return float("nan")   # never equal to itself: run on every queue

    def step(self, world, controls, frames=15, seed=0):
        import torch
        model_management.make_room(world.engine)
        per_frame = _frame_controls(controls, frames)
        if not per_frame:
            raise _error("StepWorld: nothing to generate (frames is 0 and the control track is empty)")
        generator = torch.Generator().manual_seed(controls.seed if seed == -1 else seed)
        progress = host.Progress(len(per_frame))
        latents = []
        # One path for the whole run: a background compile finishing mid-run switches the next run.
        with world.advance() as session, world.engine.one_path():
            for frame_controls in per_frame:
                host.check_interrupt()
                latents.append(session.step(frame_controls, generator=generator))
                progress.update(1)
            out = world.derive(new_latents=torch.stack(latents))
        return (out, WorldLatents(world.engine, out.decode_tail))


class WaypointDecodeLatent:
    DESCRIPTION = ("Decode world latents into an image batch (Waypoint-1.5: 4 frames per latent) with the "
                   "world's streaming decoder, ready for Save Image, video nodes, upscalers or img2img.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latents": (WAYPOINT_LATENTS, {"tooltip": "Latents from Step World or Seed Frame."})},
                "optional": {"last_frames": ("INT", {"default": 0, "min": 0, "max": 100000,
                                                     "tooltip": "0 = every decoded frame; N = only the last N "
                                                                "(1 = the last frame, e.g. to edit and inject "
                                                                "back with Seed Frame)."})}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY

    def decode(self, latents, last_frames=0):
        from worldengine import images
        if not isinstance(latents, WorldLatents):
            raise _error(f"DecodeLatent takes Waypoint latents, got {type(latents).__name__}")
        model_management.make_room(latents.engine)
        frames = latents.link.decode(latents.engine)
        if last_frames > 0:
            frames = frames[-last_frames:]   # the decoder still runs over the whole chain: its state is causal
        return (images.to_comfy(frames),)


NODE_CLASS_MAPPINGS = {
    "WaypointLoad": WaypointLoad,
    "WaypointSeedFrame": WaypointSeedFrame,
    "WaypointControllerInput": WaypointControllerInput,
    "WaypointStepWorld": WaypointStepWorld,
    "WaypointDecodeLatent": WaypointDecodeLatent,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "WaypointLoad": "Load Waypoint",
    "WaypointSeedFrame": "Seed Frame (Waypoint)",
    "WaypointControllerInput": "Controller Input (Waypoint)",
    "WaypointStepWorld": "Step World (Waypoint)",
    "WaypointDecodeLatent": "Decode Latent (Waypoint)",
}
