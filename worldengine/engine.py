"""Engine (weights, shared) and sessions (one world each: KV cache + frame counter).

    engine = load_engine("models/waypoint/my-model", dtype=torch.bfloat16)
    world = engine.new_session()
    world.append_latent(seed_latent)          # or: world.append_latents(codec.encode(frames))
    latent = world.step(Controls.from_keys(["W"]), generator=torch.Generator().manual_seed(0))
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import weakref
from pathlib import Path

import torch

from worldengine.attn.choose import choose_attention
from worldengine.checkpoint import check_canonical, read_safetensors, remap_published_waypoint15, to_inference_layout
from worldengine.config import WaypointConfig, load_config
from worldengine.hub import resolve_model_folder
from worldengine.model import WaypointDiT
from worldengine.options import Compile, Quant, parse_compile, parse_quant, torch_device
from worldengine.rope import RopeTables
from worldengine.session import WorldSession

LOG = logging.getLogger("worldengine")

class WorldEngine:
    """Loaded weights plus everything precomputed from them; create worlds with `new_session`."""

    def __init__(self, config: WaypointConfig, model: WaypointDiT, folder: Path | None = None):
        self.config, self.model, self.folder = config, model, folder
        self.dtype = model.compute_dtype
        self.device = model.patchify.weight.device
        self.rope = RopeTables(config, round_to_bf16=self.dtype == torch.bfloat16, device=self.device)
        self.sigmas = torch.tensor(config.scheduler_sigmas, dtype=self.dtype)
        self.sigma_steps = self.sigmas.diff()
        self.sigma_conditioning = [model.conditioning(s.to(self.device)) for s in self.sigmas]
        self.fingerprint = model_fingerprint(config, model)
        self.forward = model.forward   # replaced by a compiled function when compiled
        self._autoencoder = None
        self.options = {}
        self._sessions = weakref.WeakSet()   # live sessions: their KV caches count and move with the engine

    def new_session(self) -> WorldSession:
        """A fresh world (frame 0, empty cache); its pixels go through `self.require_autoencoder().codec()`."""
        session = WorldSession(self)
        self._sessions.add(session)
        return session

    def memory_estimate(self) -> dict[str, int]:
        """Bytes held on the engine's device: weights, autoencoder, live sessions' KV, forward workspace
        and their total (`worldengine.memory.engine_memory`)."""
        from worldengine.memory import engine_memory
        return engine_memory(self)

    def to(self, device) -> "WorldEngine":
        """Move weights, autoencoder, tables and every live session's KV cache to `device`, in place
        (an offload and its way back; `worldengine.memory.move_engine`)."""
        from worldengine.memory import move_engine
        move_engine(self, device)
        return self

    def step_many(self, requests) -> list[torch.Tensor]:
        """One frame for each (session, controls, generator) of this engine, batched into one forward per
        pass: the latents [C, H, W] float32 CPU that `session.step(controls, generator=generator)` would
        give, in request order (`worldengine.batch`)."""
        from worldengine.batch import step_many
        return step_many(self, requests)

    def one_path(self):
        """Context manager: every frame this thread makes inside comes from one forward path (eager or
        compiled, the one in use on entry; the compiled one if it became ready before), so one node
        run never mixes paths mid-run (`BackgroundForward.one_path`). A no-op without a background compile."""
        hold = getattr(self.forward, "one_path", None)
        return hold() if hold is not None else contextlib.nullcontext()

    @property
    def compile_status(self) -> str:
        """Which forward runs: "eager", "eager, compiling…", "compiled", "eager (compile failed: …)"."""
        if self.forward == self.model.forward:   # bound methods compare equal, never identical
            return "eager"
        return getattr(self.forward, "status", "compiled")

    @property
    def autoencoder(self):
        """The model's autoencoder (loaded on first use), or None when its files are absent."""
        if self._autoencoder is None and self.folder is not None:
            from worldengine.ae import find_autoencoder_files, load_autoencoder  # deferred: images only
            if find_autoencoder_files(self.folder, self.config) is not None:
                self._autoencoder = load_autoencoder(self.folder, self.config, self.device)
        return self._autoencoder

    def require_autoencoder(self):
        """The autoencoder, or a WaypointError saying which files to put where."""
        if self.autoencoder is None:
            from worldengine.ae import load_autoencoder
            load_autoencoder(self.folder or Path("."), self.config, self.device)  # raises the message
        return self.autoencoder

    def describe(self) -> str:
        c = self.config
        return (f"{c.model_type} d_model={c.d_model} layers={c.n_layers} tokens/frame={c.tokens_per_frame} "
                f"latent={c.latent_shape} dtype={str(self.dtype).removeprefix('torch.')} device={self.device}")


def build_model(config: WaypointConfig, state: dict, device, dtype: torch.dtype) -> WaypointDiT:
    """Module from an inference-layout state dict; tensors are moved once, straight to their place."""
    with torch.device("meta"):
        model = WaypointDiT(config)
    placed = {}
    for key in list(state):  # pop as we go: a converted tensor never coexists with all the originals
        tensor = state.pop(key)
        keep_fp32 = key.startswith("denoise_step_emb.")  # the noise MLP runs in fp32 (bf16-valued weights)
        # Contiguous: a remapped weight can be a permuted view (the published 4-D unpatchify), and a
        # compiled package reads its weights with the strides it was built with (row-major).
        placed[key] = tensor.to(device=device, dtype=torch.float32 if keep_fp32 else dtype).contiguous()
    model.load_state_dict(placed, strict=True, assign=True)
    freq = torch.logspace(0, -1, 256, base=10000.0, device=device)
    if dtype != torch.float32:
        freq = freq.to(dtype).float()  # the reference rounds this fp32 table to the model dtype's values
    model.denoise_step_emb.freq = freq
    return model.eval().requires_grad_(False)


def load_engine(source: str | Path, models_dir: str | Path | None = None, device: str = "cpu",
                dtype: str | torch.dtype = torch.float32, quant: str | None = "auto",
                compile: str | bool = "auto") -> WorldEngine:
    """Load a Waypoint model from a folder (config.yaml + model.safetensors) or a Hugging Face repo id."""
    from worldengine.quant.dtype import resolve_dtype

    device = torch_device(device)
    folder = resolve_model_folder(source, models_dir)
    config = load_config(folder)
    dtype = resolve_dtype(dtype, device, config)   # auto on CPU: bfloat16 only where it measured faster
    weights = folder / "model.safetensors"
    raw = read_safetensors(weights, device=device, config=config)   # header checked before reading
    if config.model_type == "waypoint-1.5":
        state, origin = remap_published_waypoint15(raw, config)
        raw.clear()  # drop references to the pre-remap tensors (q/k/v, fusion halves) right away
    else:
        state, origin = raw, {}
    check_canonical(state, origin, config, str(weights))
    engine = WorldEngine(config, build_model(config, to_inference_layout(state, config), device, dtype), folder)
    apply_speed_options(engine, quant=quant, compile=compile)
    return engine


def apply_speed_options(engine: WorldEngine, quant: str | None = "auto", compile: str | bool = "auto",
                        background: bool = True):
    """Load-time speed options: INT8 linears and/or a compiled forward (docs/compile.md).

    auto (the default of both): on CUDA int8 + compile with CUDA graphs; on CPU int8 only for the layers
    measured faster than float here (`worldengine.quant.select`), compile only when that made some layer
    int8, and the compiled step used only once it measured faster than eager. Explicit choices win.
    background: compile in a worker thread while frames run eager (`BackgroundForward`); False compiles
    on the first call (the steady-state benchmarks). `engine.options` records what was applied.
    """
    quant, compile = parse_quant(quant), parse_compile(compile)
    cuda = torch.device(engine.device).type == "cuda"
    auto_quant = quant is Quant.AUTO
    quant = Quant.INT8 if auto_quant else quant
    if quant is Quant.FP8:
        from worldengine.quant.fp8 import require_fp8_device
        require_fp8_device(engine.device)
    # CPU: compile pays off with int8 layers (inductor fuses their quantize and epilogue work) and in
    # bfloat16 (fused casts and norms: 164 -> 119 ms per cpu-small frame on an AMX Xeon), not in plain
    # float32, and costs a core for a minute; so auto compiles CUDA, bfloat16 and (below) a float32
    # engine where the auto measurement chose int8; the compiled step is still used on CPU only once
    # it measures faster than eager.
    compiled = compile is Compile.ON or (compile is Compile.AUTO and (cuda or engine.dtype != torch.float32))
    layers = []
    if quant is not Quant.NONE:
        from worldengine.quant.int8 import DEFAULT_SKIP, quantize_linears
        # The noise MLP and modulation projections only ran at load (their outputs are cached per sigma).
        layers = quantize_linears(engine.model, skip=DEFAULT_SKIP + ("denoise_step_emb", "cond_proj"),
                                  mode=quant.value, rows_hint=engine.config.tokens_per_frame,
                                  only_if_faster=auto_quant and not cuda, compiled=compiled and not cuda)
    quant_text = "none (auto: int8 slower here)" if auto_quant and not layers else quant.value
    # Attention kernel by measurement only where linears went int8 (the float path stays bit-identical).
    attention = choose_attention(engine, quant is Quant.INT8) if layers else {}
    compiled = compiled or (compile is Compile.AUTO and auto_quant and bool(layers))
    if compiled and background:
        from worldengine.compile import BackgroundForward
        from worldengine.compile_cache import CompileCache
        engine.forward = BackgroundForward(engine, require_faster=compile is Compile.AUTO and not cuda,
                                           cache=CompileCache.for_engine(engine, quant_text, cuda))
    elif compiled:
        from worldengine.compile import compile_forward
        engine.forward = compile_forward(engine)
    engine.options = {"quant": quant_text, "compile": compiled, "int8_layers": len(layers) if quant is Quant.INT8 else 0}
    engine.options["attention"] = attention
    LOG.info("[worldengine] speed options: quant=%s compile=%s (asked: quant=%s compile=%s)", quant_text,
             engine.compile_status, "auto" if auto_quant else quant.value, compile.value)


def model_fingerprint(config: WaypointConfig, model: WaypointDiT) -> str:
    """Identifies a model (config + weight samples) so snapshots are never restored into another one."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        sample = tensor.detach().flatten()[:16].float().cpu()
        digest.update(name.encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:32]
