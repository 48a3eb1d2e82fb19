"""Waypoint model configuration: every field of a `config.yaml`, its defaults, validation and
the values derived from it (token grid, head size, layer roles, clocks).

Defaults follow Overworld's world_engine 1.5 `MODEL_CONFIG_DEFAULTS`; fields without a default there
are required here too, except where the Waypoint-1 era engine had a fallback (`global_attn_offset`
→ 0 for model_type "waypoint-1").
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldengine.errors import WaypointError

MODEL_TYPES = ("waypoint-1", "waypoint-1.5")
NOISE_CONDITIONINGS = (None, "wan", "dit_air")
# Keys that appear in published configs but that no inference code reads.
INFORMATIONAL_KEYS = frozenset({"n_frames", "causal", "rope_impl", "conv_kw", "ctrl_cond_dropout",
                                "prompt_cond_dropout", "moe_mlp_ratio"})
# Upper bounds of the size fields: ~8x the largest published model (d_model 2560, 24 layers, 16x32
# tokens, windows 16/128), so a typo or a hostile file fails here, before anything is allocated.
MAX_SIZES = {"d_model": 16384, "n_layers": 512, "n_heads": 1024, "n_kv_heads": 1024, "mlp_ratio": 64,
             "channels": 1024, "height": 1024, "width": 1024, "tokens_per_frame": 65536, "local_window": 4096,
             "global_window": 65536, "global_attn_period": 1024, "global_pinned_dilation": 4096,
             "n_buttons": 1024, "base_fps": 1000, "temporal_compression": 64, "ctrl_conditioning_period": 1024,
             "prompt_conditioning_period": 1024, "prompt_embedding_dim": 16384, "moe_top_k": 1024,
             "moe_n_experts": 1024, "n_frames": 1 << 24}
MAX_PATCH, MAX_SIGMAS, MAX_ROPE_THETA = 64, 1024, 1e12
MAX_KV_ELEMENTS = 1 << 33   # K+V cache of one session (~16 GiB in bf16); the largest model needs ~0.4G
_INT_FIELDS = (*(name for name in MAX_SIZES if name != "n_frames"), "global_attn_offset")
_BOOL_FIELDS = ("value_residual", "gated_attn", "taehv_ae", "auto_aspect_ratio", "moe")


@dataclass(frozen=True)
class WaypointConfig:
    """One Waypoint DiT configuration. `height`/`width` are the token grid after patchify."""

    d_model: int
    n_layers: int
    n_heads: int
    mlp_ratio: int
    channels: int
    height: int
    width: int
    local_window: int
    global_window: int
    global_attn_period: int
    global_pinned_dilation: int
    n_buttons: int
    scheduler_sigmas: tuple[float, ...]
    base_fps: int
    global_attn_offset: int | None = None
    n_kv_heads: int | None = None          # None → n_heads
    tokens_per_frame: int | None = None    # None → height * width
    patch: tuple[int, int] = (1, 1)
    model_type: str = "waypoint-1"
    noise_conditioning: str | None = None
    ctrl_conditioning: Any = None
    ctrl_conditioning_period: int | None = None
    prompt_conditioning: Any = None
    prompt_conditioning_period: int | None = None
    prompt_embedding_dim: int | None = None
    prompt_encoder_uri: str = "google/umt5-xl"
    value_residual: bool = False
    gated_attn: bool = False
    rope_nyquist_frac: float = 0.8
    rope_theta: float = 10000.0
    inference_fps: float | None = None     # None → base_fps
    temporal_compression: int = 1
    ae_uri: str | None = None
    taehv_ae: bool = False
    auto_aspect_ratio: bool = True
    moe: bool = False
    moe_top_k: int | None = None
    moe_n_experts: int | None = None
    extras: dict = field(default_factory=dict, compare=False)  # informational keys, kept verbatim

    def __post_init__(self):
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        self._check_types()
        if self.n_kv_heads is None:
            fix("n_kv_heads", self.n_heads)
        if self.tokens_per_frame is None:
            fix("tokens_per_frame", self.height * self.width)
        if self.inference_fps is None:
            fix("inference_fps", self.base_fps)
        if self.global_attn_offset is None:
            if self.model_type == "waypoint-1.5":
                raise WaypointError("config field 'global_attn_offset' is required for waypoint-1.5")
            fix("global_attn_offset", 0)
        fix("patch", tuple(int(p) for p in self.patch))
        fix("scheduler_sigmas", tuple(float(s) for s in self.scheduler_sigmas))
        self._validate()

    # ---- derived values -------------------------------------------------------------------
    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def mlp_hidden(self) -> int:
        return self.d_model * self.mlp_ratio

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one latent frame."""
        return (self.channels, self.height * self.patch[0], self.width * self.patch[1])

    @property
    def ts_mult(self) -> int:
        """RoPE time steps per frame index: base_fps // (inference_fps / temporal_compression)."""
        return int(self.base_fps // (self.inference_fps / self.temporal_compression))

    @property
    def uses_taehv(self) -> bool:
        return bool(self.taehv_ae)

    @property
    def frames_per_latent(self) -> int:
        return self.temporal_compression if self.uses_taehv else 1

    @property
    def ties_cond_proj(self) -> bool:
        return self.noise_conditioning in ("wan", "dit_air")

    @property
    def has_prompt(self) -> bool:
        return self.prompt_conditioning is not None

    def is_global_layer(self, i: int) -> bool:
        period = self.global_attn_period
        return (i - (self.global_attn_offset % period)) % period == 0

    def has_ctrl_fusion(self, i: int) -> bool:
        period = self.ctrl_conditioning_period
        return self.ctrl_conditioning is not None and period is not None and i % period == 0

    def has_cross_attn(self, i: int) -> bool:
        return self.has_prompt and i % self.prompt_conditioning_period == 0

    def ring(self, i: int) -> tuple[int, int]:
        """(dilation, number of ring buckets) of layer i's KV cache."""
        if self.is_global_layer(i):
            return self.global_pinned_dilation, self.global_window // self.global_pinned_dilation
        return 1, self.local_window

    # ---- validation --------------------------------------------------------------------------
    def _check_types(self):
        """Types first (before any arithmetic on them): integers are ints, flags real booleans,
        numbers finite numbers, lists short; each error names the field."""
        def need(ok: bool, name: str, what: str):
            if not ok:
                raise WaypointError(f"invalid config: {name} must be {what}, got {getattr(self, name)!r:.80}")

        for name in _INT_FIELDS:
            value = getattr(self, name)
            need(value is None or _is_int(value), name, "an integer")
            need(value is None or abs(value) <= MAX_SIZES.get(name, 1024), name,
                 f"at most {MAX_SIZES.get(name, 1024)} in size")
        for name in _BOOL_FIELDS:
            need(isinstance(getattr(self, name), bool), name, "true or false")
        for name in ("rope_nyquist_frac", "rope_theta", "inference_fps"):
            value = getattr(self, name)
            need(value is None or _is_number(value), name, "a finite number")
        need(0 < self.rope_theta <= MAX_ROPE_THETA, "rope_theta", f"in (0, {MAX_ROPE_THETA:g}]")
        need(0 < self.rope_nyquist_frac <= 1, "rope_nyquist_frac", "in (0, 1]")
        need(self.inference_fps is None or 0 < self.inference_fps <= MAX_SIZES["base_fps"], "inference_fps",
             f"in (0, {MAX_SIZES['base_fps']}]")
        need(isinstance(self.patch, (list, tuple)) and len(self.patch) == 2
             and all(_is_int(p) and 0 < p <= MAX_PATCH for p in self.patch), "patch",
             f"two integers in [1, {MAX_PATCH}]")
        sigmas = self.scheduler_sigmas
        need(isinstance(sigmas, (list, tuple)) and 2 <= len(sigmas) <= MAX_SIGMAS
             and all(_is_number(x) for x in sigmas), "scheduler_sigmas",
             f"a list of 2 to {MAX_SIGMAS} finite numbers")
        for name in ("model_type", "prompt_encoder_uri"):
            need(isinstance(getattr(self, name), str), name, "a string")
        for name in ("ae_uri", "noise_conditioning", "ctrl_conditioning", "prompt_conditioning"):
            need(isinstance(getattr(self, name), (str, bool, type(None))), name, "a string, a boolean or null")
        n_frames = self.extras.get("n_frames")
        if n_frames is not None and not (_is_int(n_frames) and 0 < n_frames <= MAX_SIZES["n_frames"]):
            raise WaypointError(f"invalid config: n_frames must be an integer in [1, {MAX_SIZES['n_frames']}], "
                                f"got {n_frames!r:.80}")

    def kv_cache_elements(self) -> int:
        """K and V elements of one session's cache: every layer's ring buckets x tokens x heads x head size."""
        buckets = sum(self.ring(i)[1] for i in range(self.n_layers))
        return 2 * buckets * self.tokens_per_frame * self.n_kv_heads * self.d_head

    def _validate(self):
        def need(ok: bool, message: str):
            if not ok:
                raise WaypointError(f"invalid config: {message}")

        need(self.model_type in MODEL_TYPES, f"model_type {self.model_type!r} is not one of {MODEL_TYPES}")
        need(self.noise_conditioning in NOISE_CONDITIONINGS,
             f"noise_conditioning {self.noise_conditioning!r} is not one of {NOISE_CONDITIONINGS}")
        for name in ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_ratio", "channels", "height",
                     "width", "local_window", "global_window", "global_attn_period",
                     "global_pinned_dilation", "n_buttons", "base_fps", "temporal_compression"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0,
                 f"{name} must be a positive integer, got {value!r}")
        need(self.d_model % self.n_heads == 0, f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        need(self.d_head % 2 == 0, f"head size {self.d_head} must be even for RoPE")
        need(self.n_heads % self.n_kv_heads == 0,
             f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        need(self.tokens_per_frame == self.height * self.width,
             f"tokens_per_frame {self.tokens_per_frame} != height*width {self.height * self.width}")
        need(len(self.patch) == 2 and min(self.patch) > 0, f"patch must be two positive ints, got {self.patch}")
        need(self.global_window % self.global_pinned_dilation == 0,
             f"global_window {self.global_window} is not a multiple of global_pinned_dilation "
             f"{self.global_pinned_dilation}")
        sigmas = self.scheduler_sigmas
        need(len(sigmas) >= 2 and sigmas[-1] == 0.0, f"scheduler_sigmas must end with 0.0, got {list(sigmas)}")
        need(all(a > b for a, b in zip(sigmas, sigmas[1:])), f"scheduler_sigmas must decrease, got {list(sigmas)}")
        need(all(math.isfinite(s) for s in sigmas), "scheduler_sigmas must be finite")
        latent_fps = self.inference_fps / self.temporal_compression
        need(latent_fps > 0 and self.base_fps % latent_fps == 0,
             f"base_fps {self.base_fps} is not a multiple of inference_fps/temporal_compression {latent_fps}")
        if self.ctrl_conditioning is not None:
            need(self.ctrl_conditioning_period is None or self.ctrl_conditioning_period > 0,
                 f"ctrl_conditioning_period must be positive, got {self.ctrl_conditioning_period}")
        if self.has_prompt:
            need(isinstance(self.prompt_conditioning_period, int) and self.prompt_conditioning_period > 0,
                 f"prompt_conditioning_period must be a positive integer, got {self.prompt_conditioning_period!r}")
            dim = self.prompt_embedding_dim
            need(isinstance(dim, int) and dim > 0 and dim % self.d_head == 0,
                 f"prompt_embedding_dim {dim!r} must be a positive multiple of the head size {self.d_head}")
        if self.moe:
            need(bool(self.moe_top_k) and bool(self.moe_n_experts), "moe needs moe_top_k and moe_n_experts")
            need(0 < self.moe_top_k <= self.moe_n_experts,
                 f"moe_top_k {self.moe_top_k} must be in [1, moe_n_experts {self.moe_n_experts}]")
        kv = self.kv_cache_elements()
        need(kv <= MAX_KV_ELEMENTS, f"the KV cache would hold {kv} elements (n_layers x local_window / "
             f"global_window rings x tokens_per_frame x n_kv_heads x head size), over the cap {MAX_KV_ELEMENTS}")

    def to_dict(self) -> dict:
        """Plain dict of every field (what `config.yaml` would hold), extras included."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extras"}
        out["patch"] = list(self.patch)
        out["scheduler_sigmas"] = list(self.scheduler_sigmas)
        out.update(self.extras)
        return out


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) < 2 ** 1000   # math.isfinite would overflow on a huge int
    return isinstance(value, float) and math.isfinite(value)


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(WaypointConfig)) - {"extras"}
REQUIRED_FIELDS = frozenset(f.name for f in dataclasses.fields(WaypointConfig)
                            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)


def config_from_dict(values: dict, source: str = "<dict>", **overrides) -> WaypointConfig:
    """Build a config from a mapping (a parsed config.yaml). Errors name the field and `source`."""
    merged = {**values, **overrides}
    unknown = sorted(map(str, set(merged) - FIELD_NAMES - INFORMATIONAL_KEYS))
    if unknown:
        raise WaypointError(f"{source}: unknown config field(s) {unknown}")
    missing = sorted(REQUIRED_FIELDS - set(merged))
    if missing:
        raise WaypointError(f"{source}: missing required config field(s) {missing}")
    known = {k: v for k, v in merged.items() if k in FIELD_NAMES}
    extras = {k: v for k, v in merged.items() if k in INFORMATIONAL_KEYS}
    try:
        return WaypointConfig(**known, extras=extras)
    except WaypointError as err:
        raise WaypointError(f"{source}: {err}") from None
    except (TypeError, ValueError) as err:
        raise WaypointError(f"{source}: {err}") from None


def load_config(path: str | Path, **overrides) -> WaypointConfig:
    """Read `config.yaml` (a file, or a folder holding one)."""
    import yaml

    path = Path(path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise WaypointError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, RecursionError) as err:
        raise WaypointError(f"{path}: not valid YAML ({str(err)[:200]})") from None
    if not isinstance(values, dict):
        raise WaypointError(f"{path}: expected a mapping of config fields, got {type(values).__name__}")
    return config_from_dict(values, source=str(path), **overrides)
