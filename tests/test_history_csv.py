"""The History export (facecast/clips/history.py): names a spreadsheet would run as formulas are written as text."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pandas as pd

from facecast.clips.history import COLUMNS, history_csv, spreadsheet_safe


def _analyses(names: list[str]) -> pd.DataFrame:
    rows = []
    for index, name in enumerate(names, start=1):
        row = dict.fromkeys(COLUMNS)
        row.update(id=index, name=name, created_at=datetime(2026, 12, 5, 10, index), engagement=0.5, analysed_by="ana")
        rows.append(row)
    return pd.DataFrame(rows)


def test_formula_names_become_text_and_everything_else_is_kept():
    names = ['=HYPERLINK("http://evil.example","x").mp4', "+1.mp4", "-2.mp4", "@SUM(A1).mp4", "\t=1.mp4", "cut 3.mp4"]
    data = history_csv(_analyses(names))
    assert data.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 only with the mark
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert [row["name"] for row in rows] == ["'" + name for name in names[:-1]] + ["cut 3.mp4"]
    assert rows[0]["engagement"] == "0.5" and rows[0]["by"] == "ana"
    assert rows[0]["analysed (UTC)"] == "2026-12-05 10:01:00"


def test_only_text_is_touched():
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(None) is None
    assert spreadsheet_safe("a=b") == "a=b"
