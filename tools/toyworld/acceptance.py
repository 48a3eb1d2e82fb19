"""The toy world issue's acceptance bars, checked on a tools/toyworld/evaluate.py report.

`reference_next_frame` measures the version-1 model (one 128x64 frame per latent) on its own game's
held-out maps with the same horizons, so a version-2 report carries both worlds' figures from one
run. Different games have different difficulty, so besides absolute PSNR the bars also compare the
gain over each game's own 'repeat the last frame' baseline (dB), the fairer of the two.

`verdict(report)` -> {bar name: {"pass": bool, ...the figures it compared}}; a bar whose section
was skipped is absent.
"""
from __future__ import annotations

from pathlib import Path

RESPONSE_BARS = ("turn_left", "turn_right", "walk_forward", "walk_back")
RESPONSE_TOLERANCE = 0.25          # model px/frame within +-25 % of the game's
SPREAD_FRACTION = 0.8              # last-100-frame spread >= 80 % of the game's


def reference_next_frame(folder: Path, episodes: int) -> dict:
    """Version-1 model folder -> metrics.next_frame_errors (PSNR/MSE at 1, 16, 128 frames ahead)."""
    from tools.toyworld import metrics

    if metrics.is_version_2(folder):
        raise ValueError(f"--reference {folder} is a version-2 model; it must be the version-1 toy world")
    engine, ae = metrics.load_toy(folder)
    return metrics.next_frame_errors(engine, ae, episodes)


def _next_frame_bars(report: dict) -> dict:
    out = {}
    ref = report.get("reference_next_frame")
    for horizon, table in report.get("next_frame", {}).items():
        model, repeat = table["model"]["psnr"], table["repeat_last"]["psnr"]
        out[f"psnr_above_repeat_{horizon}"] = {"pass": model > repeat, "model": model, "repeat_last": repeat}
        if ref is not None and horizon in ref:
            v1, v1_repeat = ref[horizon]["model"]["psnr"], ref[horizon]["repeat_last"]["psnr"]
            out[f"psnr_above_v1_{horizon}"] = {"pass": model > v1, "model": model, "v1": v1}
            out[f"gain_above_v1_{horizon}"] = {"pass": model - repeat > v1 - v1_repeat,
                                               "model_gain_db": model - repeat, "v1_gain_db": v1 - v1_repeat}
    return out


def _response_bars(report: dict) -> dict:
    out = {}
    for name in RESPONSE_BARS:
        if name in report.get("response", {}):
            model, game = (report["response"][name][k] for k in ("model_px_per_frame", "game_px_per_frame"))
            ratio = model / game if game else float("nan")
            out[f"response_{name}"] = {"pass": abs(ratio - 1) <= RESPONSE_TOLERANCE, "ratio": ratio,
                                       "model": model, "game": game}
    return out


def _drift_bars(report: dict) -> dict:
    if "drift" not in report:
        return {}
    drift = report["drift"]
    model = drift["model_last"]["spread"]
    # the game's spread over the same last 100 frames is the literal bar; over the whole run, the typical one
    game_last, game_all = drift["game_last"]["spread"], drift["game_all"]["spread"]
    return {"spread_last100_vs_game_last100": {"pass": model >= SPREAD_FRACTION * game_last,
                                                "fraction": model / game_last, "model": model, "game": game_last},
            "spread_last100_vs_game_all": {"pass": model >= SPREAD_FRACTION * game_all,
                                           "fraction": model / game_all, "model": model, "game": game_all}}


def verdict(report: dict) -> dict:
    out = {**_next_frame_bars(report), **_response_bars(report), **_drift_bars(report)}
    if "continuation" in report:
        same, other = (report["continuation"][k] for k in ("psnr_frame30_same_world", "psnr_frame30_other_world"))
        out["continues_its_scene_frame30"] = {"pass": same > other, "same_world": same, "other_world": other}
    return out
