"""Live play inside ComfyUI: the Live Play node (`node`), which world each node plays (`bindings`),
and the aiohttp routes its widget talks to (`routes`, registered on ComfyUI's server when one runs)."""
from __future__ import annotations

import logging

from .node import WaypointLivePlay

_LOG = logging.getLogger(__name__)


def register_routes() -> bool:
    """Add the /waypoint/live routes to ComfyUI's server, if one is running in this process."""
    try:
        from server import PromptServer
    except ImportError:
        return False
    instance = getattr(PromptServer, "instance", None)
    if instance is None:
        return False
    from . import routes
    routes.add_routes(instance.routes)
    return True


try:
    register_routes()
except Exception:   # noqa: BLE001 - a route problem must not hide the pack's nodes
    _LOG.exception("Waypoint live play: could not register the /waypoint/live routes")

NODE_CLASS_MAPPINGS = {"WaypointLivePlay": WaypointLivePlay}
NODE_DISPLAY_NAME_MAPPINGS = {"WaypointLivePlay": "Live Play (Waypoint)"}
