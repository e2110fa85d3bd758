"""Getting faces into the library: image files and folders, CSV manifests (training/data/manifest.py's format:
path, emotion, style, intensity, mouth, eye, brow, cheek, character, source) or an optional labels CSV in the same
format, and the key moments of analysed clips (:func:`add_from_analysis`). Without labels, emotion and style come
from the image_embedder's own heads. Unreadable files are reported by name and the rest ingested; content already in
the library is reported as a duplicate, never stored twice. Rows and vectors go to the store in chunks, each chunk in
one transaction, and the vector index follows (a kill between chunks leaves committed chunks and an index that the
next open reconciles with them)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image

from facecast.clients.embedders import Embedders
from facecast.library.errors import LabelsError, LibraryError
from facecast.media.images import (
    MIN_FACE_SIDE,
    ImageDecodeError,
    fit_square,
    image_files,
    load_rgb,
    read_image_bytes,
)
from facecast.store import EMBEDDING_DIM, LibraryItem, Store
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

if TYPE_CHECKING:
    from facecast.library import Library

FACE_SIZE = 64  # the image_embedder's input (its Triton dims)
# A manifest lists a studio's face pictures, a few thousand rows; both limits are checked before pandas parses it.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024  # ~100,000 rows of typical paths and labels
MAX_MANIFEST_ROWS = 100_000
STORE_CHUNK = 1024  # faces embedded and committed together


def read_labels(path: str | Path) -> pd.DataFrame:
    """A labels CSV / manifest: columns path (required), emotion, style, intensity, mouth, eye, brow, cheek,
    character, source (optional). Paths are relative to the CSV's folder. Returns a frame indexed by absolute path."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: labels file not found")
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise LabelsError(
            f"{path}: the file is too large ({size / 1e6:,.1f} MB; manifests of at most "
            f"{MAX_MANIFEST_BYTES / 1e6:,.0f} MB are accepted): split it into several"
        )
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=MAX_MANIFEST_ROWS + 1)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelsError(f"{path}: not a readable CSV file ({str(error).splitlines()[0]})") from None
    if len(frame) > MAX_MANIFEST_ROWS:
        raise LabelsError(f"{path}: more than {MAX_MANIFEST_ROWS:,} rows; split it into manifests of at most that many")
    if "path" not in frame.columns:
        raise LabelsError(
            f"{path}: needs a 'path' column (and optionally emotion, style, character, intensity, "
            f"{', '.join(ACTION_PARAMS)})"
        )
    for column in ("emotion", "style", "character", "intensity", "source", *ACTION_PARAMS):
        if column not in frame.columns:
            frame[column] = ""
    frame = frame.apply(lambda column: column.str.strip())
    frame["emotion"] = frame["emotion"].str.lower()
    frame["style"] = frame["style"].str.lower()
    for row, (emotion, style) in enumerate(zip(frame["emotion"], frame["style"]), start=2):
        if emotion and emotion not in EMOTIONS:
            raise LabelsError(f"{path}: row {row}: emotion {emotion!r} is not one of {', '.join(EMOTIONS)}")
        if style and style not in STYLES:
            raise LabelsError(f"{path}: row {row}: style {style!r} is not one of {', '.join(STYLES)}")
    for column in ("intensity", *ACTION_PARAMS):
        values = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
        bad = frame.index[(frame[column] != "") & (values.isna() | (values < 0) | (values > 1))]
        if len(bad):
            raise LabelsError(
                f"{path}: row {bad[0] + 2}: {column}={frame.at[bad[0], column]!r} is not a number in [0, 1]"
            )
        frame[column] = values.astype("float32")
    base = path.parent.resolve()
    frame.index = [str((Path(p) if Path(p).is_absolute() else base / p).resolve()) for p in frame["path"]]
    return frame[~frame.index.duplicated(keep="last")]


@dataclass
class IngestReport:
    added: list[tuple[int, str]] = field(default_factory=list)  # (id, source path)
    duplicates: list[tuple[str, int | str]] = field(default_factory=list)  # (path, existing id or earlier path)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": [{"id": i, "path": p} for i, p in self.added],
            "duplicates": [{"path": p, "existing": e} for p, e in self.duplicates],
            "failed": [{"path": p, "error": e} for p, e in self.failed],
            "notes": self.notes,
        }


@dataclass
class _Pending:
    """A decoded face waiting to be embedded and stored."""

    source_path: str
    digest: str
    face: np.ndarray
    source: str
    labels: dict[str, Any]


def _png(face: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _labels_for(row: pd.Series | None) -> dict[str, Any]:
    if row is None:
        return {}
    labels: dict[str, Any] = {}
    for column in ("emotion", "style", "character", "source"):
        if row.get(column):
            labels[column] = row[column]
    if pd.notna(row.get("intensity")):
        labels["intensity"] = float(row["intensity"])
    params = [row.get(name) for name in ACTION_PARAMS]
    if all(pd.notna(value) for value in params):
        labels["params"] = np.asarray(params, np.float32)
    return labels


def add_images(
    library: Library,
    paths: Iterable[str | Path],
    labels: str | Path | pd.DataFrame | None = None,
    source: str = "folder",
) -> IngestReport:
    """Ingest image files and folders into `library`; `labels` (a CSV path or read_labels frame) supplies emotion,
    style, etc."""
    table = read_labels(labels) if isinstance(labels, (str, Path)) else labels
    by_name: dict[str, list[str]] = {}
    if table is not None:
        for key in table.index:
            by_name.setdefault(Path(key).name, []).append(key)
    report = IngestReport()
    pending: list[_Pending] = []
    for path in image_files(paths, recursive=True):
        name = str(path)
        try:
            data = read_image_bytes(path)
        except ImageDecodeError as error:  # missing, a folder, too large (never read), unreadable
            report.failed.append((name, str(error).removeprefix(f"{name}: ")))
            continue
        row = None
        if table is not None:
            key = str(path.resolve())
            if key not in table.index and len(by_name.get(path.name, [])) == 1:
                key = by_name[path.name][0]  # labels written for the same files in another folder
            row = table.loc[key] if key in table.index else None
        try:
            face = fit_square(load_rgb(data, min_side=MIN_FACE_SIDE), FACE_SIZE)
        except ImageDecodeError as error:
            report.failed.append((name, str(error).replace("uploaded image: ", "", 1)))
            continue
        labels_row = _labels_for(row)
        pending.append(
            _Pending(name, hashlib.sha256(data).hexdigest(), face, labels_row.pop("source", source), labels_row)
        )
    store_pending(library, pending, report)
    return report


def add_manifest(library: Library, manifest: str | Path) -> IngestReport:
    """Ingest every image a manifest lists, with its labels."""
    table = read_labels(manifest)
    return add_images(library, [Path(p) for p in table.index], labels=table, source="manifest")


def store_pending(library: Library, pending: list[_Pending], report: IngestReport) -> None:
    """Embed, store and index the faces, a chunk at a time (each chunk one transaction, then the index follows).
    Content that another session or process stored meanwhile is reported as a duplicate."""
    fresh = _without_duplicates(library.store, pending, report)
    if not fresh:
        return
    embedders = library.need_embedders()
    for start in range(0, len(fresh), STORE_CHUNK):
        chunk = fresh[start : start + STORE_CHUNK]
        vectors, emotion_probs, style_probs = embedders.embed_faces(np.stack([p.face for p in chunk]))
        items = [_library_item(p, v, e, s) for p, v, e, s in zip(chunk, vectors, emotion_probs, style_probs)]
        with library.index_lock:
            stored, ids, existing = library.store.library.add_new(items)
            if stored:
                library.index.add(ids, np.stack([item.embedding for item in stored]))
        by_hash = {p.digest: p for p in chunk}
        report.added += [(i, by_hash[item.content_sha256].source_path) for i, item in zip(ids, stored)]
        report.duplicates += [(by_hash[digest].source_path, item_id) for digest, item_id in existing.items()]
    with library.index_lock:
        library.index.save(library.index_path, library.sidecar_path)
        library.mark_current()


def add_items(library: Library, items: Sequence[LibraryItem]) -> list[int]:
    """Store ready-made items (embedding already computed) and index them; for bulk loads and benchmarks."""
    with library.index_lock:
        ids = library.store.library.add(items)
        vectors = np.stack([item.embedding for item in items]) if items else np.zeros((0, EMBEDDING_DIM))
        library.index.add(ids, vectors)
        library.index.save(library.index_path, library.sidecar_path)
        library.mark_current()
    return ids


def _without_duplicates(store: Store, pending: list[_Pending], report: IngestReport) -> list[_Pending]:
    """The pending faces whose content is neither in the library nor earlier in the batch; the rest are reported."""
    existing = store.library.ids_by_hash([p.digest for p in pending])
    seen: dict[str, str] = {}
    fresh = []
    for item in pending:
        if item.digest in existing:
            report.duplicates.append((item.source_path, existing[item.digest]))
        elif item.digest in seen:
            report.duplicates.append((item.source_path, seen[item.digest]))
        else:
            seen[item.digest] = item.source_path
            fresh.append(item)
    return fresh


def _library_item(
    pending: _Pending, vector: np.ndarray, emotion_probs: np.ndarray, style_probs: np.ndarray
) -> LibraryItem:
    labels = pending.labels
    emotion = labels.get("emotion") or EMOTIONS[int(np.argmax(emotion_probs))]
    style = labels.get("style") or STYLES[int(np.argmax(style_probs))]
    if labels.get("emotion"):
        emotion_probs = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index(emotion)]
    if labels.get("style"):
        style_probs = np.eye(len(STYLES), dtype=np.float32)[STYLES.index(style)]
    return LibraryItem(
        content_sha256=pending.digest,
        source=pending.source,
        source_path=pending.source_path,
        emotion=emotion,
        style=style,
        emotion_probs=emotion_probs,
        style_probs=style_probs,
        embedding=vector,
        thumbnail=_png(pending.face),
        labelled=bool(labels.get("emotion")),
        character=labels.get("character"),
        intensity=labels.get("intensity"),
        params=labels.get("params"),
    )


def add_from_analysis(
    store: Store, analysis_id: int, library: Library | None = None, embedders: Embedders | None = None
) -> IngestReport:
    """Ingest the key-moment faces of stored clip analysis `analysis_id` (its report's thumbnails).

    Each key moment becomes an item: its thumbnail is the face crop the analysis encoded; its emotion is the one the
    analysis reported, its style the track's, its character "<clip name>#<track id>", its action parameters those
    of the clip_faces row of that track at that time. Without `library` the rows go to the store only and the index
    catches up when a library next opens the store (the check at open adds them)."""
    stored = store.analyses.get(int(analysis_id))
    if stored is None:
        raise LibraryError(f"there is no clip analysis {analysis_id} in {store.path}")
    report = json.loads(stored.report_json)
    moments = [m for m in report.get("key_moments", []) if m.get("thumbnail_png_b64")]
    result = IngestReport()
    if not moments:
        result.notes.append(f"analysis {analysis_id} ({stored.name}) has no key-moment faces to add")
        return result
    styles = {c["track_id"]: c["style"] for c in report.get("characters", [])}
    faces = store.analyses.faces(int(analysis_id))
    pending = []
    for moment in moments:
        label = f"{stored.name}@{moment['t_s']:.2f}s#track{moment['track_id']}"
        data = base64.b64decode(moment["thumbnail_png_b64"])
        try:
            face = fit_square(load_rgb(data), FACE_SIZE)
        except ImageDecodeError as error:
            result.failed.append((label, str(error)))
            continue
        labels: dict[str, Any] = {"character": f"{stored.name}#{moment['track_id']}"}
        if moment.get("emotion") in EMOTIONS:
            labels["emotion"] = moment["emotion"]
        if styles.get(moment["track_id"]) in STYLES:
            labels["style"] = styles[moment["track_id"]]
        track = faces[faces["track_id"] == moment["track_id"]]
        if len(track):
            nearest = track.iloc[int(np.argmin(np.abs(track["t_s"].to_numpy() - moment["t_s"])))]
            labels["params"] = np.asarray(nearest["action_params"], np.float32)
        pending.append(_Pending(label, hashlib.sha256(data).hexdigest(), face, f"analysis:{analysis_id}", labels))
    if library is not None:
        store_pending(library, pending, result)
        return result
    # rows only: embed here, the index is reconciled at the next open
    if embedders is None:
        raise LibraryError("adding expressions from an analysis needs the served embedders (or an open Library)")
    fresh = _without_duplicates(store, pending, result)
    if fresh:
        vectors, emotion_probs, style_probs = embedders.embed_faces(np.stack([p.face for p in fresh]))
        ids = store.library.add(
            [_library_item(p, v, e, s) for p, v, e, s in zip(fresh, vectors, emotion_probs, style_probs)]
        )
        result.added += [(i, p.source_path) for i, p in zip(ids, fresh)]
        result.notes.append(
            "stored without updating the vector index: it is brought up to date when the library next opens"
        )
    return result
