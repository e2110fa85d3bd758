"""A studio's audience metrics as a CSV manifest: one row per past trailer, checked row by row before anything runs.

    path,views,likes,shares,watch_pct[,appeal_children,appeal_teens,appeal_young_adults,appeal_adults]
    cut-a.mp4,120000,5400,800,61.5,,,,
    cut-b.mp4,98000,3100,350,48.0,0.7,0.5,0.4,0.3

`path` names a clip: a file uploaded with the manifest (by file name), a clip already analysed in History (by the
name it was analysed under), or for `facecast train engagement` a file relative to the manifest. How the metrics
become the model's targets is `targets` (training/studio_engagement.py documents the same mapping).

`check_manifest` reads the whole file and reports every bad row with what is wrong (unknown clip, missing metric,
duplicate, out-of-range value), so a user fixes the CSV once, not once per error; nothing runs until it is clean.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facecast.vocab import AUDIENCE_GROUPS

REQUIRED_COLUMNS = ("path", "views", "likes", "shares", "watch_pct")
APPEAL_COLUMNS = tuple(f"appeal_{group}" for group in AUDIENCE_GROUPS)
OPTIONAL_COLUMNS = APPEAL_COLUMNS
MAX_ROWS = 10_000
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")

TEMPLATE_CSV = (
    ",".join((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))
    + "\n"
    + "teaser-cut-a.mp4,120000,5400,800,61.5,,,,\n"
    + "teaser-cut-b.mp4,98000,3100,350,48.0,0.7,0.5,0.4,0.3\n"
)
COLUMN_HELP = {
    "path": "the clip: an uploaded file's name, or the name of a clip already analysed in History",
    "views": "how many people started watching (a positive number)",
    "likes": "likes or positive reactions (0 to views)",
    "shares": "shares or reposts (0 to views)",
    "watch_pct": "the share of the clip an average viewer watched, in percent (0 to 100)",
    "appeal_<group>": "optional survey score of each audience group in [0, 1]: " + ", ".join(AUDIENCE_GROUPS),
}


@dataclass
class ManifestCheck:
    """The manifest's rows (clean or not) and every problem found; `ok` only when there is none."""

    frame: pd.DataFrame
    problems: list[str] = field(default_factory=list)
    sources: list[object] = field(default_factory=list)  # per row: what `resolve` returned for its path

    @property
    def ok(self) -> bool:
        return not self.problems


def check_manifest(data: bytes | str | Path, resolve: Callable[[str], object | None]) -> ManifestCheck:
    """Read and check a manifest. `resolve(path)` finds a row's clip (None: unknown); rows are numbered as a
    spreadsheet shows them (the header is row 1)."""
    try:
        if isinstance(data, Path):
            frame = pd.read_csv(data, dtype=str, keep_default_na=False)
        else:
            text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
            frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        return ManifestCheck(pd.DataFrame(), [f"the file cannot be read as CSV ({error})"])
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        return ManifestCheck(
            frame, [f"missing column(s) {', '.join(missing)}; the header must name {', '.join(REQUIRED_COLUMNS)}"]
        )
    if frame.empty:
        return ManifestCheck(frame, ["no clips listed"])
    if len(frame) > MAX_ROWS:
        return ManifestCheck(frame, [f"{len(frame)} rows; at most {MAX_ROWS} clips per calibration"])
    problems: list[str] = []
    unknown = [c for c in frame.columns if c not in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (see the template for the columns)")
    numbers = {c: pd.to_numeric(frame[c].str.strip(), errors="coerce") for c in REQUIRED_COLUMNS[1:]}
    appeals = {c: pd.to_numeric(frame[c].str.strip(), errors="coerce") for c in APPEAL_COLUMNS if c in frame.columns}
    first_row_of: dict[str, int] = {}
    sources: list[object] = []
    for index in range(len(frame)):
        row = index + 2
        path = frame["path"].iloc[index].strip()
        found = resolve(path) if path else None
        sources.append(found)
        if not path:
            problems.append(f"row {row}: no clip named in `path`")
        elif path in first_row_of:
            problems.append(f"row {row}: {path} is listed twice (rows {first_row_of[path]} and {row})")
        elif found is None:
            problems.append(f"row {row}: unknown clip {path}: upload it with the manifest or analyse it first")
        first_row_of.setdefault(path, row)
        for column, values in numbers.items():
            raw = frame[column].iloc[index].strip()
            value = values.iloc[index]
            if not raw:
                problems.append(f"row {row}: {column} is missing")
            elif not np.isfinite(value):
                problems.append(f"row {row}: {column} is not a number ({raw!r})")
        views, likes, shares, watch = (numbers[c].iloc[index] for c in ("views", "likes", "shares", "watch_pct"))
        if np.isfinite(views) and views <= 0:
            problems.append(f"row {row}: views must be positive, not {views:g}")
        for column, value in (("likes", likes), ("shares", shares)):
            if np.isfinite(value) and (value < 0 or (np.isfinite(views) and views > 0 and value > views)):
                problems.append(f"row {row}: {column} must be between 0 and views ({views:g}), not {value:g}")
        if np.isfinite(watch) and not 0 <= watch <= 100:
            problems.append(f"row {row}: watch_pct is a percentage in [0, 100], not {watch:g}")
        for column, values in appeals.items():
            raw = frame[column].iloc[index].strip()
            value = values.iloc[index]
            if raw and not (np.isfinite(value) and 0 <= value <= 1):
                problems.append(f"row {row}: {column} must be a survey score in [0, 1], not {raw!r}")
    clean = frame.copy()
    clean["path"] = clean["path"].str.strip()
    for column, values in {**numbers, **appeals}.items():
        clean[column] = values
    return ManifestCheck(clean, problems, sources)


def targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The documented mapping from audience metrics to the engagement model's targets, all in [0, 1]:

    * engagement probability = watch_pct / 100 (the share of the clip an average viewer watched);
    * resonance = the like rate (likes / views) as a percentile rank within the manifest;
    * shareability = the share rate (shares / views) as a percentile rank within the manifest;
    * appeal per audience group = its `appeal_<group>` survey score when given, else the engagement probability;
    * class low / medium / high = the manifest's tertiles of watch_pct (a studio compares cuts against its own
      catalogue, not an absolute scale)."""
    engagement = (frame["watch_pct"].to_numpy(np.float64) / 100).clip(0, 1)
    views = frame["views"].to_numpy(np.float64)
    appeal = np.stack(
        [
            pd.to_numeric(frame[column], errors="coerce").fillna(pd.Series(engagement, index=frame.index)).to_numpy()
            if column in frame.columns
            else engagement
            for column in APPEAL_COLUMNS
        ],
        1,
    ).clip(0, 1)
    tertiles = np.quantile(engagement, [1 / 3, 2 / 3])
    return {
        "engagement": engagement.astype(np.float32),
        "resonance": _percentile_rank(frame["likes"].to_numpy(np.float64) / views).astype(np.float32),
        "shareability": _percentile_rank(frame["shares"].to_numpy(np.float64) / views).astype(np.float32),
        "appeal": appeal.astype(np.float32),
        "engagement_class": np.digitize(engagement, tertiles, right=False).astype(np.int64),
    }


def _percentile_rank(values: np.ndarray) -> np.ndarray:
    ranks = pd.Series(values).rank(method="average").to_numpy()
    return (ranks - 0.5) / len(values)


def safe_file_name(name: str) -> str:
    """An uploaded file's name as it may be saved (no folders, no odd characters); a row may name it either way."""
    base = _SAFE_NAME.sub("_", Path(name).name).strip(" .")
    return base or "clip"


def file_resolver(folder: Path) -> Callable[[str], Path | None]:
    """For `facecast train engagement`: a row's path is a file relative to the manifest's folder."""

    def resolve(path: str) -> Path | None:
        candidate = (folder / path).resolve()
        return candidate if candidate.is_file() else None

    return resolve
