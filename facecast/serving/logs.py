"""Reading a tritonserver log: follow it while the server starts, and pick out why a start failed."""

from __future__ import annotations

import re
from pathlib import Path

from facecast.serving.errors import TritonStartError


class LogFollower:
    """Reads complete lines appended to a log file since the last call (like `tail -f`, without a thread)."""

    def __init__(self, path: Path, *, start_at: int = 0):
        self.path = Path(path)
        self._offset = start_at
        self._partial = b""

    @property
    def position(self) -> int:
        """Bytes consumed as complete lines: a new follower started here misses and repeats nothing."""
        return self._offset - len(self._partial)

    def new_lines(self, *, final: bool = False) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        # The last piece has no newline yet: keep it for the next call, unless the writer is gone (final).
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = b""
        return [line.decode("utf-8", "replace").rstrip("\r") for line in lines]


# A Triton log line: "E1122 13:02:32.278877 3824 model_lifecycle.cc:642] "failed to load 'x' version 1: ...""
_FAILED_LOAD = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*?)\"?$")
_SERVER_ERROR_MARKERS = ("failed to load '", "failed to start", "error: ", "Address already in use", "UNAVAILABLE")
# Errors every CPU-only start prints; they are not why a start failed.
_HARMLESS = ("CudaDriverHelper", "CUDA driver", "cuda_memory_manager", "pinned_memory_manager", "dcgm", "NVML")


def _model_table_failures(lines: list[str]) -> list[str]:
    """UNAVAILABLE rows of the "| Model | Version | Status |" table, with their continuation rows
    (a multi-line reason continues in rows whose model cell is empty)."""
    rows: list[str] = []
    in_failed_row = False
    for line in lines:
        if not line.startswith("|"):
            in_failed_row = False
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and "UNAVAILABLE" in cells[2]:
            rows.append(line.rstrip())
            in_failed_row = True
        elif in_failed_row and cells and cells[0] == "":
            rows.append(line.rstrip())
        else:
            in_failed_row = False
    return rows


def extract_server_errors(log_text: str) -> tuple[list[str], list[str]]:
    """(server error lines worth showing, one-line reasons for a headline) from a tritonserver log."""
    lines = log_text.splitlines()
    reasons: list[str] = []
    picked: list[str] = []
    for line in lines:
        if line.startswith(("|", "+", "#")) or any(h in line for h in _HARMLESS):
            continue
        match = _FAILED_LOAD.search(line)
        if match:
            reason = match.group("reason").split("\\n")[0].strip()
            reasons.append(f"model '{match.group('model')}' version {match.group('version')} failed to load: {reason}")
            picked.append(line)
        elif any(marker in line for marker in _SERVER_ERROR_MARKERS):
            picked.append(line)
            if "failed to start" in line:
                reasons.append(line.split("] ", 1)[-1].strip().strip('"').strip())
    picked.extend(_model_table_failures(lines))
    if not reasons:
        # Nothing we recognise: the last error lines ("E..." or "error: ...") are the best explanation.
        errors = [line for line in lines if line.startswith(("E", "error")) and not any(h in line for h in _HARMLESS)]
        if errors:
            reasons.append(errors[-1].split("] ", 1)[-1].strip().strip('"'))
            if errors[-1] not in picked:
                picked.append(errors[-1])
    if not picked:
        picked = [line for line in lines if line.strip() and not line.startswith(("|", "+", "#"))][-15:]
    return picked, reasons


def start_error_from_log(log_path: Path, returncode: int | None) -> TritonStartError:
    """Why a server exited (or never became ready), from its log: the headline and the lines worth showing."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        text = ""
    server_lines, reasons = extract_server_errors(text)
    headline = "; ".join(dict.fromkeys(reasons)) or "tritonserver exited before it was ready"
    if returncode is not None:
        headline = f"tritonserver exited (code {returncode}) before it was ready: {headline}"
    return TritonStartError(headline, log_path=Path(log_path), server_lines=server_lines, returncode=returncode)
