"""One stepping thread per device, shared by that device's live sessions (`worldengine.live.session`).

A worker runs whichever attached session may step now (`wait_time(now) == 0`), round-robin, and
sleeps until the soonest one may; a session that raises is failed alone and the thread goes on.
At interpreter exit (`atexit`) every worker is stopped and joined: a thread still inside a torch op
while the interpreter finalizes aborts the process ("terminate called without an active exception").
"""
from __future__ import annotations

import atexit
import threading
import time
from typing import Protocol


class LiveSession(Protocol):
    """What the worker needs of a live session (`worldengine.live.session.LiveSession` is one)."""

    def wait_time(self, now: float) -> float: ...

    def tick(self) -> None: ...

    def fail(self, error: BaseException) -> None: ...


class DeviceWorker:
    """The one stepping thread of a device: runs whichever attached session may step, round-robin.
    The thread starts with the first session attached and ends when the last one detaches."""

    def __init__(self, device: str):
        self.device = device
        self._cond = threading.Condition()
        self._sessions: list[LiveSession] = []
        self._thread: threading.Thread | None = None
        self._last_thread: threading.Thread | None = None   # kept until joined (stop)
        self._stopped = False
        self._running: LiveSession | None = None   # the session whose tick runs now
        self._turn = 0
        self.steps = 0

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
            while self._running is live and threading.current_thread() is not self._last_thread:
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

    def _pick(self):
        """(session to run now or None, seconds to wait when none)."""
        now, delays = time.perf_counter(), []
        count = len(self._sessions)
        for offset in range(count):
            live = self._sessions[(self._turn + offset) % count]
            wait = live.wait_time(now)
            if wait == 0.0:
                self._turn = (self._turn + offset + 1) % count
                return live, 0.0
            if wait is not None:
                delays.append(wait)
        return None, min(delays) if delays else 1.0

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._sessions or self._stopped:
                    self._thread = None
                    return
                live, delay = self._pick()
                if live is None:
                    self._cond.wait(timeout=delay)
                    continue
                self._running = live
            try:
                live.tick()
                self.steps += 1
            except Exception as err:  # noqa: BLE001 - one session's failure must not stop the device
                live.fail(err)
            finally:
                with self._cond:
                    self._running = None
                    self._cond.notify_all()


_workers: dict[str, DeviceWorker] = {}
_workers_lock = threading.Lock()


def shutdown_workers(timeout: float = 5.0) -> bool:
    """Stop and join every device worker (registered with atexit); True when all threads ended."""
    with _workers_lock:
        workers = list(_workers.values())
    return all([worker.stop(timeout) for worker in workers])


atexit.register(shutdown_workers)


def worker_for(device: str) -> DeviceWorker:
    """The device's stepping worker (one per device string, e.g. "cpu", "cuda:0")."""
    with _workers_lock:
        if device not in _workers:
            _workers[device] = DeviceWorker(device)
        return _workers[device]
