"""Rewrite one generated section of a hand-written document, and nothing else.

A section lives between two marker lines, e.g. `<!-- perf:begin -->` / `<!-- perf:end -->`. `replace_section`
swaps what lies between them and keeps every byte outside them; if the markers are missing it appends them (with
the body) at the end of the text, after adding a newline only if the text does not end with one. Used by
benchmarks/perf.py (docs/benchmarks.md) and benchmarks/hpa_report.py (docs/operations.md), whose files other
people write around the markers. (benchmarks/report.py keeps the older `<!-- BEGIN name -->` sections.)
"""

from __future__ import annotations

import os
from pathlib import Path


class MarkerError(ValueError):
    """The markers are present but unusable (one without the other, twice, or in the wrong order)."""


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def replace_section(text: str, name: str, body: str) -> str:
    """`text` with the section `name` holding `body` (stripped, one newline either side of it)."""
    begin, end = markers(name)
    block_body = "\n" + body.strip("\n") + "\n"
    counts = text.count(begin), text.count(end)
    if counts == (0, 0):
        separator = "" if not text or text.endswith("\n") else "\n"
        gap = "\n" if text.strip() else ""
        return f"{text}{separator}{gap}{begin}{block_body}{end}\n"
    if counts != (1, 1):
        raise MarkerError(f"expected {begin} and {end} once each, found {counts[0]} and {counts[1]}")
    start = text.index(begin) + len(begin)
    stop = text.index(end)
    if stop < start:
        raise MarkerError(f"{end} comes before {begin}")
    return text[:start] + block_body + text[stop:]


def write_section(path: Path, name: str, body: str, title: str | None = None) -> Path:
    """Rewrite the section `name` of `path` in place (atomically). A missing file is created holding `title` (a
    one-line heading) and the section."""
    path = Path(path)
    # bytes in, bytes out: no newline translation, so the rest of the file stays byte-identical
    text = path.read_bytes().decode("utf-8") if path.is_file() else (f"{title}\n" if title else "")
    updated = replace_section(text, name, body)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(updated.encode("utf-8"))
    os.replace(partial, path)
    return path
