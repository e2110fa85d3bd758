"""The face-image manifest: one CSV format for synthetic stills, licensed emoji and a studio's own images.

A manifest is a CSV file (UTF-8, header row). Paths are relative to the manifest's folder unless absolute.

| column     | required | meaning                                                                        |
|------------|----------|--------------------------------------------------------------------------------|
| path       | yes      | image file (PNG, JPEG, WebP, ...; RGBA is composited on white)                 |
| emotion    | yes      | one of facecast.vocab.EMOTIONS                                                 |
| style      | no       | one of facecast.vocab.STYLES; blank when unknown                               |
| intensity  | no       | emotion intensity in [0, 1]                                                    |
| mouth, eye, brow, cheek | no | action parameters in [0, 1] (facecast.vocab.ACTION_PARAMS)          |
| character  | no       | identity of the character (used to hold whole characters out of training)      |
| source     | no       | where the row comes from: synthetic, twemoji, noto, openmoji, studio, ...      |
| eyes_from  | no       | a varied synthetic still drawn with another style's eyes: that style           |

Blank optional cells mean "unknown": the trainer masks those targets out of the loss instead of guessing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

REQUIRED_COLUMNS = ("path", "emotion")
OPTIONAL_COLUMNS = ("style", "intensity", *ACTION_PARAMS, "character", "source", "eyes_from")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the row and the problem."""


def read_manifest(path: str | Path, *, check_files: bool = True) -> pd.DataFrame:
    """Read and validate a manifest; returns a frame with every column of COLUMNS and absolute paths."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "emotion": str, "style": str, "character": str, "source": str,
                                         "eyes_from": str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: not a readable CSV manifest ({error})") from error
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path}: missing required column(s) {', '.join(missing)}")
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            # object, not float: a text column left out (style, eyes_from...) must still take .str below
            frame[column] = pd.Series(np.nan, index=frame.index, dtype=object)
    frame = frame[list(COLUMNS)].copy()

    frame["emotion"] = frame["emotion"].str.strip().str.lower()
    bad = frame.index[~frame["emotion"].isin(EMOTIONS)]
    if len(bad):
        row = bad[0]
        raise ManifestError(f"{path}: row {row + 2}: emotion {frame.at[row, 'emotion']!r} is not one of {', '.join(EMOTIONS)}")
    for column in ("style", "eyes_from"):
        style = frame[column].str.strip().str.lower()
        bad = frame.index[style.notna() & ~style.isin(STYLES)]
        if len(bad):
            row = bad[0]
            raise ManifestError(f"{path}: row {row + 2}: {column} {style[row]!r} is not one of {', '.join(STYLES)}")
        frame[column] = style
    for column in ("intensity", *ACTION_PARAMS):
        values = pd.to_numeric(frame[column], errors="coerce")
        outside = values.notna() & ((values < 0) | (values > 1))
        if outside.any():
            row = frame.index[outside][0]
            raise ManifestError(f"{path}: row {row + 2}: {column}={values[row]} is outside [0, 1]")
        frame[column] = values.astype("float32")

    base = path.parent.resolve()
    frame["path"] = [str(p if Path(p).is_absolute() else base / p) for p in frame["path"]]
    if check_files:
        absent = [p for p in frame["path"] if not Path(p).is_file()]
        if absent:
            raise ManifestError(f"{path}: {len(absent)} image file(s) missing, first: {absent[0]}")
    return frame


def write_manifest(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write rows (paths made relative to the manifest's folder where possible) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    for column in COLUMNS:
        if column not in out.columns:
            out[column] = np.nan
    base = path.parent.resolve()

    def relative(p: str) -> str:
        try:
            return str(Path(p).resolve().relative_to(base))
        except ValueError:
            return str(p)

    out["path"] = [relative(p) for p in out["path"]]
    tmp = path.with_suffix(path.suffix + ".tmp")
    out[list(COLUMNS)].to_csv(tmp, index=False, float_format="%.4f")
    tmp.replace(path)
    return path
