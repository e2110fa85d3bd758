"""docs/benchmarks.md is shared by several scripts: each owns one section between markers and rewrites only it."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Every number here is written by a script in `benchmarks/`; each section names the command that reproduces it.
These machines are shared and noisy, so comparisons are ratios measured side by side in one run.
"""


def machine_line() -> str:
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=BENCHMARKS_MD.parent.parent,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return (
        f"_{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} × {model}, "
        f"Python {platform.python_version()}, commit {commit or '?'}._"
    )


def write_section(name: str, markdown: str, path: Path = BENCHMARKS_MD) -> Path:
    """Replace (or append) the section `name` of docs/benchmarks.md, leaving the others untouched."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text() if path.is_file() else HEADER
    block = f"{begin}\n{markdown.strip()}\n\n{machine_line()}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
