"""The typed rows the store reads and writes, checked on construction so a bad row fails before any transaction
starts (and stores nothing), and the Arrow/numpy conversions every table shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

# Frozen into the schema (migrations/003_library.sql): a new size needs a new migration.
EMBEDDING_DIM = 512
N_RANKING_TERMS = 5  # facecast.library.ranking.TERMS
# Timestamps are UTC explicitly: a bare current_timestamp::TIMESTAMP follows the session's TimeZone setting.
UTC_NOW = "(current_timestamp AT TIME ZONE 'UTC')"


def float32_vector(value: npt.ArrayLike, length: int, name: str) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float32).reshape(-1)
    if vector.shape != (length,):
        raise ValueError(f"{name} must have {length} values, got {vector.size}")
    if not np.all(np.isfinite(vector)):
        raise ValueError(f"{name} must be finite, got {vector.tolist()}")
    return vector


# eq=False: the generated __eq__ would compare arrays with ==, which is ambiguous for numpy arrays.
@dataclass(frozen=True, eq=False)
class ImageClassification:
    """One classified image: a row of ``images_classified``. ``id``/``created_at`` are set by the store."""

    content_sha256: str
    source_path: str
    model_name: str
    model_version: str
    emotion: str
    emotion_probs: np.ndarray  # float32 (7,), order of EMOTIONS
    style: str
    style_probs: np.ndarray  # float32 (4,), order of STYLES
    action_params: np.ndarray  # float32 (4,), order of ACTION_PARAMS
    id: int | None = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # Validate here, before any transaction starts, so a bad row fails with a clear message and stores nothing.
        if self.emotion not in EMOTIONS:
            raise ValueError(f"emotion {self.emotion!r} is not one of {EMOTIONS}")
        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r} is not one of {STYLES}")
        for name in ("content_sha256", "source_path", "model_name", "model_version"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        # frozen dataclass: object.__setattr__ is the sanctioned way to normalise fields in __post_init__.
        object.__setattr__(self, "emotion_probs", float32_vector(self.emotion_probs, len(EMOTIONS), "emotion_probs"))
        object.__setattr__(self, "style_probs", float32_vector(self.style_probs, len(STYLES), "style_probs"))
        object.__setattr__(
            self, "action_params", float32_vector(self.action_params, len(ACTION_PARAMS), "action_params")
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageClassification):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
            if f.compare
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: not hashable


CLASSIFICATION_COLUMNS = (
    "id",
    "content_sha256",
    "source_path",
    "model_name",
    "model_version",
    "emotion",
    "emotion_probs",
    "style",
    "style_probs",
    "action_params",
    "created_at",
)


def as_classification(row: ImageClassification | Mapping[str, Any]) -> ImageClassification:
    return row if isinstance(row, ImageClassification) else ImageClassification(**row)


@dataclass(frozen=True, eq=False)
class LibraryItem:
    """One expression of the library: a row of ``library_items`` (``id``/timestamps are set by the store)."""

    content_sha256: str
    source: str
    source_path: str
    emotion: str
    style: str
    emotion_probs: np.ndarray  # float32 (7,)
    style_probs: np.ndarray  # float32 (4,)
    embedding: np.ndarray  # float32 (EMBEDDING_DIM,), L2-normalised
    thumbnail: bytes  # PNG
    labelled: bool = False
    character: str | None = None
    intensity: float | None = None
    params: np.ndarray | None = None  # float32 (4,) or None when unknown

    def __post_init__(self) -> None:
        if self.emotion not in EMOTIONS:
            raise ValueError(f"emotion {self.emotion!r} is not one of {EMOTIONS}")
        if self.style not in STYLES:
            raise ValueError(f"style {self.style!r} is not one of {STYLES}")
        if not isinstance(self.thumbnail, (bytes, bytearray)) or not self.thumbnail:
            raise ValueError("thumbnail must be non-empty PNG bytes")
        object.__setattr__(self, "emotion_probs", float32_vector(self.emotion_probs, len(EMOTIONS), "emotion_probs"))
        object.__setattr__(self, "style_probs", float32_vector(self.style_probs, len(STYLES), "style_probs"))
        object.__setattr__(self, "embedding", float32_vector(self.embedding, EMBEDDING_DIM, "embedding"))
        if self.params is not None:
            object.__setattr__(self, "params", float32_vector(self.params, len(ACTION_PARAMS), "params"))
        if self.intensity is not None and not 0.0 <= float(self.intensity) <= 1.0:
            raise ValueError(f"intensity must be in [0, 1], got {self.intensity}")

    __hash__ = None  # type: ignore[assignment]


def arrow_matrix(column: pa.ChunkedArray, width: int) -> np.ndarray:
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(-1, width)


@dataclass(frozen=True)
class StoredAnalysis:
    """An analysis as listed in the history: its id, when, and the headline numbers."""

    id: int
    content_sha256: str
    fingerprint: str
    name: str
    created_at: datetime
    report_json: str
    analysed_by: str | None = None


ANALYSIS_COLUMNS = "id, content_sha256, fingerprint, name, created_at, report_json, analysed_by"


def vector_column(vectors: Sequence[np.ndarray], length: int) -> pa.FixedSizeListArray:
    flat = np.concatenate(vectors).astype(np.float32, copy=False)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), length)


def classifications_to_arrow(ids: Sequence[int], rows: Sequence[ImageClassification]) -> pa.Table:
    # Arrow, not executemany: DuckDB spends about a millisecond per executed statement, an Arrow scan inserts
    # thousands of rows in a few milliseconds, and FixedSizeList<float32> maps onto FLOAT[N] without conversion.
    return pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "content_sha256": pa.array([row.content_sha256 for row in rows], type=pa.string()),
            "source_path": pa.array([row.source_path for row in rows], type=pa.string()),
            "model_name": pa.array([row.model_name for row in rows], type=pa.string()),
            "model_version": pa.array([row.model_version for row in rows], type=pa.string()),
            "emotion": pa.array([row.emotion for row in rows], type=pa.string()),
            "emotion_probs": vector_column([row.emotion_probs for row in rows], len(EMOTIONS)),
            "style": pa.array([row.style for row in rows], type=pa.string()),
            "style_probs": vector_column([row.style_probs for row in rows], len(STYLES)),
            "action_params": vector_column([row.action_params for row in rows], len(ACTION_PARAMS)),
        }
    )


@dataclass(frozen=True)
class ClipRow:
    """A clip's content, as first seen (one ``clips`` row per distinct file content)."""

    content_sha256: str
    name: str
    size_bytes: int
    duration_s: float
    width: int
    height: int
    fps: float
    codec: str


@dataclass(frozen=True)
class TrackRow:
    """One character tracked through a clip (a ``clip_tracks`` row)."""

    track_id: int
    first_s: float
    last_s: float
    observations: int
    screen_time_s: float
    dominant_emotion: str
    style: str


@dataclass(frozen=True, eq=False)
class FaceRow:
    """One face seen at one sampled frame (a ``clip_faces`` row)."""

    track_id: int
    t_s: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in [0, 1] of the upright frame
    detection_score: float
    emotion: str
    emotion_probs: np.ndarray  # float32 (7,)
    style_probs: np.ndarray  # float32 (4,)
    action_params: np.ndarray  # float32 (4,)


@dataclass(frozen=True)
class ScoreRow:
    value: float
    low: float
    high: float


@dataclass(frozen=True)
class AnalysisRecord:
    """Everything one clip analysis stores, in one transaction: the clip, the headline numbers the history lists,
    the report document (JSON) the CLI prints and the app shows, and the tracks and faces that make it queryable.
    facecast.clips.pipeline.Analysis.record() builds it; the store never needs to know the report's classes."""

    clip: ClipRow
    fingerprint: str  # sampling settings + model versions: the same clip with the same ones is not redone
    name: str  # the file name this analysis was asked for under
    faces_found: bool
    engagement: ScoreRow | None  # None when no faces were found
    engagement_class: str | None
    resonance: float | None
    shareability: float | None
    report_json: str
    tracks: Sequence[TrackRow] = ()
    faces: Sequence[FaceRow] = ()
    analysed_by: str | None = None  # a signed-in user, the local app user, or cli:<login>
