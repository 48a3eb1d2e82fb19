"""Ray Serve request router for live sessions: a new socket goes to the replica with the fewest sessions.

Ray Serve's default router samples two replicas and takes the less busy one ("power of two choices"),
which over three or more replicas can pick two full ones while a third has room: a player would be
told "full" needlessly. Every open live socket is one ongoing request of its replica for its whole
life, so choosing among *all* replicas by ongoing requests (Ray's queue-length cache, probed when
stale) is choosing by session count; replicas at `max_ongoing_requests` are never chosen.

Once placed, a session never moves: its socket stays on that replica, which holds its KV cache.
"""
from __future__ import annotations

from ray.serve.request_router import FIFOMixin, RequestRouter


class LeastSessionsRouter(FIFOMixin, RequestRouter):
    """All available replicas as one rank: Ray's selection takes the one with the fewest ongoing requests."""

    async def choose_replicas(self, candidate_replicas, pending_request=None):
        return [list(candidate_replicas)] if candidate_replicas else []
