"""Live worlds on Ray Serve: one engine replica per device, the ComfyUI route's websocket protocol.

    WS   /waypoint/live/{session_id}/ws   live play (worldengine.live.protocol), served by one replica
    GET  /waypoint/serve/replica          the answering replica's load (sessions, max_sessions, refused)

The deployment is its own FastAPI ingress: Ray Serve's proxy hands each websocket straight to one
replica (chosen by `LeastSessionsRouter`: the fewest open sessions) and the socket stays there, so
a session's controls and frames never leave the replica holding its KV cache, and frames cross no
extra hop. Admission: `max_ongoing_requests` = max_sessions + 1, the one above capacity being the
socket that is answered "full" (`worldengine.serve.host`). Autoscaling uses Ray Serve's own policy on
ongoing requests, i.e. on open sessions.

Locally: `python -m worldengine serve`. On a cluster: `serve deploy` (or `serve run`) a config whose
application has `import_path: worldengine.serve.ray_app:build_app` and the ServeConfig fields as
`args:` (`python -m worldengine serve --write-config FILE` writes one). See docs/serving.md.
"""
# No `from __future__ import annotations`: FastAPI must see the WebSocket class itself on the
# handler (Ray Serve's ingress re-wraps the methods; a string annotation turns `websocket` into a
# query parameter and every connection is closed with 1008).
import ray
from fastapi import FastAPI, WebSocket
from ray import serve
from ray.serve.config import RequestRouterConfig

from worldengine.serve.config import AUTO, ServeConfig

APP_NAME = "waypoint"
DEPLOYMENT_NAME = "WaypointWorld"
ROUTER_CLASS = "worldengine.serve.router.LeastSessionsRouter"

api = FastAPI(title="Waypoint live worlds")


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class WorldServer:
    """One replica: one engine on its device (Ray gives it one GPU when num_gpus is 1) and its sessions."""

    def __init__(self, config: dict):
        from worldengine.serve.host import ReplicaHost
        context = serve.get_replica_context()
        self.host = ReplicaHost(ServeConfig.from_dict(config), name=context.replica_id.unique_id)

    @api.websocket("/waypoint/live/{session_id}/ws")
    async def live(self, websocket: WebSocket, session_id: str) -> None:
        await self.host.serve(websocket, session_id)

    @api.get("/waypoint/serve/replica")
    def replica(self) -> dict:
        return self.host.stats()

    def __del__(self):
        host = getattr(self, "host", None)
        if host is not None:   # replica shutdown: end the sessions (the stepping thread ends with the last)
            host.close_all()


def cluster_gpus() -> int:
    """GPUs of the connected Ray cluster (0 when Ray is not initialized here)."""
    return int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0


def deployment_options(config: ServeConfig) -> dict:
    """Ray Serve deployment options for `config`: replicas or autoscaling, resources, admission, router."""
    gpus = cluster_gpus()
    num_gpus = (1 if gpus else 0) if config.num_gpus == AUTO else float(config.num_gpus)
    options = {
        "max_ongoing_requests": config.max_sessions + 1,   # + the socket told "full"
        "ray_actor_options": {"num_cpus": config.num_cpus, "num_gpus": num_gpus},
        "graceful_shutdown_timeout_s": config.shutdown_timeout_s,
        "graceful_shutdown_wait_loop_s": min(2.0, config.shutdown_timeout_s),
        "request_router_config": RequestRouterConfig(request_router_class=ROUTER_CLASS),
    }
    if config.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": config.min_replicas, "max_replicas": config.max_replicas,
            "initial_replicas": max(1, config.min_replicas),
            "target_ongoing_requests": config.target_sessions or max(1.0, 0.75 * config.max_sessions),
            "upscale_delay_s": 5.0, "downscale_delay_s": 120.0,   # sessions last minutes: scale down slowly
        }
    else:
        options["num_replicas"] = int(config.replicas) if config.replicas != AUTO else max(1, gpus)
    return options


def build_app(args: "dict | None" = None):
    """The Serve application for a config file's `args:` (ServeConfig fields; unknown keys are an error)."""
    config = ServeConfig.from_dict(args)
    return WorldServer.options(**deployment_options(config)).bind(config.to_dict())
