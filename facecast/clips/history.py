"""The table of past analyses as marketing teams export it: `history_table` (what the History page shows) and
`history_csv` (the same, for a spreadsheet).

Clip names come from whoever uploaded the file, and a spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`
(or a tab / carriage return before one) as a formula: `=HYPERLINK(...)` in a file name would become a live link,
`=cmd|...` a command prompt in old Excel. Every text cell that could be read as one is written with a leading `'`
(OWASP's CSV-injection advice), which spreadsheets show as plain text; numbers are written as numbers.
"""

from __future__ import annotations

import pandas as pd

COLUMNS = {
    "id": "id",
    "name": "name",
    "created_at": "analysed (UTC)",
    "engagement": "engagement",
    "engagement_low": "low",
    "engagement_high": "high",
    "engagement_class": "class",
    "resonance": "resonance",
    "shareability": "shareability",
    "duration_s": "seconds",
    "analysed_by": "by",
    "engagement_version": "model",
}
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def history_table(analyses: pd.DataFrame) -> pd.DataFrame:
    """store.analyses.newest() → the columns people read, with their display names."""
    return analyses[list(COLUMNS)].rename(columns=COLUMNS)


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet would run as a formula gets a leading `'`; anything else is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def spreadsheet_safe_table(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with every text cell made spreadsheet-safe. The History page shows this one too: Streamlit's table
    has its own "download as CSV" button, which writes cells exactly as shown."""
    table = table.copy()
    for column in table.columns:
        if pd.api.types.is_object_dtype(table[column]) or pd.api.types.is_string_dtype(table[column]):
            table[column] = table[column].map(spreadsheet_safe)
    return table


def history_csv(analyses: pd.DataFrame) -> bytes:
    """UTF-8 CSV (with a byte-order mark, so Excel reads accents) of `history_table(analyses)`, formula-safe."""
    table = spreadsheet_safe_table(history_table(analyses))
    return table.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S").encode("utf-8-sig")
