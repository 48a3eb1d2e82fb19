"""The benchmark CLI runs on the tiny preset and writes complete JSON (no timing assertions)."""
import json
import math

import pytest

from worldengine.cli import bench
from worldengine.errors import WaypointError
from worldengine.synthetic.presets import PRESETS, preset_config, preset_dict
from worldengine.cli.roofline import frame_flops, pass_flops

RUN_FIELDS = {
    "dtype", "quant", "compile", "device", "frames", "latent_fps", "rendered_fps", "frames_per_latent",
    "ms_per_frame_p50", "ms_per_frame_p99", "ms_per_frame_min", "ms_per_frame_mean", "passes_per_frame",
    "tokens_per_frame", "token_passes_per_s", "gflop_per_frame", "achieved_gflops", "roofline_kind",
    "roofline_fraction", "int8_roofline_fraction", "build_s", "first_pass_s", "memory_kind",
    "peak_memory_mb", "memory_delta_mb", "cpu_ms_per_frame_p50", "roofline_fraction_cpu_time",
}


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_bench_tiny_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny", "--frames", "2", "--warmup", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["format"] == "waypoint-bench/1" and report["preset"] == "tiny"
    assert set(report["runs"]) == {"run"}
    run = report["runs"]["run"]
    assert RUN_FIELDS <= set(run)
    assert run["frames"] == 2 and run["dtype"] == "float32" and run["quant"] == "none"
    for key in ("latent_fps", "rendered_fps", "ms_per_frame_p50", "ms_per_frame_p99", "token_passes_per_s",
                "achieved_gflops", "roofline_fraction", "peak_memory_mb"):
        assert _positive(run[key]), (key, run[key])
    assert run["ms_per_frame_min"] <= run["ms_per_frame_p50"] <= run["ms_per_frame_p99"]
    assert run["rendered_fps"] == pytest.approx(4 * run["latent_fps"], rel=1e-2)
    assert run["token_passes_per_s"] == pytest.approx(5 * 128 * run["latent_fps"], rel=1e-2)
    for key in ("fp32_gflops", "bf16_gflops", "int8_gops"):
        assert _positive(report["roofline"][key])
    assert "speedup" not in capsys.readouterr().out


def test_bench_compare_ends_with_speedup(tmp_path, capsys):
    out = tmp_path / "cmp.json"
    argv = ["--preset", "tiny", "--frames", "2", "--warmup", "1", "--compare", "--quant", "int8",
            "--dtype", "bfloat16", "--json", str(out)]
    assert bench.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("speedup ")
    speedup = float(lines[-1].split()[1])
    report = json.loads(out.read_text())
    base, opt = report["runs"]["baseline"], report["runs"]["optimized"]
    assert (base["dtype"], base["quant"], base["compile"]) == ("float32", "none", False)
    assert (opt["dtype"], opt["quant"], opt["compile"]) == ("bfloat16", "int8", False)
    assert opt["roofline_kind"] == "int8"
    assert speedup == pytest.approx(base["ms_per_frame_p50"] / opt["ms_per_frame_p50"], abs=0.01)


def test_compare_without_flags_picks_optimized_defaults():
    args = bench.parse_args(["--compare"])
    assert (args.dtype, args.quant, args.compile) == ("bfloat16", "int8", True)
    args = bench.parse_args(["--compare", "--quant", "int8"])
    assert (args.dtype, args.quant, args.compile) == ("float32", "int8", False)


def test_presets_are_valid_configs():
    import yaml
    from oracles import ORACLES

    oracle = ORACLES / "wp15_tiny" / "config.yaml"
    if oracle.is_file():
        assert preset_dict("tiny") == yaml.safe_load(oracle.read_text())
    sizes = {name: preset_config(name) for name in PRESETS}
    assert sizes["cpu-small"].d_model == 512 and sizes["cpu-small"].tokens_per_frame == 128
    assert [i for i in range(8) if sizes["cpu-small"].is_global_layer(i)] == [3, 7]
    assert sizes["wp15-720p"].tokens_per_frame == 512 and sizes["wp15-360p"].tokens_per_frame == 128
    assert sizes["wp1-small"].prompt_embedding_dim == 2048 and sizes["wp1-small"].frames_per_latent == 1
    preset_dict("tiny")["d_model"] = 1  # a copy: the table itself is untouched
    assert preset_dict("tiny")["d_model"] == 64
    with pytest.raises(WaypointError, match="unknown benchmark preset"):
        preset_dict("huge")


def test_flop_count_matches_hand_count():
    config = preset_config("cpu-small")
    t, d = 128, 512
    linear = 8 * (t * d * 1024 + t * d * d + 2 * t * d * 2048) + 3 * (2 * t * d * d + d * d)
    conv = 2 * t * d * 32 * 4
    # 6 local layers see 16 frames; 2 global layers see 16 buckets + 7/8 of a frame on average.
    attention = 2 * t * 128 * d * (6 * 16 + 2 * (16 + 7 / 8))
    assert pass_flops(config) == pytest.approx(2 * (linear + conv + attention))
    assert frame_flops(config) == pytest.approx(5 * pass_flops(config))


def test_startup_figures_count_the_hitch_around_the_switch_not_the_eager_tail():
    # 100 eager frames of 1.0 s with one 3 s outlier far from the switch, then a 2.5 s frame while the
    # parent loads and checks the compiled step, then compiled frames of 0.5 s: the p99 tail of the eager
    # frames is not a hitch; the frame during the check is.
    from worldengine.cli.startup import SWITCH_LEAD, _switch_window
    durations = [1.0] * 100 + [2.5] + [0.5] * 5
    durations[40] = 3.0
    kinds = [False] * 101 + [True] * 5
    eager_p99 = sorted(durations[:101])[round(0.99 * 100)]
    window = _switch_window(durations, kinds, ready=101, eager_p99=eager_p99)
    assert window == {"switch_frames": SWITCH_LEAD + 5, "switch_over_eager_p99": 0}   # 2.5 s is the p99 itself
    durations[100] = 4.0                                                            # a real stall
    eager_p99 = sorted(durations[:101])[round(0.99 * 100)]
    assert _switch_window(durations, kinds, 101, eager_p99)["switch_over_eager_p99"] == 1
    assert _switch_window(durations, kinds, None, eager_p99)["switch_over_eager_p99"] is None
