"""Replay an oracle-format rollout (`waypoint-rollout-oracle/1` inputs file) on an engine."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from worldengine.controls import Controls
from worldengine.errors import WaypointError

ORACLE_FORMAT = "waypoint-rollout-oracle/1"


def read_rollout_inputs(path: str | Path) -> tuple[dict, dict]:
    """(tensors, metadata) of an inputs file, with controls parsed into Controls lists."""
    from safetensors import safe_open

    from worldengine.checkpoint import read_safetensors

    path = Path(path)
    tensors = read_safetensors(path)
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    if metadata.get("format") != ORACLE_FORMAT:
        raise WaypointError(f"{path}: format {metadata.get('format')!r} is not {ORACLE_FORMAT!r}")
    for name in ("seed_latents", "noise"):
        if name not in tensors:
            raise WaypointError(f"{path}: missing tensor {name!r}")
    try:
        metadata["seed_controls"] = [Controls.from_json(c) for c in json.loads(metadata.get("seed_controls", "[]"))]
        metadata["controls"] = [Controls.from_json(c) for c in json.loads(metadata.get("controls", "[]"))]
    except (json.JSONDecodeError, WaypointError) as err:
        raise WaypointError(f"{path}: bad controls metadata ({err})") from None
    if len(metadata["controls"]) != tensors["noise"].shape[0]:
        raise WaypointError(f"{path}: {len(metadata['controls'])} controls for {tensors['noise'].shape[0]} noise frames")
    if len(metadata["seed_controls"]) not in (0, tensors["seed_latents"].shape[0]):
        raise WaypointError(f"{path}: seed_controls do not match seed_latents")
    return tensors, metadata


def replay(engine, tensors: dict, metadata: dict, trace_first: list | None = None,
           roundtrip_from: int | None = None) -> dict[str, torch.Tensor]:
    """Run the rollout protocol. Returns {"latents": [N,C,H,W]} (+ "roundtrip_latents" if asked)."""
    session = engine.new_session()
    if "prompt_emb" in tensors:
        session.set_prompt(tensors["prompt_emb"])
    seeds = tensors["seed_latents"]
    seed_controls = metadata["seed_controls"] or [None] * seeds.shape[0]
    for latent, controls in zip(seeds, seed_controls):
        session.append_latent(latent, controls)
    latents, snapshot = [], None
    for i, (noise, controls) in enumerate(zip(tensors["noise"], metadata["controls"])):
        if i == roundtrip_from:
            snapshot = session.snapshot()
        latents.append(session.step(controls, noise=noise, trace=trace_first if i == 0 else None))
    out = {"latents": torch.stack(latents)}
    if snapshot is not None:
        session.restore(snapshot)
        again = [session.step(c, noise=n) for n, c in zip(tensors["noise"][roundtrip_from:],
                                                           metadata["controls"][roundtrip_from:])]
        out["roundtrip_latents"] = torch.stack(again)
    return out
