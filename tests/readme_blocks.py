"""The README's shell commands, as a newcomer would copy them: every fenced ```bash block, named by the
section it sits in ("intro" before the first `## ` heading, else the heading's text, e.g. "Tests").

Used by tests/test_readme.py (which runs and checks them) and by .ci/run (which executes the "intro" and
"Tests" blocks line by line, so CI installs exactly what the README says). Standard library only: .ci/run
calls it with the system Python before any virtual environment exists:

    python3 tests/readme_blocks.py Tests      # prints that section's command lines, one a line
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
OPTIONAL = "# optional"   # a trailing comment that lets CI go on (with a warning) when the line fails


def blocks(text: str | None = None) -> list[tuple[str, list[str]]]:
    """(section, command lines) of every ```bash block, in README order; comment-only lines dropped."""
    text = README.read_text() if text is None else text
    found, section, fence, lines = [], "intro", None, []
    for raw in text.splitlines():
        opened = FENCE.match(raw)
        if fence is None:
            if raw.startswith("## "):
                section = raw[3:].strip()
            elif opened:
                fence, lines = opened.group(1), []
            continue
        if raw.strip() == "```":
            if fence in ("bash", "sh", "shell"):
                found.append((section, lines))
            fence = None
        elif raw.strip() and not raw.lstrip().startswith("#"):
            lines.append(raw.rstrip())
    if fence is not None:
        raise ValueError(f"README: a ``` block in section {section!r} is never closed")
    return found


def section_lines(section: str, text: str | None = None) -> list[str]:
    """The command lines of every bash block in `section`; a ValueError naming it when there are none."""
    lines = [line for name, block in blocks(text) for line in block if name == section]
    if not lines:
        names = sorted({name for name, _ in blocks(text)})
        raise ValueError(f"README has no bash block in section {section!r} (sections with one: {names})")
    return lines


def words(line: str) -> list[str]:
    """A command line split as the shell would (quotes removed, the trailing comment dropped)."""
    return shlex.split(line, comments=True)


def commands(line: str) -> list[list[str]]:
    """The simple commands of a line joined with && (each as words)."""
    return [words(part) for part in line.split("&&")]


def is_optional(line: str) -> bool:
    return OPTIONAL in line


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python3 tests/readme_blocks.py SECTION   (e.g. intro, Tests)")
    try:
        print("\n".join(section_lines(sys.argv[1])))
    except ValueError as err:
        sys.exit(str(err))
