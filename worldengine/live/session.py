"""Transport-independent live play: a world stepped in real time from the latest controls.

    live = LiveSession(engine, base_snapshot, seed=7, renderer_factory=lambda preview: LatentPreview(C),
                       sink=send_frame, events=send_event)
    live.play(); live.submit_control(buttons={87}, mouse=(0.1, 0), scroll=0, seq=1)
    ... frames arrive in sink(LiveFrame) from the device's stepping thread; live.ack(frame.ordinal) ...
    track = live.track()    # ControlTrack: StepWorld(world=base, controls=track, seed=-1) replays it

Rules that make it real time and bounded:
- one stepping thread per device (`DeviceWorker`): the sessions of one engine that may step now step
  together, one batched forward per pass (`engine.step_many`), each with its own controls and noise;
- latest control wins: keys held are replaced by each control message, mouse motion is summed and
  scroll kept until a step consumes them, so input never queues up behind a slow step;
- backpressure: a session steps only while fewer than `max_in_flight` of its frames are unacknowledged,
  and at most `max_fps` latent frames per second;
- recording: every step's Controls go into the track while recording is on, and noise comes from one
  `torch.Generator().manual_seed(seed)` drawn in step order, exactly as StepWorld draws it, so the
  track + seed replay the played latents bit for bit on the same device and dtype.
"""
from __future__ import annotations

import threading
import time

import torch

from worldengine.controls import MAX_TRACK_FRAMES, Controls, ControlTrack
from worldengine.errors import WaypointError
from worldengine.live.frames import MIME, RecentFrames, decode_images, encode_image
from worldengine.live.state import LiveFrame, LiveSettings, LiveStep, PendingControl
from worldengine.live.worker import worker_for

__all__ = ["LiveFrame", "LiveSession", "LiveSettings"]


class LiveSession:
    """A live world: its own engine session restored from `base_snapshot`, stepped by the device worker.

    Thread safety: every public method may be called from any thread. `sink(frame)` and
    `events(dict)` are called from the stepping thread (and `events` also from the caller's)."""

    def __init__(self, engine, base_snapshot, seed: int, renderer_factory, sink, events=None,
                 settings: LiveSettings | None = None, record: bool = True, guard=None):
        self.engine = engine
        self.guard = guard                        # optional worldengine.sanitize.guard.LiveGuard
        self.base_snapshot = base_snapshot
        self.seed = int(seed)
        self.settings = settings or LiveSettings()
        self._renderer_factory, self._sink, self._events = renderer_factory, sink, events or (lambda e: None)
        self._lock = threading.RLock()           # session, generator, renderer, track
        self._control_lock = threading.Lock()    # pending control (touched at input rate)
        self._pending = PendingControl()
        self._n_buttons = engine.config.n_buttons
        self.session = engine.new_session()      # previews render latents themselves
        self.playing = False
        self.closed = False
        self.recording = record
        self.ordinal = 0                          # frames produced
        self.acked = 0                            # frames acknowledged (a count, not an index)
        self._last_step_start = 0.0
        self._step_times: list[float] = []        # perf_counter of recent step ends, for latent fps
        self._step_ms = self._latency_ms = 0.0
        self._batch = 0                           # sessions in this session's last forward
        self.recent = RecentFrames()              # what was shown lately, for clip export
        self._to_base()
        self.worker = worker_for(str(engine.device))
        self.worker.attach(self)

    # ---- input (any thread) ------------------------------------------------------------------
    def submit_control(self, buttons, mouse=(0.0, 0.0), scroll: int = 0, seq: int | None = None,
                       t: float | None = None) -> None:
        """Latest control wins: `buttons` replaces the held set, `mouse` adds to the motion not yet
        consumed, a nonzero `scroll` is kept until a step consumes it. Codes >= n_buttons are dropped."""
        held = frozenset(code for code in buttons if 0 <= code < self._n_buttons)
        with self._control_lock:
            self._pending.add(held, mouse, scroll, seq, t)

    def ack(self, ordinal: int) -> None:
        """The client has shown frame `ordinal`: every frame up to it is no longer in flight."""
        with self._control_lock:   # never the step lock: this runs on the server's event loop
            self.acked = max(self.acked, min(int(ordinal) + 1, self.ordinal))
        self.worker.wake()

    def update_settings(self, **values) -> None:
        unknown = [name for name in values if not hasattr(self.settings, name)]
        if unknown:
            raise WaypointError(f"unknown live setting(s) {unknown}")
        with self._control_lock:   # applied by the next step; never waits for the current one
            if values.get("preview", self.settings.preview) != self.settings.preview:
                self._renderer_stale = True   # a decoder made mid-session starts at the base world: preview only
            for name, value in values.items():
                setattr(self.settings, name, value)
        self.worker.wake()

    def play(self) -> None:
        with self._control_lock:   # a closed session is never marked playing again
            self.playing = not self.closed
        self.worker.wake()
        self._emit_status()

    def pause(self) -> None:
        self.playing = False
        self._emit_status()

    def reset(self) -> None:
        """Back to the base world (the seed): new noise generator, empty track, preview restarted."""
        with self._lock:
            self._to_base()
        self._emit_status()

    def set_recording(self, on: bool) -> None:
        """Off freezes the track (its frames still replay the start of the session). On after a pause
        in recording resets to the base world, since a track must start there to replay."""
        with self._lock:
            if on and not self.recording and len(self.track_frames) != self.steps_since_base:
                self._to_base()
            self.recording = bool(on)
        self._emit_status()

    def track(self) -> ControlTrack:
        with self._lock:
            return ControlTrack(tuple(self.track_frames), seed=self.seed)

    def snapshot(self):
        """WorldSnapshot of the live world now (between steps)."""
        with self._lock:
            return self.session.snapshot()

    def save_snapshot(self, path) -> None:
        """Save the live world now to a safetensors snapshot (WorldSession.save_snapshot format)."""
        with self._lock:
            self.session.save_snapshot(path)

    def export_clip(self, path, seconds: float = 10.0):
        """Write the last `seconds` of shown frames to `path` (.mp4 needs PyAV; .webp / .gif with
        Pillow) at the rate they were shown. Returns the path."""
        from worldengine.video import write_frames
        images, fps = self.recent.clip(seconds)
        if not images:
            raise WaypointError("nothing was shown yet: play before exporting a clip")
        return write_frames(decode_images(images), path, fps)

    def close(self) -> None:
        with self._control_lock:   # after this, play() cannot mark it playing again
            self.closed, self.playing = True, False
        self.worker.detach(self)   # returns after its step in progress: a script may exit right after

    def status(self) -> dict:
        """Counters for the HUD (read without the step lock: may be one step stale). Per session, also
        when batched: `latent_fps` counts this session's frames, `step_ms` is the wall time of its last
        step (the whole batched forward it shared), `latency_ms` step start to frame handed over,
        `batch` how many sessions shared that forward, `device_sessions` how many the device serves."""
        now = time.perf_counter()
        recent = [t for t in self._step_times if now - t < 2.0]
        span = recent[-1] - recent[0] if len(recent) > 1 else 0.0
        fps = (len(recent) - 1) / span if span > 0 else 0.0
        return {"type": "status", "playing": self.playing, "recording": self.recording,
                "frame_index": self.session.frame_index, "steps": self.steps_since_base,
                "recorded_frames": len(self.track_frames), "seed": self.seed,
                "preview": self.settings.preview, "latent_fps": round(fps, 2),
                "step_ms": round(self._step_ms, 2), "latency_ms": round(self._latency_ms, 2),
                "batch": self._batch, "device_sessions": self.worker.attached,
                "in_flight": self.ordinal - self.acked,
                "max_in_flight": self.settings.max_in_flight, "max_fps": self.settings.max_fps,
                "compile": self.session.engine.compile_status}

    # ---- stepping (the device worker's thread) -----------------------------------------------
    def wait_time(self, now: float) -> float | None:
        """0 if a step may run now, seconds until one may (fps cap), None while blocked."""
        if self.closed or not self.playing or self.ordinal - self.acked >= self.settings.max_in_flight:
            return None
        if self.settings.max_fps > 0:
            return max(0.0, self._last_step_start + 1.0 / self.settings.max_fps - now)
        return 0.0

    def tick(self) -> None:
        """Generate one latent from the pending control alone, render, encode and hand it to the sink."""
        step = self.begin_step()
        if step is None:
            return
        try:
            start = time.perf_counter()
            latent = self.session.step(step.controls, generator=step.generator)
        except BaseException:
            self.abandon_step(step)
            raise
        self.finish_step(step, latent, start, time.perf_counter())

    def begin_step(self, blocking: bool = True) -> LiveStep | None:
        """Claim the next step (None when blocked): takes the pending control and holds the step lock
        until `finish_step` or `abandon_step`, which the same thread must call. Between the two the
        caller steps `self.session` once with the step's controls and generator, alone or batched.
        blocking=False: None at once while another thread holds the lock (a snapshot being written,
        a reset), so the device worker steps the other players meanwhile."""
        if not self._lock.acquire(blocking=blocking):
            return None
        try:
            if self.wait_time(time.perf_counter()) is None:
                self._lock.release()
                return None
            controls, seq, t_client, arrived = self._take_control()
            if self._renderer_stale:
                self._renderer_stale = False
                self.renderer = self._renderer_factory(self.settings.preview)
        except BaseException:
            self._lock.release()
            raise
        return LiveStep(controls, self.generator, seq, t_client, arrived)

    def abandon_step(self, step: LiveStep) -> None:
        """The claimed step did not run (its world and generator are as they were): release the lock."""
        self._lock.release()

    def finish_step(self, step: LiveStep, latent: torch.Tensor, start: float, stepped: float,
                    batch: int = 1) -> None:
        """The world stepped (from perf_counter `start` to `stepped`, in a forward of `batch` sessions)
        into `latent` [C, h, w] float32 CPU: record, render, encode, release the lock, hand the frame over."""
        try:
            frame = self._frame(step, latent, start, stepped, batch)
        finally:
            self._lock.release()
        self._sink(frame)

    def _frame(self, step: LiveStep, latent, start: float, stepped: float, batch: int) -> LiveFrame:
        self._last_step_start = start
        recorded = self.recording and len(self.track_frames) < MAX_TRACK_FRAMES
        if recorded:
            self.track_frames.append(step.controls)
        elif self.recording:
            self.recording = False           # the track is full: stop, keep what fits
        self.steps_since_base += 1
        began_render = time.perf_counter()   # later than `stepped` when others of the batch rendered first
        frames = self.renderer.render(latent)
        if self.guard is not None:   # safety redirect: may restore the last clean world, shows black
            frames = self.guard.on_live_step(self, frames)
        rendered = time.perf_counter()
        settings = self.settings
        images = [encode_image(frame, settings.format, settings.quality, settings.max_width,
                               settings.max_height) for frame in frames]
        encoded = time.perf_counter()
        self.recent.add(images, encoded)
        waited = 1000 * (start - step.arrived) if step.arrived is not None else 0.0
        frame = LiveFrame(self.ordinal, self.session.frame_index - 1, latent, images, MIME[settings.format],
                          step.seq, step.t_client, waited, 1000 * (stepped - start), 1000 * (rendered - began_render),
                          1000 * (encoded - rendered), recorded, batch, 1000 * (encoded - start))
        with self._control_lock:
            self.ordinal += 1
        self._step_ms, self._latency_ms, self._batch = frame.step_ms, frame.latency_ms, batch
        self._step_times = [t for t in self._step_times[-63:] if encoded - t < 2.0] + [encoded]
        return frame

    def fail(self, error: BaseException) -> None:
        """A step raised: pause and tell the client (the server and other sessions go on)."""
        self.playing = False
        self._events({"type": "error", "message": f"live step failed: {error}"})
        self._emit_status()

    # ---- internals ---------------------------------------------------------------------------
    def _to_base(self) -> None:
        self.session.restore(self.base_snapshot)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.track_frames: list[Controls] = []
        self.steps_since_base = 0
        self.renderer = self._renderer_factory(self.settings.preview)
        self._renderer_stale = False
        if self.guard is not None:
            self.guard.reset(self.session.snapshot())
        with self._control_lock:
            self._pending = PendingControl(buttons=self._pending.buttons)

    def _take_control(self):
        with self._control_lock:
            pending = self._pending
            self._pending = PendingControl(buttons=pending.buttons)
        return pending.controls(), pending.seq, pending.t, pending.arrived

    def _emit_status(self) -> None:
        self._events(self.status())
