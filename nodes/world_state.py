"""Bounded world memory: the states World handles denote, shared instead of copied.

A handle used to hold a full KV snapshot (192 MiB at 360P, 768 MiB at 720P in bf16, see
docs/memory.md). Now each handle points at a `StateNode`: its parent state plus the *ops* that lead
from the parent to it, as the node ran them on the session (clean latents with their controls, prompt
changes). A snapshot is taken only when another handle is about to change a session whose state a
live handle still needs, and only within the memory budget; any other state is rebuilt exactly by
replaying the ops from the nearest state that is at hand (the live session, a kept snapshot, or the
empty world).

Why replay is exact: a generated frame changes the KV cache only through its sigma-0 cache pass on the
clean latent, with the frame's controls and index, so `append_latent(latent, controls)` writes the
same K/V bit for bit as `step()` did (the denoise passes write the scratch tail only). A replay costs
one forward per frame instead of one per sigma.

States no op describes (a snapshot file loaded into the session, anything unknown done to it) are
*pinned*: kept as a snapshot for as long as a handle needs them, and counted against the budget; a
graph whose pinned states do not fit gets a WaypointError saying how to raise the budget.
"""
from __future__ import annotations

import os
import threading
import weakref
from collections import OrderedDict

MIB = 1024 * 1024
# The one default: CPU memory World handles may keep as snapshots (about 10 worlds at 360P bf16).
DEFAULT_BUDGET_MB = 2048
BUDGET_ENV = "WAYPOINT_WORLD_MEMORY_MB"


class StateNode:
    """One world state: `parent` + `ops` (replayable), or a pinned `snapshot` (then `parent` is None).

    ops: ("latent", latent [C, h, w] float32 CPU, controls or None) | ("prompt", [P_len, P] float32 or None).
    `handles` are the live World handles denoting this state; the state is needed while one exists.
    """

    __slots__ = ("parent", "ops", "frame_index", "has_prompt", "snapshot", "pinned", "handles", "__weakref__")

    def __init__(self, parent, ops, frame_index: int, has_prompt: bool, snapshot=None, pinned: bool = False):
        self.parent, self.ops = parent, tuple(ops)
        self.frame_index, self.has_prompt = frame_index, has_prompt
        self.snapshot, self.pinned = snapshot, pinned
        self.handles = weakref.WeakSet()

    @property
    def needed(self) -> bool:
        return len(self.handles) > 0


# Session methods that only read; any other attribute a node touches makes the result opaque (pinned).
_READ_ONLY = frozenset({"engine", "frame_index", "last_latent", "prompt_emb", "snapshot", "save_snapshot"})


class RecordingSession:
    """What `World.advance()` yields: forwards to the session and records every state change as an op."""

    def __init__(self, session):
        self._session = session
        self.ops: list = []
        self.opaque = False

    def step(self, controls=None, *args, **kwargs):
        latent = self._session.step(controls, *args, **kwargs)
        self.ops.append(("latent", latent, controls))   # step() hands out a fresh tensor each frame
        return latent

    def append_latent(self, latent, controls=None):
        self._session.append_latent(latent, controls)
        self.ops.append(("latent", self._session.last_latent, controls))

    def append_latents(self, latents, controls=None):
        for latent in latents:
            self.append_latent(latent, controls)

    def set_prompt(self, prompt_emb):
        self._session.set_prompt(prompt_emb)
        self.ops.append(("prompt", self._session.prompt_emb))

    @property
    def changed(self) -> bool:
        return self.opaque or bool(self.ops)

    def __getattr__(self, name):
        if name not in _READ_ONLY:
            self.opaque = True
        return getattr(self._session, name)


def replay(session, ops) -> None:
    """Apply recorded ops to a session standing in the state they were recorded from."""
    for op in ops:
        if op[0] == "latent":
            session.append_latent(op[1], op[2])
        else:
            session.set_prompt(op[1])


class SnapshotStore:
    """The snapshots World states keep, within a byte budget (process-wide, all engines)."""

    def __init__(self):
        self.lock = threading.RLock()
        self._kept: "OrderedDict[int, tuple[weakref.ref, int]]" = OrderedDict()   # LRU: id -> (node, bytes)
        self._budget: int | None = None    # read from the environment at first use, not at pack import

    @property
    def budget(self) -> int:
        if self._budget is None:
            self._budget = _budget_from_env()
        return self._budget

    @budget.setter
    def budget(self, size_bytes: int) -> None:
        self._budget = int(size_bytes)

    def used(self) -> int:
        with self.lock:
            return sum(size for _, size in self._kept.values())

    def kept(self) -> int:
        return len(self._kept)

    def touch(self, node: StateNode) -> None:
        with self.lock:
            if id(node) in self._kept:
                self._kept.move_to_end(id(node))

    def keep(self, node: StateNode, session, size: int, required: bool = False) -> bool:
        """Snapshot `session` (standing in `node`'s state) into `node` if `size` more bytes fit the budget,
        evicting replayable snapshots (least recently used first, those no handle needs before the rest).
        A `required` (pinned) state that does not fit raises WaypointError; others are left to replay."""
        with self.lock:
            if not self._make_room(size):
                if not required:
                    return False
                self._over_budget(size)
            node.snapshot = session.snapshot()
            node_id = id(node)
            self._kept[node_id] = (weakref.ref(node, lambda _, key=node_id: self._forget(key)), size)
            return True

    def _make_room(self, size: int) -> bool:
        for only_unneeded in (True, False):
            for key, (ref, _) in list(self._kept.items()):
                if self.used() + size <= self.budget:
                    return True
                node = ref()
                if node is None or node.pinned or (only_unneeded and node.needed):
                    continue
                node.snapshot = None
                del self._kept[key]
        return self.used() + size <= self.budget

    def _over_budget(self, size: int) -> None:
        from worldengine.errors import WaypointError
        pinned = sum(1 for ref, _ in self._kept.values() if ref() is not None and ref().pinned)
        raise WaypointError(
            f"world memory budget exceeded: keeping one more loaded world needs {size / MIB:,.0f} MiB, "
            f"{self.used() / MIB:,.0f} MiB of the {self.budget / MIB:,.0f} MiB budget are held by {pinned} "
            f"loaded world(s) still in use; raise the budget with the {BUDGET_ENV} environment variable "
            "(MiB) or use fewer Load World Snapshot outputs at once")

    def _forget(self, key: int) -> None:
        with self.lock:
            self._kept.pop(key, None)

    def clear(self) -> None:
        """Drop every replayable snapshot (pinned ones stay: nothing else can rebuild them)."""
        with self.lock:
            for key, (ref, _) in list(self._kept.items()):
                node = ref()
                if node is None or not node.pinned:
                    if node is not None:
                        node.snapshot = None
                    self._kept.pop(key, None)


def _budget_from_env() -> int:
    from worldengine.errors import WaypointError
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_BUDGET_MB * MIB
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0:
        raise WaypointError(f"{BUDGET_ENV}={text!r}: expected a number of MiB >= 0")
    return int(value * MIB)


store = SnapshotStore()


def set_budget(size_bytes: int) -> int:
    """Set the world memory budget (bytes); returns the previous one. Over-budget snapshots are evicted
    at the next keep."""
    with store.lock:
        previous = store.budget
        store.budget = size_bytes
        return previous
