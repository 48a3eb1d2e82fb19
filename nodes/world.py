"""The values that travel on the pack's sockets, and how a world survives ComfyUI's output cache.

ComfyUI caches every node's outputs and hands the *same objects* to downstream nodes on later
queue runs. A world therefore cannot be a session that nodes mutate: re-running StepWorld would
continue from where the previous run ended instead of from its (cached) input, and two StepWorld
nodes branching from one world would disturb each other.

Design: a `World` is an immutable handle = (engine, a shared `SessionCursor`, the `WorldSnapshot`
of the state the handle denotes, decoder/encoder stream positions). Nodes never change a handle;
they work inside `with world.advance() as session:`, which holds the session's lock and restores the
shared session to the handle's snapshot unless it is already there (the common straight-line case
costs nothing), and return a *new* handle from `world.derive(...)` with a fresh snapshot. So any cached world can be re-run or branched, and the
result of a node depends only on its inputs.

Decoding follows the same rule: the TAEHV decoder is a causal stream over all latents of a world
(seed latents included). Each `WorldLatents` carries a `DecodeLink` whose parent is the chain
before these latents; decoding replays from the nearest memoised decoder state, so
rollouts decode identically whichever nodes ran before, and DecodeLatent may run twice.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import codec

WAYPOINT_ENGINE = "WAYPOINT_ENGINE"
WAYPOINT_WORLD = "WAYPOINT_WORLD"
WAYPOINT_CONTROLS = "WAYPOINT_CONTROLS"
WAYPOINT_LATENTS = "WAYPOINT_LATENTS"

_tokens = itertools.count(1)


class SessionCursor:
    """One engine session shared by every handle derived from one seeded world, plus which
    handle's state it currently holds. The lock serialises graph runs and the live loop."""

    def __init__(self, session):
        self.session = session
        self.at: int | None = None
        self.lock = threading.RLock()


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

    `snapshot` is the engine's WorldSnapshot; `frame_index` counts latent frames consumed (seeds +
    generated); `decode_tail` is the last link of the world's latent chain; `encoder` the encoder
    stream after the last seed image (None before any image was encoded). The Waypoint-1 prompt is
    part of the snapshot.
    """

    engine: Any
    cursor: SessionCursor
    snapshot: Any
    token: int
    frame_index: int
    decode_tail: DecodeLink | None
    encoder: Any = None
    meta: dict = field(default_factory=dict)

    @property
    def config(self):
        return self.engine.config

    @contextmanager
    def advance(self):
        """The node transaction: hold the session's lock, put the session in this handle's state and
        yield it; derive the result (`self.derive(...)`) inside the block. If the block fails, the
        session is in an unknown state, so the next handle to use it restores its own snapshot."""
        with self.cursor.lock:
            session = self.checkout()
            try:
                yield session
            except BaseException:
                self.cursor.at = None
                raise

    def checkout(self):
        """Put the shared session in this handle's state; returns the session. Call with
        `cursor.lock` held (`advance()` does) for the whole read-modify-derive sequence."""
        cursor = self.cursor
        if cursor.at != self.token:
            cursor.session.restore(self.snapshot)
            if "prompt_emb" not in self.snapshot.tensors:
                cursor.session.set_prompt(None)   # restore() keeps a prompt the snapshot lacks
            cursor.at = self.token
        return cursor.session

    def derive(self, *, new_latents=None, encoder=None, **meta) -> "World":
        """A new handle for the cursor's current session state (after this handle was checked out
        and advanced). `new_latents` [n, C, h, w] extends the decode chain."""
        session = self.cursor.session
        token = next(_tokens)
        tail = DecodeLink(self.decode_tail, new_latents) if new_latents is not None else self.decode_tail
        world = World(engine=self.engine, cursor=self.cursor, snapshot=session.snapshot(), token=token,
                      frame_index=session.frame_index, decode_tail=tail,
                      encoder=encoder if encoder is not None else self.encoder, meta={**self.meta, **meta})
        self.cursor.at = token
        return world


def new_world(engine, decode_tail: "DecodeLink | None" = None) -> World:
    """An empty world (frame 0, empty cache) on a new session of `engine`."""
    session = engine.new_session()
    cursor = SessionCursor(session)
    token = next(_tokens)
    cursor.at = token
    return World(engine=engine, cursor=cursor, snapshot=session.snapshot(), token=token,
                 frame_index=session.frame_index, decode_tail=decode_tail)


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
