"""`python -m worldengine bench-kernels`: ours and torchao's linears timed on one machine, same results."""
import json

import pytest

from worldengine.cli import main as cli_main
from worldengine.cli import bench_kernels


def test_every_kernel_computes_the_same_linear(monkeypatch):
    monkeypatch.setattr(bench_kernels, "TARGET_SECONDS", 0.01)
    rows = bench_kernels.measure("tiny", __import__("torch").float32, compile=False)
    kernels = {row["kernel"] for row in rows}
    assert {"float", "ours int8", "ours int8 _int_mm", "ours int8wo"} <= kernels
    for row in rows:
        bound = 0.0 if row["kernel"] == "float" else 2e-2      # int8 rounding, per-channel scales
        assert row["rel_error"] <= bound, row
        assert row["ms"] > 0 and row["gops"] > 0


def test_cli_writes_table_and_json(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torchao")
    monkeypatch.setattr(bench_kernels, "TARGET_SECONDS", 0.01)
    out = tmp_path / "kernels.json"
    assert cli_main(["bench-kernels", "--preset", "tiny", "--dtype", "float32", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "torchao int8 dyn-act" in printed and "| M×K×N |" in printed
    assert len(json.loads(out.read_text())) == 4 * 6      # 4 block GEMMs x 6 kernels
