"""Resumable training state as safetensors: model weights, AdamW moments, and progress counters.

File layout: tensors `model.<name>`, `adam_m.<name>`, `adam_v.<name>` (fp32) and metadata with the
integer/float counters in `info` (e.g. steps, seconds of training so far) as strings. Written to a
`.partial` file first and renamed, so an interrupted run never leaves a half-written checkpoint.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict) -> None:
    from safetensors.torch import save_file

    names = {id(p): n for n, p in model.named_parameters()}
    tensors = {f"model.{k}": v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    adam_step = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p)
            if state:
                tensors[f"adam_m.{names[id(p)]}"] = state["exp_avg"].detach().float().cpu().contiguous()
                tensors[f"adam_v.{names[id(p)]}"] = state["exp_avg_sq"].detach().float().cpu().contiguous()
                adam_step = int(state["step"])
    partial = Path(path).with_suffix(".partial")
    save_file(tensors, str(partial), metadata={"info": json.dumps(info), "adam_step": str(adam_step)})
    partial.replace(path)


def load_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict:
    """Load weights (and moments, when `optimizer` is given) in place; returns the saved `info`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open is no dict)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if optimizer is not None and f"adam_m.{next(iter(dict(model.named_parameters())))}" in tensors:
        device = next(model.parameters()).device
        step = torch.tensor(float(metadata["adam_step"]))
        for name, p in model.named_parameters():
            if f"adam_m.{name}" in tensors:
                optimizer.state[p] = {"step": step.clone(), "exp_avg": tensors[f"adam_m.{name}"].to(device),
                                      "exp_avg_sq": tensors[f"adam_v.{name}"].to(device)}
    return json.loads(metadata["info"])


class BudgetClock:
    """Seconds of training that count against a stage's budget, continuing from `already` (a resume).

    On the CPU this is the process's CPU time (`time.process_time`, all its threads), not the wall
    clock: a run paused with SIGSTOP, or starved by other jobs on a shared machine, spends no budget,
    so a budget buys the same number of steps however busy the machine is. On a GPU the host's CPU
    time does not measure the work, so the wall clock (`time.monotonic`) is used there.
    """

    def __init__(self, device: str, already: float = 0.0):
        self._now = time.process_time if str(device).startswith("cpu") else time.monotonic
        self._begin = self._now() - float(already)

    def elapsed(self) -> float:
        return self._now() - self._begin
