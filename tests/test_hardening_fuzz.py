"""Fuzz (issue 15): random and mutated config fields, control tracks and live messages. Every input
gives a valid result or a WaypointError, nothing else. Seeded: a failure names its case seed, and
WAYPOINT_FUZZ_SEED=<seed> WAYPOINT_FUZZ_CASES=1 replays exactly that case. Bounded by a case count
(WAYPOINT_FUZZ_CASES, default 2000 per target) and a time cap (WAYPOINT_FUZZ_SECONDS, default 10 s)."""
from __future__ import annotations

import json
import math
import os
import random
import time

import pytest

from worldengine.config import WaypointConfig, config_from_dict
from worldengine.controls import TRACK_FORMAT, ControlTrack
from worldengine.errors import WaypointError
from worldengine.live.protocol import parse_message
from worldengine.synthetic import tiny_config_dict

BASE_SEED = int(os.environ.get("WAYPOINT_FUZZ_SEED", "1515"))
CASES = int(os.environ.get("WAYPOINT_FUZZ_CASES", "2000"))
SECONDS = float(os.environ.get("WAYPOINT_FUZZ_SECONDS", "10"))
KEYS = ["type", "seq", "t", "buttons", "mouse", "scroll", "frame", "on", "preview", "format", "quality",
        "max_width", "max_height", "max_in_flight", "max_fps", "seconds", "keys", "frames", "seed", "x", ""]


def _scalar(rng: random.Random):
    return rng.choice([
        0, 1, -1, 2, 7, 255, 256, 1024, 10 ** 6, 10 ** 9, 2 ** 63, 2 ** 64, 2 ** 70, -(10 ** 30), 10 ** 4000,
        0.5, -2.5, 1e4, 1e308, 3.5e38, float("nan"), float("inf"), -float("inf"), 1e-320,
        True, False, None, "", "x", "87", "W", "no", "1e3", "waypoint-1.5", TRACK_FORMAT, "\udcff", "²", "[{",
        rng.randint(-10 ** 6, 10 ** 6), rng.uniform(-1e6, 1e6),
    ])


def _value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 3 or roll < 0.6:
        return _scalar(rng)
    if roll < 0.8:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(KEYS): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _text(rng: random.Random, value) -> str:
    """The value as JSON text, sometimes damaged or nested deep."""
    try:
        text = json.dumps(value)
    except (ValueError, TypeError):
        text = repr(value)
    roll = rng.random()
    if roll < 0.1:
        return text[: rng.randint(0, len(text))]
    if roll < 0.15:
        depth = rng.choice([10, 100, 5000])
        return "[" * depth + text + "]" * depth
    if roll < 0.2:
        return text + rng.choice(["}", "]", ",", "\x00", " x"])
    return text


def _fuzz(name: str, check):
    """Run `check(rng)` over seeded cases; anything but a WaypointError fails, naming the case seed."""
    deadline, ran = time.monotonic() + SECONDS, 0
    for case in range(CASES):
        if time.monotonic() > deadline:
            break
        seed = BASE_SEED if CASES == 1 else BASE_SEED * 1_000_003 + case
        try:
            check(random.Random(f"{name}:{seed}"))
        except WaypointError:
            pass
        except Exception as err:   # noqa: BLE001 - the point: nothing else may escape
            pytest.fail(f"{name}: case seed {seed} raised {type(err).__name__}: {str(err)[:300]} "
                        f"(replay: WAYPOINT_FUZZ_SEED={seed} WAYPOINT_FUZZ_CASES=1)")
        ran += 1
    print(json.dumps({"target": name, "cases": ran, "base_seed": BASE_SEED}))
    assert ran >= min(CASES, 20)


def test_fuzz_config_fields():
    base = tiny_config_dict()

    def check(rng):
        values = dict(base)
        for _ in range(rng.randint(1, 3)):
            field = rng.choice(sorted(base) + ["n_frames", "moe_top_k", "moe_n_experts", "prompt_embedding_dim",
                                               "prompt_conditioning_period", "rope_theta", "rope_nyquist_frac"])
            values[field] = _value(rng)
        if rng.random() < 0.1:
            values.pop(rng.choice(sorted(values)))
        config = config_from_dict(values, source="fuzz.yaml")
        assert isinstance(config, WaypointConfig)
        assert config.kv_cache_elements() > 0 and all(math.isfinite(s) for s in config.scheduler_sigmas)

    _fuzz("config", check)


def test_fuzz_control_tracks():
    def frame(rng):
        good = {"keys": [rng.choice(["W", "A", "LMB", "Space"])], "mouse": [rng.uniform(-1, 1), 0.0], "scroll": 0}
        for _ in range(rng.randint(0, 2)):
            good[rng.choice(["keys", "buttons", "mouse", "scroll", "x"])] = _value(rng)
        return good

    def check(rng):
        roll = rng.random()
        if roll < 0.3:
            data = _value(rng)
        else:
            data = {"format": TRACK_FORMAT, "seed": rng.choice([0, 7, _scalar(rng)]),
                    "frames": [frame(rng) for _ in range(rng.randint(0, 5))]}
            if rng.random() < 0.2:
                data[rng.choice(KEYS)] = _value(rng)
        track = ControlTrack.from_json(_text(rng, data) if rng.random() < 0.5 else data)
        assert isinstance(track, ControlTrack) and 0 <= track.seed < 2 ** 64
        for controls in track.frames:
            assert all(math.isfinite(m) and abs(m) <= 1e4 for m in controls.mouse)
            assert all(isinstance(b, int) and 0 <= b < 256 for b in controls.buttons)

    _fuzz("track", check)


def test_fuzz_live_messages():
    kinds = ["control", "ack", "play", "pause", "reset", "snapshot", "record", "settings", "ping", "export"]

    def check(rng):
        if rng.random() < 0.2:
            message = _value(rng)
        else:
            message = {"type": rng.choice(kinds + [_scalar(rng)])}
            for _ in range(rng.randint(0, 4)):
                message[rng.choice(KEYS[1:])] = _value(rng)
        text = _text(rng, message)
        parsed = parse_message(text if rng.random() < 0.95 else text.encode("utf-8", "surrogatepass"))
        assert parsed["type"] in kinds
        json.dumps(parsed, default=sorted)   # plain values only

    _fuzz("live", check)
