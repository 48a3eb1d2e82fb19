"""One world: its KV cache, frame counter and prompt. Pixels are not its business: a world's encoder
and decoder streams are a `worldengine.ae.WorldCodec`, owned by whoever turns frames into latents and back,
and saved beside the session's state when a snapshot file is written (`save_snapshot(path, codec)`).

The rollout protocol (the reference's): a seed latent costs one sigma-0 cache pass; a generated
frame costs one denoise pass per Euler step with the cache frozen, then a sigma-0 cache pass on the
clean latent with the same controls and frame index, which persists its K/V into the rings.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from worldengine.compile import mark_static_buffers
from worldengine.controls import Controls
from worldengine.errors import WaypointError
from worldengine.kv_cache import RingKVCache

SNAPSHOT_FORMAT = "waypoint-world-snapshot/1"


@dataclass
class WorldSnapshot:
    """A deep copy of a world's state: CPU tensors (KV rings and their written flags, prompt_emb [P_len, P],
    last_latent [C, H, W] float32) plus the frame counter and the model fingerprint."""

    fingerprint: str
    frame_index: int
    tensors: dict[str, torch.Tensor]
    extra: dict = field(default_factory=dict)   # JSON-able, e.g. decoder warm-up flags


class WorldSession:
    def __init__(self, engine):
        self.engine = engine
        self.cache = RingKVCache(engine.config, engine.dtype, engine.device)
        mark_static_buffers(engine, [*self.cache.buffers, *self.cache.mask_buffers.values()])
        self.frame_index = 0
        self.prompt_emb: torch.Tensor | None = None     # [P_len, P] as given
        self._prompt_normed: torch.Tensor | None = None
        self.last_latent: torch.Tensor | None = None     # [C, H, W] float32 CPU

    # ---- inputs -------------------------------------------------------------------------------
    def set_prompt(self, prompt_emb: torch.Tensor | None):
        """Waypoint-1: [P_len, P] prompt embedding (padding rows zero). Takes effect from the next pass."""
        config = self.engine.config
        if not config.has_prompt:
            if prompt_emb is None:
                return
            raise WaypointError(f"this {config.model_type} model is not prompt-conditioned")
        if prompt_emb is None:
            self.prompt_emb = self._prompt_normed = None
            return
        if prompt_emb.ndim == 3 and prompt_emb.shape[0] == 1:
            prompt_emb = prompt_emb[0]
        if prompt_emb.ndim != 2 or prompt_emb.shape[1] != config.prompt_embedding_dim or prompt_emb.shape[0] < 1:
            raise WaypointError(f"prompt embedding must be [P_len, {config.prompt_embedding_dim}], "
                                f"got {list(prompt_emb.shape)}")
        if not torch.isfinite(prompt_emb).all():
            raise WaypointError("prompt embedding holds NaN or infinite values")
        self.prompt_emb = prompt_emb.detach().to("cpu", torch.float32).clone()
        self._prompt_normed = self.engine.model.prompt_context(prompt_emb.to(self.engine.device))

    @property
    def prompt_context(self) -> torch.Tensor | None:
        """The prompt as the model attends to it ([P_len, d_model] on the device, compute dtype), or None."""
        return self._prompt_normed

    def _check_latent(self, latent: torch.Tensor, name: str) -> torch.Tensor:
        shape = tuple(self.engine.config.latent_shape)
        if latent.ndim == 4 and latent.shape[0] == 1:
            latent = latent[0]
        if tuple(latent.shape) != shape:
            raise WaypointError(f"{name} must have shape {list(shape)} (C, H, W), got {list(latent.shape)}")
        if not torch.isfinite(latent).all():
            raise WaypointError(f"{name} holds NaN or infinite values")
        # Always a fresh tensor made here (inside inference mode), like the denoise steps' own x: the
        # compiled forward then sees one kind of input and never recompiles for seeds.
        return latent.to(self.engine.device, self.engine.dtype, copy=True)

    def frame_noise(self, noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """The starting x of a generated frame: `noise` [C, H, W] checked, else one float32 draw of the
        latent shape from `generator` (the global RNG when None); returned on the device in the compute dtype."""
        if noise is None:
            noise = torch.randn(self.engine.config.latent_shape, generator=generator, dtype=torch.float32)
        return self._check_latent(noise, "noise")

    def frame_inputs(self, controls: Controls | None):
        """What every pass of this frame shares: (control embedding [1, d_model], RoPE cos, sin
        [T, d_head/2] float32, key masks), for the frame `frame_index` with `controls`. Checks the
        controls and the prompt; changes nothing but the masks prepared for this frame."""
        controls = controls or Controls()
        engine, config = self.engine, self.engine.config
        controls.check_buttons(config.n_buttons)
        if config.has_prompt and self._prompt_normed is None:
            raise WaypointError("this model is prompt-conditioned: set a prompt first (session.set_prompt)")
        vector = controls.to_vector(config.n_buttons, engine.dtype, engine.device)
        cos, sin = engine.rope.cos_sin(self.frame_index * config.ts_mult)
        masks = self.cache.prepare_masks(self.frame_index)
        return engine.model.control_embedding(vector), cos, sin, masks

    _frame_inputs = frame_inputs   # the older private name

    def end_frame(self, latent: torch.Tensor) -> torch.Tensor:
        """After a frame's cache pass wrote its K/V into the tails: commit them into the rings, advance the
        frame counter and keep `latent` (float32 CPU [C, H, W]) as the last one. Returns it."""
        self.cache.commit(self.frame_index)
        self.frame_index += 1
        self.last_latent = latent
        return latent

    def _run(self, x, sigma_index, inputs):
        ctrl, cos, sin, masks = inputs
        cond = self.engine.sigma_conditioning[sigma_index]
        return self.engine.forward(x, cond.block_mods, cond.out_mod, cos, sin, self.cache.buffers, masks,
                                   ctrl, self._prompt_normed)

    # ---- passes -------------------------------------------------------------------------------
    @torch.inference_mode()
    def append_latent(self, latent: torch.Tensor, controls: Controls | None = None):
        """Seed the world with a clean latent [C, H, W]: one cache pass, one frame index."""
        x = self._check_latent(latent, "seed latent")
        inputs = self.frame_inputs(controls)
        self._run(x, len(self.engine.sigmas) - 1, inputs)
        self.end_frame(x.float().cpu())

    def append_latents(self, latents: torch.Tensor, controls: Controls | None = None):
        """Seed with several clean latents [N, C, H, W] (e.g. a codec's encoding of seed frames)."""
        for latent in latents:
            self.append_latent(latent, controls)

    @torch.inference_mode()
    def step(self, controls: Controls | None = None, noise: torch.Tensor | None = None,
             generator: torch.Generator | None = None, trace: list | None = None,
             seed: int | None = None) -> torch.Tensor:
        """Generate the next latent frame [C, H, W] (float32, CPU) from noise and controls.

        noise: the starting x [C, H, W]; else drawn from `generator` (or a new one seeded with `seed`).
        trace: if a list is given, (x, velocity) of every Euler step is appended to it (float32 CPU).
        """
        engine = self.engine
        if seed is not None:
            generator = torch.Generator().manual_seed(seed)
        x = self.frame_noise(noise, generator)
        inputs = self.frame_inputs(controls)
        for index, step in enumerate(engine.sigma_steps):
            velocity = self._run(x, index, inputs)
            if trace is not None:
                trace.append((x.float().cpu(), velocity.float().cpu()))
            x = (x.float() + step.float() * velocity.float()).to(engine.dtype)
        self._run(x, len(engine.sigmas) - 1, inputs)   # cache pass: same controls, same frame index
        return self.end_frame(x.float().cpu())

    @torch.inference_mode()   # the buffers may be inference tensors (a session made inside a node)
    def reset(self):
        """Back to an empty world at frame 0 (the prompt is kept)."""
        self.cache.reset()
        self.frame_index = 0
        self.last_latent = None

    # ---- snapshots ----------------------------------------------------------------------------
    def snapshot(self) -> WorldSnapshot:
        tensors = self.cache.state_tensors()
        if self.prompt_emb is not None:
            tensors["prompt_emb"] = self.prompt_emb.clone()
        if self.last_latent is not None:
            tensors["last_latent"] = self.last_latent.clone()
        return WorldSnapshot(self.engine.fingerprint, self.frame_index, tensors)

    @torch.inference_mode()
    def restore(self, snapshot: WorldSnapshot, check_values: bool = False):
        """Load `snapshot` into this session; everything is checked first, so a refused snapshot leaves
        the session as it was (`check_values`: also that every float is finite, for snapshots from files)."""
        if snapshot.fingerprint != self.engine.fingerprint:
            raise WaypointError("this snapshot was taken on a different model (fingerprint "
                                f"{str(snapshot.fingerprint)[:64]} vs this engine's {self.engine.fingerprint})")
        _check_snapshot(snapshot, self.engine.config, check_values)
        self.cache.load_state_tensors(snapshot.tensors)
        self.frame_index = snapshot.frame_index
        prompt = snapshot.tensors.get("prompt_emb")
        if prompt is not None:
            self.set_prompt(prompt)
        latent = snapshot.tensors.get("last_latent")
        self.last_latent = None if latent is None else latent.clone()

    def save_snapshot(self, path: str | Path, codec=None):
        """Write this world to a safetensors file; with `codec` (a WorldCodec) its stream state too."""
        from safetensors.torch import save_file

        snap = self.snapshot()
        if codec is not None:
            stream_tensors, snap.extra["ae_stream"] = _split_state(codec.get_state())
            snap.tensors.update({f"ae.{k}": v for k, v in stream_tensors.items()})
        metadata = {"format": SNAPSHOT_FORMAT, "fingerprint": snap.fingerprint,
                    "frame_index": str(snap.frame_index), "extra": json.dumps(snap.extra)}
        save_file({k: v.contiguous() for k, v in snap.tensors.items()}, str(path), metadata=metadata)

    def load_snapshot(self, path: str | Path, codec=None):
        """Restore from a file written by save_snapshot; a saved stream state goes into `codec` (a
        WorldCodec of this model) when one is given. Returns whether the file held a stream state."""
        from safetensors import safe_open

        from worldengine.checkpoint import read_safetensors

        path = Path(path)
        tensors = read_safetensors(path)
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != SNAPSHOT_FORMAT:
            raise WaypointError(f"{path}: not a world snapshot (format {metadata.get('format')!r:.80})")
        fingerprint, frame_index, extra = _snapshot_metadata(metadata, path)
        snap = WorldSnapshot(fingerprint, frame_index, tensors, extra)
        try:
            self.restore(snap, check_values=True)   # a file: its numbers too
        except WaypointError as err:
            raise WaypointError(f"{path}: {err}") from None
        has_stream = "ae_stream" in snap.extra
        if codec is not None and has_stream:
            stream_tensors = {k[len("ae."):]: v.clone() for k, v in tensors.items() if k.startswith("ae.")}
            codec.load_state({**stream_tensors, **snap.extra["ae_stream"]})
        return has_stream


MAX_FRAME_INDEX = 2 ** 40   # ~2000 years of frames at 15 fps; far beyond any float32 RoPE time anyway
_SNAPSHOT_NAMES = re.compile(r"^(kv\.\d+|written\.\d+x\d+|prompt_emb|last_latent|ae\..+)$")


def _snapshot_metadata(metadata: dict, path) -> tuple:
    """(fingerprint, frame_index, extra) of a snapshot file's metadata; errors name the field."""
    for name in ("fingerprint", "frame_index"):
        if name not in metadata:
            raise WaypointError(f"{path}: snapshot metadata lacks the field {name!r}")
    text = metadata["frame_index"]
    if not (text.isascii() and text.isdigit() and len(text) <= 16):
        raise WaypointError(f"{path}: snapshot field 'frame_index' must be a non-negative integer, got {text!r:.40}")
    try:
        extra = json.loads(metadata.get("extra", "{}"))
    except (json.JSONDecodeError, RecursionError):
        raise WaypointError(f"{path}: snapshot field 'extra' is not valid JSON") from None
    return metadata["fingerprint"], int(text), extra


def _check_snapshot(snapshot: WorldSnapshot, config, values: bool = False) -> None:
    """Refuse a snapshot whose fields or tensors could not have come from save_snapshot: the frame
    index is an int in [0, 2**40], KV rings floats, written flags 1-D bools, prompt_emb and last_latent
    floats, extra a JSON object; with `values` (files) every float also finite. KV shapes are checked
    by the KV cache."""
    index = snapshot.frame_index
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_FRAME_INDEX:
        raise WaypointError(f"snapshot field 'frame_index' must be an integer in [0, 2**40], got {index!r:.40}")
    if not isinstance(snapshot.extra, dict):
        raise WaypointError(f"snapshot field 'extra' must be a JSON object, got {type(snapshot.extra).__name__}")
    for name, tensor in snapshot.tensors.items():
        if not isinstance(name, str) or not _SNAPSHOT_NAMES.match(name) or not isinstance(tensor, torch.Tensor):
            raise WaypointError(f"snapshot holds an unknown entry {str(name)[:80]!r}")
        if name.startswith("ae."):
            continue   # stream state: the codec checks it
        if name.startswith("written."):
            if tensor.dtype != torch.bool or tensor.ndim != 1:
                raise WaypointError(f"snapshot tensor {name!r} must be 1-D bool written-flags, "
                                    f"got {tensor.dtype} {list(tensor.shape)}")
            if int(tensor.sum()) > index:
                raise WaypointError(f"snapshot tensor {name!r} marks {int(tensor.sum())} buckets written "
                                    f"after only {index} frames")
            continue
        if not tensor.is_floating_point():
            raise WaypointError(f"snapshot tensor {name!r} has dtype {tensor.dtype}, expected a float")
        if (values or name == "prompt_emb") and not torch.isfinite(tensor).all():
            raise WaypointError(f"snapshot tensor {name!r} holds NaN or infinite values")
    latent = snapshot.tensors.get("last_latent")
    if latent is not None and tuple(latent.shape) != tuple(config.latent_shape):
        raise WaypointError(f"snapshot tensor 'last_latent' is {list(latent.shape)}, "
                            f"expected {list(config.latent_shape)}")
    prompt = snapshot.tensors.get("prompt_emb")
    if prompt is not None and (not config.has_prompt or prompt.ndim != 2
                               or prompt.shape[1] != config.prompt_embedding_dim):
        raise WaypointError(f"snapshot tensor 'prompt_emb' {list(prompt.shape)} does not fit this model")


def _split_state(state: dict) -> tuple[dict, dict]:
    """Separate tensors from JSON-able values in a stream state dict."""
    tensors = {k: v.detach().cpu().clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    return tensors, {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
