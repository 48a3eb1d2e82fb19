"""One stepping thread per device, shared by that device's live sessions (`worldengine.live.session`).

Each pass the worker takes every attached session that may step now (`wait_time(now) == 0`, at most
MAX_BATCH, the first of them rotating), and steps those of one engine together: one
`engine.step_many` call, one forward per denoise pass and cache pass for all of them, each session
with its own controls, noise generator and frame counter. Then each renders and hands its frame
over. It sleeps until the soonest session may step. A session whose client does not keep up is
simply not due (its unacknowledged frames reached `max_in_flight`): it drops out of the batch while
the others go on, and its input keeps coalescing (latest control wins) until it is due again; one
busy in another thread (writing a snapshot, resetting) sits the pass out instead of holding it.
A session that raises is failed alone: when a batch raises, its sessions step again one by one from
the same noise, so only the one at fault fails. Objects with only `tick` (the `LiveSession`
protocol below) step alone.
At interpreter exit (`atexit`) every worker is stopped and joined: a thread still inside a torch op
while the interpreter finalizes aborts the process ("terminate called without an active exception").
"""
from __future__ import annotations

import atexit
import threading
import time
from typing import Protocol

BUSY_RETRY = 0.005   # seconds before looking again when every due session was busy
MAX_BATCH = 8   # sessions per pass: the batch stepper's largest shape bucket (worldengine.batch.BUCKETS)


class LiveSession(Protocol):
    """What the worker needs of a live session (`worldengine.live.session.LiveSession` is one)."""

    def wait_time(self, now: float) -> float: ...

    def tick(self) -> None: ...   # one step alone; a session may also offer begin_step/finish_step/
                                  # abandon_step plus `engine` and `session` to be batched (LiveSession does)

    def fail(self, error: BaseException) -> None: ...


class DeviceWorker:
    """The one stepping thread of a device: steps the attached sessions that may step, batched per
    engine. The thread starts with the first session attached and ends when the last one detaches.
    `steps` counts session steps, `passes` worker passes, `last_batch` the sessions of the last pass;
    `max_batch` (default MAX_BATCH) caps the sessions of one pass: 1 steps them one by one, round-robin."""

    def __init__(self, device: str):
        self.device = device
        self._cond = threading.Condition()
        self._sessions: list[LiveSession] = []
        self._thread: threading.Thread | None = None
        self._last_thread: threading.Thread | None = None   # kept until joined (stop)
        self._stopped = False
        self._running: tuple = ()   # the sessions whose step runs now
        self._turn = 0
        self.steps = self.passes = self.last_batch = 0
        self.max_batch = MAX_BATCH

    def attach(self, live: LiveSession) -> None:
        from worldengine.errors import WaypointError
        with self._cond:
            if self._stopped:
                raise WaypointError("live play is shut down: this process is exiting")
            self._sessions.append(live)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"waypoint-live-{self.device}", daemon=True)
                self._last_thread = self._thread
                self._thread.start()
            self._cond.notify_all()

    def detach(self, live: LiveSession) -> None:
        """Remove `live`; returns once no step of it runs (unless called from the stepping thread)."""
        with self._cond:
            if live in self._sessions:
                self._sessions.remove(live)
            self._cond.notify_all()
            while live in self._running and threading.current_thread() is not self._last_thread:
                self._cond.wait()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop stepping for good (after the step in progress) and join the thread; True when it ended."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._last_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None

    @property
    def attached(self) -> int:
        return len(self._sessions)

    def _due(self):
        """(sessions to step now, first-turn first, at most max_batch; seconds to wait when none)."""
        now, due, delays = time.perf_counter(), [], []
        count = len(self._sessions)
        for offset in range(count):
            live = self._sessions[(self._turn + offset) % count]
            wait = live.wait_time(now)
            if wait == 0.0:
                due.append(live)
            elif wait is not None:
                delays.append(wait)
        limit = max(1, min(int(self.max_batch), MAX_BATCH))
        if len(due) > limit:   # the ones left out go first next pass
            due = due[:limit]
            self._turn = (self._sessions.index(due[-1]) + 1) % count
        elif due:              # who renders and hands its frame over first rotates
            self._turn = (self._turn + 1) % count
        return due, min(delays) if delays else 1.0

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._sessions or self._stopped:
                    self._thread = None
                    return
                due, delay = self._due()
                if not due:
                    self._cond.wait(timeout=delay)
                    continue
                self._running = tuple(due)
            stepped = 0
            try:
                stepped = step_together(due)
                self.steps += stepped
                self.passes += 1
                self.last_batch = stepped
            finally:
                with self._cond:
                    self._running = ()
                    self._cond.notify_all()
                    if not stepped:   # only busy sessions were due: do not spin while they are busy
                        self._cond.wait(timeout=BUSY_RETRY)


def step_together(lives) -> int:
    """Step `lives` once each (every one due): those sharing an engine in one batch; returns how many
    stepped. Never raises for a session's fault: that session is failed (`fail`) and the rest go on."""
    groups: dict[int, list] = {}
    for live in lives:
        key = id(live.engine) if hasattr(live, "begin_step") else id(live)
        groups.setdefault(key, []).append(live)
    stepped = 0
    for group in groups.values():
        if not hasattr(group[0], "begin_step"):
            stepped += _guarded(group[0], group[0].tick)
            continue
        claimed = []
        for live in group:
            try:
                step = live.begin_step(blocking=False)   # busy (saving a snapshot): next pass
            except Exception as err:  # noqa: BLE001 - one session's failure must not stop the device
                live.fail(err)
                continue
            if step is not None:
                claimed.append((live, step))
        stepped += _step_claimed(claimed)
    return stepped


def _step_claimed(claimed) -> int:
    """One forward per pass for every claimed (live, step) (the engine's own single step for one)."""
    if not claimed:
        return 0
    states = [step.generator.get_state() for _, step in claimed]
    start = time.perf_counter()
    try:
        if len(claimed) == 1:
            live, step = claimed[0]
            latents = [live.session.step(step.controls, generator=step.generator)]
        else:
            engine = claimed[0][0].engine
            if not _batch_ready(engine, claimed):
                return sum(_step_claimed([pair]) for pair in claimed)
            latents = engine.step_many([(live.session, step.controls, step.generator) for live, step in claimed])
    except Exception as err:  # noqa: BLE001 - find the session at fault: each again alone, same noise
        if len(claimed) == 1:
            claimed[0][0].abandon_step(claimed[0][1])
            claimed[0][0].fail(err)
            return 0
        for (_, step), state in zip(claimed, states):
            step.generator.set_state(state)
        return sum(_step_claimed([pair]) for pair in claimed)
    stepped = time.perf_counter()
    for (live, step), latent in zip(claimed, latents):
        _guarded(live, live.finish_step, step, latent, start, stepped, len(claimed))
    return len(claimed)


def _batch_ready(engine, claimed) -> bool:
    """False while a compiled engine builds this batch size's graph (in the background): step alone."""
    from worldengine.batch import batch_ready
    return batch_ready(engine, len(claimed), claimed[0][0].session.prompt_context)


def _guarded(live, call, *args) -> int:
    """1 when `call(*args)` ran; 0 (and `live` failed) when it raised."""
    try:
        call(*args)
        return 1
    except Exception as err:  # noqa: BLE001 - one session's failure must not stop the device
        live.fail(err)
        return 0


_workers: dict[str, DeviceWorker] = {}
_workers_lock = threading.Lock()


def shutdown_workers(timeout: float = 5.0) -> bool:
    """Stop and join every device worker (registered with atexit); True when all threads ended."""
    with _workers_lock:
        workers = list(_workers.values())
    return all([worker.stop(timeout) for worker in workers])   # noqa: C419 - stop every one, no short cut


atexit.register(shutdown_workers)


def worker_for(device: str) -> DeviceWorker:
    """The device's stepping worker (one per device string, e.g. "cpu", "cuda:0")."""
    with _workers_lock:
        if device not in _workers:
            _workers[device] = DeviceWorker(device)
        return _workers[device]
