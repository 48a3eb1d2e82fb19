"""A long CLI rollout keeps its memory flat: `python -m worldengine rollout` streams each decoded chunk to
the output, and the session's KV cache is bounded by the model's attention window, so the peak RSS of a
3000-step rollout (slow) or a 400-step one (the bounded version that runs by default) is that of a short
one. Runs the README's command on the shipped toy world (128x64 frames, 1 per step), offline, in a
fresh process each, and reads that process's own peak RSS (os.wait4).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FRAME_BYTES = 128 * 64 * 3   # one toy-world frame as uint8 RGB: what holding the frames would cost


def rollout_peak_mib(folder: Path, steps: int) -> float:
    """Peak RSS (MiB) of a fresh `python -m worldengine rollout --frames steps` to a GIF in `folder`."""
    out = folder / f"soak_{steps}.gif"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HOME": str(folder)}   # no real weights
    process = subprocess.Popen([sys.executable, "-m", "worldengine", "rollout", "--frames", str(steps),
                                "--out", str(out)], cwd=folder, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, output[-3000:]
    assert f"wrote {steps + 1} frames" in output, output[-2000:]
    return usage.ru_maxrss / 1024


def check_flat(tmp_path: Path, short: int, long: int) -> None:
    peak_short, peak_long = rollout_peak_mib(tmp_path, short), rollout_peak_mib(tmp_path, long)
    held = (long - short) * FRAME_BYTES / 2 ** 20
    print(f"\nrollout peak RSS: {peak_short:.1f} MiB for {short} steps, {peak_long:.1f} MiB for {long} "
          f"(the {long - short} more frames are {held:.1f} MiB if held as uint8)")
    assert peak_long - peak_short < held / 2, (peak_short, peak_long, held)


def test_rollout_memory_stays_flat(tmp_path):
    check_flat(tmp_path, 40, 400)


@pytest.mark.slow
def test_3000_step_rollout_memory_stays_flat(tmp_path):
    check_flat(tmp_path, 300, 3000)
