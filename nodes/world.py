"""The values that travel on the pack's sockets, and how a world survives ComfyUI's output cache.

ComfyUI caches every node's outputs and hands the *same objects* to downstream nodes on later
queue runs. A world therefore cannot be a session that nodes mutate: re-running StepWorld would
continue from where the previous run ended instead of from its (cached) input, and two StepWorld
nodes branching from one world would disturb each other.

Design: a `World` is an immutable handle = (engine, a shared `SessionCursor`, the `StateNode` of the
state the handle denotes, decoder/encoder stream positions). Nodes never change a handle; they work
inside `with world.advance() as session:`, which holds the session's lock and brings the shared
session to the handle's state unless it is already there (the common straight-line case costs
nothing), and return a *new* handle from `world.derive(...)`. Handles share state instead of each
holding a full KV copy: a state is snapshotted only when another handle is about to change the
session while a live handle still needs it (within a memory budget), else rebuilt exactly by replay
(`world_state`). So any cached world can be re-run or branched, and the result of a node depends only
on its inputs.

Decoding follows the same rule: the TAEHV decoder is a causal stream over all latents of a world
(seed latents included). Each `WorldLatents` carries a `DecodeLink` whose parent is the chain
before these latents; decoding replays from the nearest memoised decoder state, so
rollouts decode identically whichever nodes ran before, and DecodeLatent may run twice.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .world_state import RecordingSession, StateNode, replay, store

WAYPOINT_ENGINE = "WAYPOINT_ENGINE"
WAYPOINT_WORLD = "WAYPOINT_WORLD"
WAYPOINT_CONTROLS = "WAYPOINT_CONTROLS"
WAYPOINT_LATENTS = "WAYPOINT_LATENTS"

class SessionCursor:
    """One engine session shared by every handle derived from one seeded world, plus which state
    (`StateNode`) it currently holds (None: unknown, after a failed node). The lock serialises graph
    runs and the live loop."""

    def __init__(self, session):
        self.session = session
        self.current: StateNode | None = None
        self.lock = threading.RLock()
        self.recording: RecordingSession | None = None


_UNSET = object()


class DecodeLink:
    """A link in a world's chain of latents, for the streaming decoder.

    `latents` [n, C, h, w] float32 CPU are the latents this link adds after `parent`. The decoder
    state after a link is a pure function of the chain, so it is computed on demand by replaying
    from the nearest link that remembers its state. Only the `REMEMBERED_STATES` most recently used
    states are kept (module-wide LRU), which bounds memory for long sessions; a link whose state
    was evicted is replayed from further up, correctly, just slower.
    """

    def __init__(self, parent: "DecodeLink | None", latents):
        self.parent = parent
        self.latents = latents
        self._end_state: Any = _UNSET
        self._pinned = False          # a state that cannot be recomputed (loaded from disk) is kept

    @classmethod
    def resume(cls, decoder) -> "DecodeLink":
        """A root link with no latents whose end state is `decoder` (a world loaded from disk)."""
        link = cls(None, None)
        link._end_state = codec.copy_decoder(decoder)
        link._pinned = True
        return link

    def decode(self, engine):
        """Frames of this link's latents, [T, 3, H, W] float in [0, 1] on CPU."""
        with _decode_lock:
            decoder = self._state_before(engine)
            frames = codec.decode(decoder, self.latents)
            self._remember(decoder)
            return frames

    def state_after(self, engine):
        """A private decoder stream positioned just after this link's latents."""
        with _decode_lock:
            return _decoder_after(self, engine)

    def _state_before(self, engine):
        return _decoder_after(self.parent, engine)

    def _remember(self, decoder) -> None:
        self._end_state = codec.copy_decoder(decoder)
        _touch(self)


def _decoder_after(link: "DecodeLink | None", engine):
    """A private decoder positioned after `link`: replay from the nearest remembered state."""
    path = []
    while link is not None and link._end_state is _UNSET:
        path.append(link)
        link = link.parent
    if link is None:
        decoder = codec.new_decoder(engine)
    else:
        decoder = codec.copy_decoder(link._end_state)
        _touch(link)
    for pending in reversed(path):
        codec.decode(decoder, pending.latents)
    if path:
        path[0]._remember(decoder)
    return decoder


# Decoding is rare next to stepping and holds big activations: one at a time.
_decode_lock = threading.RLock()
# Decoder states kept (TAEHV 1.5: about 11 MB each at 360P, 44 MB at 720P).
REMEMBERED_STATES = 8
_recent: "OrderedDict[int, DecodeLink]" = OrderedDict()


def _touch(link: DecodeLink) -> None:
    """Mark `link`'s remembered state as recently used; forget the oldest beyond the limit."""
    if link._pinned:
        return
    _recent[id(link)] = link
    _recent.move_to_end(id(link))
    while len(_recent) > REMEMBERED_STATES:
        _, oldest = _recent.popitem(last=False)
        oldest._end_state = _UNSET


@dataclass(frozen=True, eq=False)
class World:
    """A WAYPOINT_WORLD value: an immutable view of one world state (see module docstring).

    `node` is the shared `StateNode` it denotes (a snapshot is taken lazily, see world_state);
    `frame_index` counts latent frames consumed (seeds + generated); `decode_tail` is the last link of
    the world's latent chain; `encoder` the encoder stream after the last seed image (None before any
    image was encoded). The Waypoint-1 prompt is part of the state.
    """

    engine: Any
    cursor: SessionCursor
    node: StateNode
    frame_index: int
    decode_tail: DecodeLink | None
    encoder: Any = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.node.handles.add(self)   # the state is needed while this handle lives

    @property
    def config(self):
        return self.engine.config

    @property
    def has_prompt(self) -> bool:
        return self.node.has_prompt

    @property
    def snapshot(self):
        """This state as a `WorldSnapshot` (CPU tensors, the caller's own copy unless it was kept)."""
        if self.node.snapshot is not None:
            return self.node.snapshot
        with self.cursor.lock:
            return self.checkout().snapshot()

    @contextmanager
    def advance(self):
        """The node transaction: hold the session's lock, put the session in this handle's state and
        yield it (recording what the block changes); derive the result (`self.derive(...)`) inside the
        block. If the block fails, or changes the session without deriving, the session is in an
        unknown state, so the next handle to use it rebuilds its own."""
        cursor = self.cursor
        with cursor.lock:
            recorder = RecordingSession(self.checkout())
            cursor.recording = recorder
            try:
                yield recorder
                if recorder.changed:
                    cursor.current = None
            except BaseException:
                cursor.current = None
                raise
            finally:
                cursor.recording = None

    def checkout(self):
        """Put the shared session in this handle's state; returns the session. Call with `cursor.lock`
        held (`advance()` does) for the whole read-modify-derive sequence."""
        cursor = self.cursor
        current = cursor.current
        if current is self.node:
            return cursor.session
        if current is not None and current.snapshot is None and current.needed:
            _keep(current, cursor.session)      # another handle still needs the state about to go
        replayed = _rebuild(self.node, cursor)
        cursor.current = self.node
        if replayed > KEEP_AFTER_REPLAYED_FRAMES and self.node.snapshot is None:
            _keep(self.node, cursor.session)    # a costly state visited again is a branch point: keep it if it fits
        store.touch(self.node)
        return cursor.session

    def derive(self, *, new_latents=None, encoder=None, **meta) -> "World":
        """A new handle for the cursor's current session state (after this handle was checked out
        and advanced inside `advance()`). `new_latents` [n, C, h, w] extends the decode chain."""
        cursor = self.cursor
        session, recorder = cursor.session, cursor.recording
        has_prompt = session.prompt_emb is not None
        if recorder is None or recorder.opaque:
            node = StateNode(None, (), session.frame_index, has_prompt, pinned=True)
            store.keep(node, session, _snapshot_size(self.engine), required=True)
        else:
            node = StateNode(self.node, recorder.ops, session.frame_index, has_prompt)
        if recorder is not None:
            recorder.ops, recorder.opaque = [], False
        tail = DecodeLink(self.decode_tail, new_latents) if new_latents is not None else self.decode_tail
        world = World(engine=self.engine, cursor=cursor, node=node, frame_index=session.frame_index,
                      decode_tail=tail, encoder=encoder if encoder is not None else self.encoder,
                      meta={**self.meta, **meta})
        cursor.current = node
        return world


# A revisited state is snapshotted only when rebuilding it replayed more frames than this: a replayed
# frame is one forward, a generated one five (four denoise steps + the cache pass), so rebuilding a
# seed image or a short rollout costs less than the memory of keeping it (100s of MiB at 360P/720P).
KEEP_AFTER_REPLAYED_FRAMES = 8


def _snapshot_size(engine) -> int:
    from worldengine.memory import snapshot_bytes
    return snapshot_bytes(engine.config, engine.dtype)


def _keep(node: StateNode, session) -> None:
    store.keep(node, session, _snapshot_size(session.engine))


def _rebuild(target: StateNode, cursor: SessionCursor) -> bool:
    """Bring the session to `target`'s state from the nearest state at hand: the session itself (an
    ancestor), a kept snapshot, or the empty world; then replay the ops on the way. Returns how many frames were replayed."""
    session, path, node = cursor.session, [], target
    while node is not cursor.current and node.snapshot is None and node.parent is not None:
        path.append(node)
        node = node.parent
    if node is not cursor.current:
        if node.snapshot is not None:
            session.restore(node.snapshot)
            if "prompt_emb" not in node.snapshot.tensors:
                session.set_prompt(None)   # restore() keeps a prompt the snapshot lacks
            store.touch(node)
        else:   # a root without a snapshot is an empty world
            session.reset()
            session.set_prompt(None)
            path.append(node)
    for step in reversed(path):
        replay(session, step.ops)
    if session.frame_index != target.frame_index:
        from worldengine.errors import WaypointError
        raise WaypointError(f"world replay reached frame {session.frame_index}, expected {target.frame_index}")
    return sum(1 for step in path for op in step.ops if op[0] == "latent")


def new_world(engine, decode_tail: "DecodeLink | None" = None) -> World:
    """An empty world (frame 0, empty cache) on a new session of `engine`; no snapshot is taken."""
    session = engine.new_session()
    cursor = SessionCursor(session)
    root = StateNode(None, (), session.frame_index, has_prompt=False)
    cursor.current = root
    return World(engine=engine, cursor=cursor, node=root, frame_index=session.frame_index,
                 decode_tail=decode_tail)


@dataclass(frozen=True, eq=False)
class WorldLatents:
    """A WAYPOINT_LATENTS value: the latents a node produced, [N, C, h, w] float32 on CPU, with
    their place in the world's decode chain (`link.latents` is the same tensor)."""

    engine: Any
    link: DecodeLink

    @property
    def latents(self):
        return self.link.latents

    def __len__(self):
        return int(self.link.latents.shape[0])
