"""A small seeded world for live-play tests (one place for the socket and hardening suites)."""
import torch

SMALL = {"height": 2, "width": 4, "tokens_per_frame": 8}   # a 2x4 latent: live steps take milliseconds


def small_live_world(tmp_path_factory):
    """A WAYPOINT_WORLD seeded from one random 36x64 image on a tiny Waypoint-1.5 model (float32, eager)."""
    from nodes.core import WaypointLoad, WaypointSeedFrame
    from worldengine.synthetic import write_tiny_checkpoint
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("live") / "m", model_type="waypoint-1.5", **SMALL)
    engine = WaypointLoad().load(str(folder), "cpu", "float32", "none", False)[0]
    image = torch.rand(1, 36, 64, 3, generator=torch.Generator().manual_seed(0))
    return WaypointSeedFrame().seed(engine, image, "crop")[0]


async def route_client():
    """An aiohttp test client serving the pack's live routes on loopback (started; close it when done)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from nodes.live import routes as live_routes
    routes = web.RouteTableDef()
    live_routes.add_routes(routes)
    app = web.Application()
    app.add_routes(routes)
    test_client = TestClient(TestServer(app, host="127.0.0.1"))
    await test_client.start_server()
    return test_client
