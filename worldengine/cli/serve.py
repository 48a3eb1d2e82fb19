"""`python -m worldengine serve`: live worlds for many players on Ray Serve (needs the [serve] extra).

Starts a local Ray instance (or joins one with --address), deploys `worldengine.serve.ray_app` and
serves until Ctrl-C. --write-config writes the same deployment as a Ray Serve config file for a
cluster (`serve deploy FILE`) and exits.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields

from worldengine.errors import WaypointError
from worldengine.options import Compile, DType, Preview, Quant
from worldengine.serve.config import ServeConfig

DEFAULT_PORT = 8000


def build_parser() -> argparse.ArgumentParser:
    defaults = ServeConfig()
    parser = argparse.ArgumentParser(prog="python -m worldengine serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=defaults.model,
                        help="model folder or Hugging Face repo id; 'default' = Overworld/Waypoint-1.5-1B-360P, "
                             "else the offline toy world, else a tiny random model")
    parser.add_argument("--max-sessions", type=int, default=defaults.max_sessions,
                        help="live players per replica; one more is answered 'full' (default: %(default)s)")
    parser.add_argument("--replicas", default=defaults.replicas,
                        help="engine replicas; auto = one per GPU of the Ray cluster, else 1 (default: %(default)s)")
    parser.add_argument("--min-replicas", type=int, default=defaults.min_replicas,
                        help="with --max-replicas above it: autoscale on open sessions between the two")
    parser.add_argument("--max-replicas", type=int, default=defaults.max_replicas)
    parser.add_argument("--target-sessions", type=float, default=defaults.target_sessions,
                        help="autoscaling target of sessions per replica (default: 3/4 of --max-sessions)")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu or cuda (each replica sees its own GPU)")
    parser.add_argument("--dtype", default=defaults.dtype, choices=DType.values())
    parser.add_argument("--quant", default=defaults.quant, choices=Quant.values())
    parser.add_argument("--compile", default=defaults.compile, choices=Compile.values())
    parser.add_argument("--preview", default=defaults.preview, choices=Preview.values(),
                        help="what players see: auto = decoded frames on GPUs, the latent preview on CPU")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="noise seed of every session")
    parser.add_argument("--seed-image", default=defaults.seed_image,
                        help="start image; default: the model folder's seed.png, else a synthetic horizon")
    parser.add_argument("--models-dir", default=defaults.models_dir, help="where repo ids are downloaded")
    parser.add_argument("--num-cpus", type=float, default=defaults.num_cpus, help="Ray CPUs per replica")
    parser.add_argument("--num-gpus", default=defaults.num_gpus, help="Ray GPUs per replica (auto: 1 with GPUs)")
    parser.add_argument("--output-dir", default=defaults.output_dir, help="players' snapshots and clips")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (0.0.0.0 to serve a network)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--address", default=None,
                        help="Ray cluster to join (e.g. auto, ray://head:10001); default: start a local one")
    parser.add_argument("--write-config", metavar="FILE", default=None,
                        help="write this deployment as a Ray Serve config (serve deploy FILE) and exit")
    return parser


def config_from_args(args) -> ServeConfig:
    values = {f.name: getattr(args, f.name) for f in fields(ServeConfig) if hasattr(args, f.name)}
    return ServeConfig.from_dict(values)


def serve_config_file(config: ServeConfig, host: str, port: int) -> dict:
    """A Ray Serve config (`serve deploy` / `serve run`) for the same deployment."""
    args = {k: v for k, v in config.to_dict().items() if v != getattr(ServeConfig, k, None)}
    return {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port},
            "applications": [{"name": "waypoint", "route_prefix": "/",
                              "import_path": "worldengine.serve.ray_app:build_app", "args": args}]}


def require_ray():
    try:
        import ray
        from ray import serve
    except ImportError:
        raise WaypointError("serving needs Ray Serve: pip install -e \".[serve]\" (or pip install \"ray[serve]\")") \
            from None
    return ray, serve


def start(config: ServeConfig, host: str = "127.0.0.1", port: int = DEFAULT_PORT, address: str | None = None,
          num_cpus: int | None = None) -> str:
    """Start (or join) Ray, deploy the app and wait until it runs; returns its base URL. `num_cpus` caps a
    local Ray instance's CPUs."""
    ray, serve = require_ray()
    from worldengine.serve.ray_app import APP_NAME, build_app

    if not ray.is_initialized():
        local = {} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        ray.init(address=address, log_to_driver=False, **local)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(config.to_dict()), name=APP_NAME, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def stop() -> None:
    """Shut the Serve app and the Ray instance down (what Ctrl-C does)."""
    ray, serve = require_ray()
    if ray.is_initialized():
        serve.shutdown()
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = config_from_args(args)
        if args.write_config:
            import yaml
            with open(args.write_config, "w", encoding="utf-8") as handle:
                yaml.safe_dump(serve_config_file(config, args.host, args.port), handle, sort_keys=False)
            print(f"[worldengine] wrote {args.write_config}: run it with `serve deploy {args.write_config}`")
            return 0
        url = start(config, args.host, args.port, args.address)
    except WaypointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[worldengine] serving live worlds at {url.replace('http', 'ws')}/waypoint/live/<session id>/ws "
          f"({config.max_sessions} sessions per replica); Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("[worldengine] stopping", flush=True)
    finally:
        stop()
    return 0
