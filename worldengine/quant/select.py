"""Pick a matmul kernel by measuring it on this machine, once per process and shape class.

A kernel that is available is not necessarily fast: on CPUs without the instructions oneDNN's int8
JIT kernels need (e.g. AMD EPYC without AMX/VNNI support in the shipped oneDNN), the prepacked
quantized linear silently runs oneDNN's reference kernel, measured 1450 ms against 8 ms for
``torch._int_mm`` on a 128x512x2048 product. So nothing here trusts availability alone:

- `onednn_is_real_kernel()`: one 16x64x64 product through the prepacked op and through ``_int_mm``.
  A real oneDNN kernel is within a small factor of ``_int_mm`` there (call overhead dominates);
  the reference kernel is thousands of times slower. The tiny size keeps this probe at a few ms even
  where the answer is no, so large shapes are never timed on the reference kernel.
- `fastest(key, candidates)`: times each candidate (warm-up, then best of `REPS` calls) and caches the
  winner's name and all timings under `key` (callers build the key from the shape class).

Verdicts live for the process (`verdicts()` shows them, `forget()` clears them for tests) and are kept
on disk per machine (`store_path()`: CPU model and ISA, torch version), beside inductor's compile cache,
so a restart makes the same choices without timing again. That matters beyond start-up time: on a busy
machine close timings flip from run to run, and the compiled step of `worldengine.compile_aot` is keyed
by the kernels chosen, so a flipped choice would mean a fresh compile.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from worldengine.quant import onednn

REPS = 3
# oneDNN's reference int8 kernel was 2500x slower than _int_mm on a 16x64x64 product here; a JIT
# kernel's extra call overhead at that size is a few x at most.
REFERENCE_KERNEL_FACTOR = 20.0
# A candidate whose first call takes this many times the best so far is not timed further.
GIVE_UP_FACTOR = 20.0
_verdicts: dict[tuple, dict] = {}
_stored: dict[str, dict] | None = None    # the disk store, read once per process
STORE_ENV = "WAYPOINT_KERNEL_CACHE"       # overrides the store's path
LOG = logging.getLogger("worldengine")


@contextlib.contextmanager
def one_thread():
    """Run on one intra-op thread, restoring the count after. Timing: on a shared machine parallel regions
    wait for busy cores (tens of ms per op were measured at 2 threads under load, whatever the kernel),
    which hides the kernel's own cost. Tiny models too: a second OpenMP thread only adds barrier waits
    (38.5 vs 3.1 ms per frame measured on a 2-core runner); the tests use it for that."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def best_time(fn: Callable[[], object], reps: int = REPS, give_up_s: float = float("inf")) -> float:
    """Seconds of the fastest of `reps` calls of `fn` after one warm-up call (min: the least disturbed
    by other processes on a shared machine); only the warm-up call when it alone took over `give_up_s`
    (a kernel already far slower than another candidate is not timed further)."""
    start = time.perf_counter()
    fn()
    times = [time.perf_counter() - start]
    if times[0] > give_up_s:
        return times[0]
    times.clear()
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@functools.cache
def onednn_is_real_kernel() -> bool:
    """Whether the prepacked oneDNN int8 linear is correct here and not the library's reference kernel."""
    if not onednn.available():
        return False
    generator = torch.Generator().manual_seed(0)
    weight = torch.randint(-127, 128, (64, 64), dtype=torch.int8, generator=generator)
    q = torch.randint(-127, 128, (16, 64), dtype=torch.int8, generator=generator)
    packed = onednn.pack_weight(weight, 16)
    scale, zero = torch.ones(64), torch.zeros(64, dtype=torch.int64)
    with torch.inference_mode(), one_thread():
        packed_s = best_time(lambda: onednn.int8_mm_packed(q, packed, scale, zero))
        int_mm_s = best_time(lambda: torch._int_mm(q, weight.t()))
    _verdicts[("onednn-probe", 16, 64, 64)] = {"choice": "real" if packed_s <= REFERENCE_KERNEL_FACTOR * int_mm_s
                                               else "reference", "times_ms": {"onednn": packed_s * 1e3,
                                                                             "int_mm": int_mm_s * 1e3}}
    return packed_s <= REFERENCE_KERNEL_FACTOR * int_mm_s


def fastest(key: tuple, candidates: Callable[[], dict[str, Callable[[], object]]], among=None) -> str:
    """Name of the fastest of `candidates()` (name -> zero-argument call), measured once per `key`.

    candidates is a factory so that building the probe tensors is skipped when the verdict is cached.
    Ties go to the first candidate listed (callers list the float path first: never slower than it).
    among: only these names compete (absent ones are skipped; the timings of all are cached).
    """
    if key not in _verdicts:
        found = candidates()
        stored = _read_store().get(_text(key))
        if stored is not None and set(stored["times_ms"]) == set(found):   # same candidates as measured then
            _verdicts[key] = stored
        else:
            times = {}
            with torch.inference_mode(), one_thread():
                for name, fn in found.items():
                    times[name] = best_time(fn, give_up_s=GIVE_UP_FACTOR * min(times.values(), default=float("inf")))
            _verdicts[key] = {"choice": min(times, key=times.get),
                              "times_ms": {n: round(t * 1e3, 4) for n, t in times.items()}}
            _write_store(key)
    times = _verdicts[key]["times_ms"]
    return min((n for n in times if among is None or n in among), key=times.get)


def times_ms(key: tuple) -> dict[str, float]:
    """The measured ms per candidate behind `fastest(key, ...)`'s verdict (after it ran)."""
    return dict(_verdicts[key]["times_ms"])


def verdicts() -> dict[str, dict]:
    """Every verdict of this process, keyed by its shape class as text (for logs and `engine.options`)."""
    return {_text(key): dict(value) for key, value in _verdicts.items()}


def _text(key: tuple) -> str:
    return " x ".join(map(str, key))


def store_path() -> Path:
    """This machine's verdict file: `WAYPOINT_KERNEL_CACHE`, else in inductor's cache folder."""
    if os.environ.get(STORE_ENV):
        return Path(os.environ[STORE_ENV])
    from torch._inductor.runtime.cache_dir_utils import cache_dir
    machine = [platform.machine(), platform.processor(), cpu_model(), torch.backends.cpu.get_cpu_capability(),
               torch.__version__]
    digest = hashlib.sha256(json.dumps(machine).encode()).hexdigest()[:16]
    return Path(cache_dir()) / "waypoint-kernels" / f"{digest}.json"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ("" where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def _read_store() -> dict[str, dict]:
    global _stored
    if _stored is None:
        try:
            _stored = json.loads(store_path().read_text())
        except (OSError, ValueError):   # none yet, or unreadable: measure (and write a new one)
            _stored = {}
    return _stored


def _write_store(key: tuple) -> None:
    store = _read_store()
    store[_text(key)] = _verdicts[key]
    path = store_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(store, indent=1, sort_keys=True))
        partial.replace(path)
    except OSError as err:   # a read-only cache folder only costs timing again next start
        LOG.warning("[worldengine] kernel choices not saved to %s: %s", path, err)


def forget() -> None:
    """Drop every cached verdict, in memory and this process's view of the disk store (tests that swap
    a kernel: what they measure next is timed again, and written to the store)."""
    global _stored
    _verdicts.clear()
    _stored = {}
    onednn_is_real_kernel.cache_clear()
