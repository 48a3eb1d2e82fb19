"""What one served world needs: the model, the replicas, the sessions per replica (one dataclass, defaults).

Read by `python -m worldengine serve` (flags), by `worldengine.serve.ray_app.build_app` (a Serve config
file's `args:`) and by each replica (`worldengine.serve.host.ReplicaHost`). Importing it needs no torch
and no Ray.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from worldengine.errors import WaypointError
from worldengine.options import Compile, DType, FitMode, Preview, Quant

AUTO = "auto"


@dataclass
class ServeConfig:
    """One served world. Sizes: `max_sessions` live players per replica (one replica per device); past
    that a replica answers "full". `replicas` is a fixed count ("auto": one per GPU of the Ray cluster,
    else 1) unless `max_replicas` > `min_replicas`, which autoscales on sessions (Ray Serve's ongoing
    requests: one open live socket is one ongoing request) towards `target_sessions` per replica."""

    model: str = "default"          # a model folder, a Hugging Face repo id, or the default fallback chain
    models_dir: str = ""            # where repo ids are downloaded ("" = ~/.cache/waypoint-models)
    device: str = AUTO              # auto: cuda when the replica sees a GPU, else cpu
    dtype: str = DType.AUTO.value
    quant: str = Quant.AUTO.value
    compile: str = Compile.AUTO.value
    seed: int = 0                   # noise seed of every session (its track + seed replays its frames)
    seed_image: str = ""            # "" = the model folder's seed.png, else a synthetic horizon
    fit: str = FitMode.CROP.value
    preview: str = Preview.AUTO.value
    max_sessions: int = 4           # live players per replica (the batch stepper's bucket of 4)
    replicas: str = AUTO
    min_replicas: int = 0           # autoscaling bounds; only used when max_replicas > min_replicas
    max_replicas: int = 0
    target_sessions: float = 0.0    # autoscaling target per replica (0 = 3/4 of max_sessions)
    num_cpus: float = 1.0           # Ray resources of one replica
    num_gpus: str = AUTO            # auto: 1 when the Ray cluster has GPUs, else 0
    output_dir: str = "output/waypoint-serve"   # players' snapshots and clips (per replica machine)
    shutdown_timeout_s: float = 5.0  # a stopping replica waits this long for open sessions

    def __post_init__(self):
        DType.parse(self.dtype), Quant.parse(self.quant), Compile.parse(self.compile)
        FitMode.parse(self.fit), Preview.parse(self.preview)
        if not isinstance(self.max_sessions, int) or not 1 <= self.max_sessions <= 64:
            raise WaypointError(f"max_sessions must be an integer in [1, 64], got {self.max_sessions!r}")
        if self.replicas != AUTO and not (str(self.replicas).isdigit() and int(self.replicas) >= 1):
            raise WaypointError(f"replicas must be 'auto' or an integer >= 1, got {self.replicas!r}")
        if self.autoscaling and self.min_replicas < 0:
            raise WaypointError(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.num_gpus != AUTO:
            try:
                float(self.num_gpus)
            except ValueError:
                raise WaypointError(f"num_gpus must be 'auto' or a number, got {self.num_gpus!r}") from None

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas > self.min_replicas

    @classmethod
    def from_dict(cls, values: dict | None) -> ServeConfig:
        """From a Serve config file's `args:` (or any dict); an unknown key is an error naming the known ones."""
        values = dict(values or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise WaypointError(f"unknown serve option(s) {unknown}; known: {sorted(known)}")
        out = {}
        for name, value in values.items():
            kind = type(known[name].default)
            try:
                out[name] = value if isinstance(value, kind) else kind(value)
            except (TypeError, ValueError):
                raise WaypointError(f"serve option {name} must be a {kind.__name__}, got {value!r}") from None
        return cls(**out)

    def to_dict(self) -> dict:
        return asdict(self)
