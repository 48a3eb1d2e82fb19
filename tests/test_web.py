"""The live-play widget's pure JS modules (web/live_input.js, web/live_socket.js) under node's test
runner; the widget itself is exercised in a real browser by test_browser.py. Skips without node."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_web_modules_with_node():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install -y nodejs), so the JS unit tests cannot run")
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip().lstrip("v").split(".")[0])
    if major < 20:
        pytest.skip(f"node {major} is too old for --experimental-default-type (needs 20+)")
    # The web files are ES modules without a package.json saying so: tell node.
    flags = ["--experimental-default-type=module"] if major < 22 else []
    result = subprocess.run([node, *flags, "--test", str(REPO / "tests" / "js" / "live_web.test.mjs")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout and "# pass 5" in result.stdout, result.stdout[-2000:]
