"""Toy world version 2 training: a budget that a paused run does not spend, the fine-tuning stages."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tools.toyworld.ckpt import BudgetClock, load_training_state, save_training_state
from tools.toyworld.episodes import random_actions
from tools.toyworld.recipe import motion_weights
from worldengine.ae.toy import ToyTAE, load_toy_ae
from worldengine.quant.select import one_thread

REPO = Path(__file__).resolve().parents[1]
# Busy-waits until its BudgetClock reads 0.5 s, then prints "<wall seconds> <budget seconds>".
_CHILD = """
import sys, time
from tools.toyworld.ckpt import BudgetClock
clock, wall = BudgetClock("cpu"), time.monotonic()
print("ready", flush=True)
while clock.elapsed() < 0.5:
    pass
print(time.monotonic() - wall, clock.elapsed(), flush=True)
"""


def test_budget_clock_does_not_count_a_sigstop_pause():
    child = subprocess.Popen([sys.executable, "-c", _CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.1)
        child.send_signal(signal.SIGSTOP)
        time.sleep(1.0)
        child.send_signal(signal.SIGCONT)
        wall, budget = map(float, child.stdout.readline().split())
    finally:
        child.kill()
        child.wait()
    assert wall >= 1.4 and 0.5 <= budget < 0.6         # the 1 s stop is in the wall time, not in the budget


def test_budget_clock_resumes_from_the_seconds_already_trained():
    clock = BudgetClock("cpu", already=120.0)
    time.sleep(0.2)                                     # no CPU used: no budget spent
    assert 120.0 <= clock.elapsed() < 120.1
    wall = BudgetClock("cuda", already=5.0)             # on a GPU the wall clock is the budget
    time.sleep(0.2)
    assert wall.elapsed() >= 5.19


def test_motion_weights_favour_what_moved():
    x0 = torch.zeros(1, 3, 2, 2, 2)
    x0[0, 1:, 0, 0, 0] = 1.0                            # one element changes between latents 0 and 1
    weights = motion_weights(x0, 2.0)
    assert weights.shape == x0.shape
    assert torch.all(weights[:, 0] == 1)                # the first latent has no predecessor
    assert weights[0, 1, 0, 0, 0] > 1 and weights[0, 1, 1, 1, 1] == 1 and weights[0, 2, 0, 0, 0] == 1
    torch.testing.assert_close(motion_weights(x0, 0.0), torch.ones_like(x0))


def test_walk_policy_walks_more_and_turns_less():
    mixed_keys, mixed_mouse = random_actions(np.random.default_rng(3), 4000)
    walk_keys, walk_mouse = random_actions(np.random.default_rng(3), 4000, "walk")
    assert (walk_mouse != 0).mean() < 0.5 * (mixed_mouse != 0).mean()
    assert walk_keys[:, 2].mean() > 2 * mixed_keys[:, 2].mean()      # S (walk back)
    assert walk_keys[:, 0].mean() > 0.3                              # W


def test_decoder_only_fine_tune_keeps_the_encoder_and_scale(tmp_path):
    from tools.toyworld import train_ae

    with one_thread():
        torch.manual_seed(0)
        start = ToyTAE()
        start.scale.fill_(0.7)
        save_training_state(tmp_path / "ae_state.safetensors", start,
                            torch.optim.AdamW(start.parameters()), {"steps": 5, "seconds": 999.0})
        train_ae.main(["--work", str(tmp_path), "--minutes", "0.03", "--episodes", "1", "--latents", "2",
                       "--batch", "1", "--decoder-only", "--edge-weight", "0.5"])
    tuned = load_toy_ae(tmp_path / "toy_ae.safetensors")
    after = tuned.state_dict()
    assert load_training_state(tmp_path / "ae_state.safetensors", ToyTAE(), None)["steps"] == 5   # untouched
    reference = ToyTAE()
    load_training_state(tmp_path / "ae_state.safetensors", reference, None)
    before = {k: v.half().float() for k, v in reference.state_dict().items()}             # fp16 on disk
    assert torch.equal(after["scale"], reference.scale) and float(reference.scale) == float(torch.tensor(0.7))
    assert all(torch.equal(after[k], before[k]) for k in after if k.startswith("encoder."))
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("dec_"))
    assert load_training_state(tmp_path / "ae_decoder_state.safetensors", ToyTAE(), None)["steps"] >= 1
