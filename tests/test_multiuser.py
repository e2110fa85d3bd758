"""Many users on one store (benchmarks/multiuser.py, a few seconds): 8 app sessions and 2 CLI processes write one
DuckDB file at once through a real Triton; nothing a writer stored may be missing, nobody sees a lock error."""

from __future__ import annotations

import pytest

from benchmarks.multiuser import run_multiuser
from tests.clipmaker import emoji_over_photo

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_app_sessions_and_cli_processes_write_one_store_at_once(full_server, tmp_path) -> None:
    clip = emoji_over_photo(tmp_path / "clip.mp4", [("grin", "twemoji")], seconds=2.0, fps=8)
    result = run_multiuser(tmp_path / "shared.duckdb", [full_server.triton_url], clip, tmp_path, seconds=15.0)
    print(result.as_dict())
    assert result.errors == [], result.errors[:5]
    assert result.lost == {"analyses": 0, "items": 0, "feedback": 0}
    assert result.index_agrees
    sessions = [w for w in result.writers if w.name.startswith("session")]
    clis = [w for w in result.writers if w.name.startswith("cli")]
    assert all(w.operations >= 3 for w in sessions), [(w.name, w.operations) for w in sessions]
    assert all(len(w.analyses) >= 1 and len(w.items) >= 2 for w in clis), [(w.name, w.operations) for w in clis]
