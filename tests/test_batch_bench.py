"""`bench --sessions B` runs both stepping modes on the tiny preset and writes complete figures (no timing
assertions: only that every figure is there, positive and consistent)."""
import json

import pytest

from worldengine.cli import bench
from worldengine.errors import WaypointError

MODE_FIELDS = {"rounds", "aggregate_latent_fps", "per_session_latent_fps", "round_ms_p50", "latency_ms_p50",
               "latency_ms_p99"}


def test_bench_sessions_compares_batched_with_one_by_one(tmp_path, capsys):
    out = tmp_path / "sessions.json"
    argv = ["--preset", "tiny", "--sessions", "3", "--frames", "2", "--warmup", "1", "--threads", "1",
            "--quant", "none", "--json", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert report["format"] == "waypoint-bench-sessions/1" and report["sessions"] == 3
    for mode in ("one_by_one", "batched"):
        figures = report[mode]
        assert MODE_FIELDS <= set(figures) and figures["rounds"] == 2
        assert figures["latency_ms_p50"] <= figures["latency_ms_p99"]
        assert figures["aggregate_latent_fps"] == pytest.approx(3 * figures["per_session_latent_fps"], rel=1e-2)
    assert report["kv_cache_mb_per_session"] > 0 and report["batch_workspace_mb_per_session"] > 0
    assert report["max_abs_diff_batched_vs_one_by_one"] <= 1e-5   # same players, same noise, float32
    ratio = report["batched"]["aggregate_latent_fps"] / report["one_by_one"]["aggregate_latent_fps"]
    assert report["throughput_ratio"] == pytest.approx(ratio, rel=1e-2)
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"throughput ratio {report['throughput_ratio']:.2f}"


def test_bench_sessions_rejects_zero():
    with pytest.raises(WaypointError, match="--sessions must be >= 1, got 0"):
        bench.main(["--preset", "tiny", "--sessions", "0"])
