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
