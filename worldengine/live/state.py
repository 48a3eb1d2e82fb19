"""The plain data of live play: a produced frame, a session's settings, the control waiting for the next
step and one claimed step (`worldengine.live.session.LiveSession` re-exports the first two)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from worldengine.controls import Controls

MOUSE_LIMIT = 10.0   # summed mouse motion per frame is clamped to this (ControllerInput's range)


@dataclass
class LiveFrame:
    """One generated latent and its rendered images. `ordinal` counts this session's frames (acks refer
    to it); `frame_index` is the world frame; `control_seq` the newest control message this step used
    (None when no new control arrived since the previous step); times in milliseconds. `batch` is how
    many sessions shared this step's forward passes; `latency_ms` runs from the step's start until the
    frame was handed over (the step, the renders of the sessions handed over before it, its own render
    and encode): what this player waited, batched or not."""

    ordinal: int
    frame_index: int
    latent: torch.Tensor            # [C, h, w] float32 CPU
    images: list                    # encoded image bytes, frames_per_latent of them (1 for latent preview)
    mime: str
    control_seq: int | None
    control_t: float | None
    wait_ms: float                  # the control's wait on the server before its step started
    step_ms: float
    render_ms: float
    encode_ms: float
    recorded: bool
    batch: int = 1
    latency_ms: float = 0.0

    def header(self, sub: int) -> dict:
        return {"type": "frame", "ordinal": self.ordinal, "frame_index": self.frame_index, "sub": sub,
                "of": len(self.images), "mime": self.mime, "control_seq": self.control_seq,
                "control_t": self.control_t, "wait_ms": round(self.wait_ms, 3), "step_ms": round(self.step_ms, 3),
                "render_ms": round(self.render_ms, 3), "encode_ms": round(self.encode_ms, 3),
                "recorded": self.recorded, "batch": self.batch, "latency_ms": round(self.latency_ms, 3)}


@dataclass
class LiveSettings:
    preview: str = "latent"
    format: str = "jpeg"
    quality: int = 80
    max_width: int = 640
    max_height: int = 360
    max_in_flight: int = 2
    max_fps: float = 0.0            # latent frames per second; 0 = unlimited


@dataclass
class PendingControl:
    """The input not yet consumed by a step: latest held keys, summed mouse motion, a kept scroll."""

    buttons: frozenset = frozenset()
    mouse: list = field(default_factory=lambda: [0.0, 0.0])
    scroll: int = 0
    seq: int | None = None
    t: float | None = None
    arrived: float | None = None    # perf_counter of the first control not yet consumed

    def add(self, held: frozenset, mouse, scroll: int, seq: int | None, t: float | None) -> None:
        self.buttons = held
        self.mouse[0] += float(mouse[0])
        self.mouse[1] += float(mouse[1])
        self.scroll = scroll or self.scroll
        self.seq, self.t = seq, t
        if self.arrived is None:
            self.arrived = time.perf_counter()

    def controls(self) -> Controls:
        return Controls(self.buttons, tuple(max(-MOUSE_LIMIT, min(MOUSE_LIMIT, m)) for m in self.mouse), self.scroll)


@dataclass
class LiveStep:
    """A step a live session has claimed (`LiveSession.begin_step`): the Controls and noise generator to
    step its world with, and what its frame reports about the control that fed it."""

    controls: Controls
    generator: torch.Generator
    seq: int | None
    t_client: float | None
    arrived: float | None
