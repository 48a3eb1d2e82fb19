"""The README followed as a newcomer would (issue 16): its commands run as written and what it names exists.

Bounded checks (run by default, in this environment): every `python -m worldengine ...` command of its
bash blocks runs as written, offline, in a scratch folder (the main job: a toy-world rollout to a GIF);
every flag it names is in that subcommand's --help; every repo file or folder it names exists; the `hf`
command of the Models block is installed and takes the flags used there.
The slow check follows the "Tests", "two commands" and "Install" blocks literally in a fresh virtual
environment made from a copy of the checkout. The Tests block's own `python -m pytest` (the whole suite)
is what .ci/run runs, after running every other line of these blocks itself (tests/readme_blocks.py).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from readme_blocks import blocks, commands, section_lines

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
# Paths relative to a ComfyUI folder or to the user's machine: not files of this repository.
ELSEWHERE = ("ComfyUI/", "models/waypoint", "output/", "input/", "custom_nodes/", "ae/", "taehv/", "../", "./", "~")
HUB_OWNERS = ("Overworld/", "Overworld-Models/", "google/")


def offline_env(home: Path) -> dict:
    """No network, no weights of this machine's ~/.cache: the newcomer's first run (toy world fallback)."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HOME": str(home), "OMP_NUM_THREADS": "1"}


def worldengine_commands() -> list[list[str]]:
    """Every distinct `python -m worldengine ...` simple command in the README's bash blocks, as words."""
    found = []
    for _, lines in blocks():
        for line in lines:
            if "python -m worldengine" in line:   # (the Install block's URL placeholder is no shell)
                found += [c for c in commands(line) if c[:3] == ["python", "-m", "worldengine"] and c not in found]
    return found


def test_readme_has_the_blocks_ci_follows():
    intro, tests = section_lines("intro"), section_lines("Tests")
    assert any("python -m worldengine rollout" in line for line in intro), intro
    assert "bash .ci/run" in intro and tests[-1].startswith("python -m pytest"), (intro, tests)
    assert any(line.startswith("pip install -e") for line in tests), tests
    with pytest.raises(ValueError, match="no bash block in section 'Nowhere'"):
        section_lines("Nowhere")
    with pytest.raises(ValueError, match="never closed"):
        blocks("## A\n```bash\npip install x\n")


def test_every_worldengine_command_in_the_readme_runs(tmp_path):
    found = worldengine_commands()
    assert found, "the README's bash blocks name no python -m worldengine command"
    for words in found:
        start = time.monotonic()
        result = subprocess.run([sys.executable, *words[1:]], check=False, cwd=tmp_path, env=offline_env(tmp_path),
                                capture_output=True, text=True, timeout=120)
        took = time.monotonic() - start
        assert result.returncode == 0, f"{' '.join(words)} failed:\n{result.stderr[-3000:]}"
        assert took < 60, f"{' '.join(words)} took {took:.0f} s: the README's first run should be quick"
        if "--out" in words:
            out = tmp_path / words[words.index("--out") + 1]
            assert out.is_file() and out.stat().st_size > 1000, f"{out} was not written"
        if words[3] == "rollout" and "--help" not in words:
            assert "toy world" in result.stdout + result.stderr, "the offline fallback was not announced"
        print(f"\n{' '.join(words)}: {took:.1f} s")


def help_text(subcommand: str) -> str:
    result = subprocess.run([sys.executable, "-m", "worldengine", subcommand, "--help"], check=False, cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"`python -m worldengine {subcommand} --help` failed: {result.stderr[-2000:]}"
    return result.stdout


def named_flags() -> dict[str, set[str]]:
    """subcommand -> the flags the README gives it: in its commands, and (rollout) in the Run it prose."""
    flags: dict[str, set[str]] = {}
    for match in re.finditer(r"python -m worldengine\s+([\w-]+)([^`\n]*)", README):
        flags.setdefault(match.group(1), set()).update(re.findall(r"(?<![\w-])--[\w-]+", match.group(2)))
    run_it = README.split("## Run it", 1)[1].split("\n## ", 1)[0].split("In ComfyUI:", 1)[0]
    flags["rollout"].update(re.findall(r"(?<![\w-])--[a-z][\w-]*", run_it))
    return flags


def test_every_cli_flag_the_readme_names_exists():
    flags = named_flags()
    assert {"--frames", "--out", "--fps", "--controls", "--seed-image", "--models-dir"} <= flags["rollout"], flags
    for subcommand, wanted in flags.items():
        text = help_text(subcommand)
        missing = [f for f in sorted(wanted) if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
        assert not missing, f"README names {missing} for `{subcommand}`, which its --help does not list"


def repo_paths() -> set[str]:
    """Repository paths the README names: link targets and path-like words of its code spans and blocks."""
    words = set(re.findall(r"\]\(([^)#\s]+)\)", README))
    code = re.findall(r"`([^`\n]+)`", README) + [line for _, lines in blocks() for line in lines]
    for span in code:
        words.update(w.strip("\"'") for w in span.split())
    paths = set()
    for word in words:
        if "://" in word or "<" in word or "=" in word or word.startswith(ELSEWHERE + HUB_OWNERS):
            continue
        if re.fullmatch(r"test_\w+\.py", word):
            paths.add(f"tests/{word}")
        elif re.fullmatch(r"\w+\.json", word):
            paths.add(f"workflows/{word}")
        elif "/" in word and (REPO / word.split("/")[0]).exists():
            paths.add(word.rstrip("/"))
    return paths


def test_every_repo_path_the_readme_names_exists():
    paths = repo_paths()
    assert {"docs/memory.md", "workflows/rollout_60_frames.jpg", ".ci/run", "tests/workflow_builder.py",
            "models/toyworld", "tests/test_engine_parity.py", "workflows/img2img_loop.json"} <= paths, paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"the README names paths this repository does not have: {missing}"


def test_the_hf_download_commands_parse():
    lines = [c for line in section_lines("Models") for c in commands(line)]
    assert lines and all(c[:2] == ["hf", "download"] for c in lines), lines
    hf = Path(sys.executable).with_name("hf")
    assert hf.is_file(), f"{hf} is missing: the README's download commands need huggingface_hub's `hf`"
    result = subprocess.run([str(hf), "download", "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    for words in lines:
        flags = [w for w in words if w.startswith("--")]
        assert flags and all(f in result.stdout for f in flags), (words, result.stdout[-1500:])
        repo_id, local_dir = words[2], words[words.index("--local-dir") + 1]
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", repo_id), repo_id
        assert local_dir.startswith("ComfyUI/models/waypoint/"), local_dir


def test_the_readme_names_slow_checks_that_exist():
    assert "python -m pytest -m slow" in README
    marked = [p.name for p in (REPO / "tests").glob("test_*.py") if "@pytest.mark.slow" in p.read_text()]
    assert {"test_readme.py", "test_rollout_soak.py"} <= set(marked), marked


def run_literally(line: str, cwd: Path, env: dict, log: list) -> None:
    start = time.monotonic()
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", line], check=False, cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=3600)
    log.append(f"{time.monotonic() - start:7.1f} s  {line}")
    assert result.returncode == 0, f"README line failed in a fresh venv: {line}\n{result.stdout[-2000:]}" \
                                   f"\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_readme_followed_in_a_fresh_venv(tmp_path):
    checkout = tmp_path / "checkout"   # what a clone holds: tracked and new unignored files
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, checkout / name)
    subprocess.run(["python3", "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    env = offline_env(tmp_path / "home")
    env.pop("PYTHONPATH", None)
    env.update(VIRTUAL_ENV=str(tmp_path / "venv"), PATH=f"{tmp_path / 'venv' / 'bin'}:{os.environ['PATH']}")
    env["HF_HUB_OFFLINE"] = "0"   # pip reaches its index; the rollout still has no real weights to find
    log: list[str] = []
    comfy = tmp_path / "comfy"   # a ComfyUI folder, as the Install block expects (one shell: it cd's)
    (comfy / "ComfyUI" / "custom_nodes").mkdir(parents=True)
    install = "\n".join(section_lines("Install")).replace("<this repository's URL>", str(REPO))
    run_literally(install, comfy, env, log)
    assert (comfy / "ComfyUI" / "custom_nodes" / "comfyui-waypoint" / "__init__.py").is_file()
    for line in section_lines("Tests"):
        if not line.startswith(("apt-get", "python -m pytest")):   # system packages; the suite is CI's
            run_literally(line, checkout, env, log)
    for line in section_lines("intro"):
        if line != "bash .ci/run":   # .ci/run is CI itself (it runs these lines and the whole suite)
            run_literally(line, checkout, env, log)
    assert (checkout / "out" / "rollout.gif").stat().st_size > 1000
    run_literally("hf download --help >/dev/null && python -m pytest -q -p no:cacheprovider tests/test_readme.py",
                  checkout, env, log)
    print("\n" + "\n".join(log))
