"""The expression library: ingest faces, keep them in DuckDB with their 512-d embeddings, search them in two stages.

* **Items** live in ``library_items`` (facecast.store, migration 3): one row per distinct image content (SHA-256),
  with emotion, style, character, intensity, action parameters, the distributions the ranking compares, the
  image_embedder's vector and a PNG thumbnail of the 64 px face the embedder saw.
* **Ingest** takes image files and folders, CSV manifests (training/data/manifest.py's format: path, emotion, style,
  intensity, mouth, eye, brow, cheek, character, source) or an optional labels CSV in the same format, and the key
  moments of analysed clips (:func:`add_from_analysis`). Without labels, emotion and style come from the
  image_embedder's own heads. Unreadable files are reported by name and the rest ingested; content already in the
  library is reported as a duplicate, never stored twice.
* **The vector index** (facecast.vector_index) sits beside the database and is checked against it when the library
  opens; repairs are reported in :attr:`Library.notes`.
* **Search** (:meth:`Library.search`): the query (text, image, emotion, style, or a mix) becomes one vector through
  the served query_fuser; HNSW proposes :data:`CANDIDATES` items; DuckDB applies the filters to those candidates and
  returns what the ranking needs; facecast.ranking re-ranks them with the profile's weights and preference. When the
  filters leave fewer than the asked number, the search runs exactly over every matching item in DuckDB instead,
  so a selective filter never silently drops matches.

All SQL takes values as parameters (facecast.store); nothing a user types is pasted into a statement.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from facecast import feedback as feedback_module
from facecast.clients.embedders import Embedders
from facecast.media.images import ImageDecodeError, fit_square, load_rgb
from facecast.ranking import DEFAULT_WEIGHTS, TERMS, RankingContext, explain, phi_matrix, rerank
from facecast.store import EMBEDDING_DIM, LibraryItem, Store, open_store
from facecast.vector_index import VectorIndex, index_paths, open_index
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

FACE_SIZE = 64  # the image_embedder's input (its Triton dims)
CANDIDATES = 200  # first stage: approximate neighbours handed to the re-rank
MAX_TOP = 500
MAX_QUERY_CHARS = 1000  # the text model reads 32 tokens; longer input is cut here (and said so) before tokenising
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
QUERY_TYPES = ("text", "image", "emotion", "style", "mixed")

PROTOTYPE_TEMPERATURE = 0.05
PROTOTYPE_MARGIN = 0.2


class LibraryError(ValueError):
    """A library request that cannot be done as asked; the message says why in one sentence."""


class QueryError(LibraryError):
    """A search query that cannot be run (empty, unknown emotion or style, unreadable query image...)."""


class LabelsError(LibraryError):
    """A labels CSV / manifest that cannot be used (the message names the file, row and problem)."""


# --------------------------------------------------------------------------------------------------------------------
# Models (the served embedders)
# --------------------------------------------------------------------------------------------------------------------


def _text_view(similarities: np.ndarray) -> np.ndarray | None:
    """The distribution a text asks for over emotions (or styles), or None when it names none of them.

    Measured on the served text_embedder: a text naming an emotion/style is ≥ 0.2 closer to that prototype than
    to the runner-up, one that names none ("a surprised face" for styles, "a face" for emotions) is within 0.15;
    a softmax over a text that names nothing would invent a preference."""
    ordered = np.sort(similarities)
    if ordered[-1] - ordered[-2] < PROTOTYPE_MARGIN:
        return None
    return _softmax(similarities / PROTOTYPE_TEMPERATURE)


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max())
    return shifted / shifted.sum()


# --------------------------------------------------------------------------------------------------------------------
# Labels (manifest format)
# --------------------------------------------------------------------------------------------------------------------


def read_labels(path: str | Path) -> pd.DataFrame:
    """A labels CSV / manifest: columns path (required), emotion, style, intensity, mouth, eye, brow, cheek,
    character, source (optional). Paths are relative to the CSV's folder. Returns a frame indexed by absolute path."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: labels file not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelsError(f"{path}: not a readable CSV file ({str(error).splitlines()[0]})") from None
    if "path" not in frame.columns:
        raise LabelsError(f"{path}: needs a 'path' column (and optionally emotion, style, character, intensity, "
                          f"{', '.join(ACTION_PARAMS)})")
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
            raise LabelsError(f"{path}: row {bad[0] + 2}: {column}={frame.at[bad[0], column]!r} is not a number in "
                              "[0, 1]")
        frame[column] = values.astype("float32")
    base = path.parent.resolve()
    frame.index = [str((Path(p) if Path(p).is_absolute() else base / p).resolve()) for p in frame["path"]]
    return frame[~frame.index.duplicated(keep="last")]


# --------------------------------------------------------------------------------------------------------------------
# Ingest results
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class IngestReport:
    added: list[tuple[int, str]] = field(default_factory=list)  # (id, source path)
    duplicates: list[tuple[str, int | str]] = field(default_factory=list)  # (path, existing id or earlier path)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": [{"id": i, "path": p} for i, p in self.added],
                "duplicates": [{"path": p, "existing": e} for p, e in self.duplicates],
                "failed": [{"path": p, "error": e} for p, e in self.failed], "notes": self.notes}


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


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders become their image files (recursively, sorted)."""
    expanded = []
    for path in map(Path, paths):
        if path.is_dir():
            expanded += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            expanded.append(path)
    return expanded


# --------------------------------------------------------------------------------------------------------------------
# Search results
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """What to search for: any of text, a face image (path, bytes or uint8 array), an emotion, a style."""

    text: str | None = None
    image: str | Path | bytes | np.ndarray | None = None
    emotion: str | None = None
    style: str | None = None

    @property
    def kind(self) -> str:
        given = [name for name in ("text", "image", "emotion", "style") if getattr(self, name) is not None]
        return given[0] if len(given) == 1 else "mixed"


@dataclass(frozen=True)
class Filters:
    """Hard constraints, applied as DuckDB predicates: only items with these labels are returned."""

    emotion: str | None = None
    style: str | None = None
    character: str | None = None

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.emotion, self.style, self.character))


@dataclass(frozen=True)
class SearchResult:
    rank: int
    id: int
    score: float  # R(q, e, c)
    similarity: float  # inner product with the query vector (first stage)
    phi: dict[str, float]
    weights: dict[str, float]
    emotion: str
    style: str
    character: str | None
    intensity: float | None
    source: str
    source_path: str

    @property
    def phi_vector(self) -> np.ndarray:
        return np.asarray([self.phi[t] for t in TERMS], np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "id": self.id, "score": round(self.score, 4), "similarity": round(self.similarity, 4),
                "emotion": self.emotion, "style": self.style, "character": self.character,
                "intensity": None if self.intensity is None else round(self.intensity, 3), "source": self.source,
                "source_path": self.source_path,
                "explanation": explain(self.phi_vector, [self.weights[t] for t in TERMS])}


@dataclass
class SearchResults:
    query_id: str
    query_type: str
    results: list[SearchResult]
    profile: str | None
    weights: dict[str, float]
    exact: bool  # the filtered set was searched exactly instead of the approximate candidates
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ids(self) -> list[int]:
        return [r.id for r in self.results]

    def as_dict(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "query_type": self.query_type, "profile": self.profile,
                "weights": self.weights, "exact_search": self.exact, "notes": self.notes,
                "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
                "results": [r.as_dict() for r in self.results]}


# --------------------------------------------------------------------------------------------------------------------
# The library
# --------------------------------------------------------------------------------------------------------------------


class Library:
    """An open library: the store, its checked vector index, and (for ingest and search) the served embedders."""

    def __init__(self, store: Store, embedders: Embedders | None = None, *, use_gpu: bool = True) -> None:
        self.store = store
        self.embedders = embedders
        self.notes: list[str] = []
        self.index_path, self.sidecar_path = index_paths(store.path)
        self.index: VectorIndex = open_index(store, self.index_path, self.sidecar_path, EMBEDDING_DIM, self.notes)
        if use_gpu and self.index.use_gpu_if_available():
            self.notes.append("searching on the GPU (faiss-gpu)")
        self._profiles: dict[str, tuple[np.ndarray, Any]] = {}

    @classmethod
    def open(cls, db_path: str | Path | None = None, urls: str | list[str] | None = None, *,
             embedders: Embedders | None = None) -> Library:
        """Open the store (StoreLocked if another process holds it) and the index; embedders from `urls` if given."""
        store = open_store(db_path)
        try:
            if embedders is None and urls is not None:
                embedders = Embedders.for_urls(urls)
            return cls(store, embedders)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _need_embedders(self) -> Embedders:
        if self.embedders is None:
            raise LibraryError("this needs the served embedders: open the library with Triton URLs")
        return self.embedders

    # ---- ingest ---------------------------------------------------------------------------------------------------

    def add_images(self, paths: Iterable[str | Path], labels: str | Path | pd.DataFrame | None = None,
                   source: str = "folder") -> IngestReport:
        """Ingest image files and folders; `labels` (a CSV path or read_labels frame) supplies emotion, style, etc."""
        table = read_labels(labels) if isinstance(labels, (str, Path)) else labels
        by_name: dict[str, list[str]] = {}
        if table is not None:
            for key in table.index:
                by_name.setdefault(Path(key).name, []).append(key)
        report = IngestReport()
        pending: list[_Pending] = []
        for path in expand_paths(paths):
            name = str(path)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                report.failed.append((name, "no such file"))
                continue
            except IsADirectoryError:
                report.failed.append((name, "is a folder"))
                continue
            except OSError as error:
                report.failed.append((name, f"cannot read ({error.strerror or error})"))
                continue
            row = None
            if table is not None:
                key = str(path.resolve())
                if key not in table.index and len(by_name.get(path.name, [])) == 1:
                    key = by_name[path.name][0]  # labels written for the same files in another folder
                row = table.loc[key] if key in table.index else None
            try:
                face = fit_square(load_rgb(data), FACE_SIZE)
            except ImageDecodeError as error:
                report.failed.append((name, str(error).replace("uploaded image: ", "", 1)))
                continue
            labels_row = _labels_for(row)
            pending.append(_Pending(name, hashlib.sha256(data).hexdigest(), face,
                                    labels_row.pop("source", source), labels_row))
        self._store_pending(pending, report)
        return report

    def add_manifest(self, manifest: str | Path) -> IngestReport:
        """Ingest every image a manifest lists, with its labels."""
        table = read_labels(manifest)
        return self.add_images([Path(p) for p in table.index], labels=table, source="manifest")

    def add_from_analysis(self, analysis_id: int) -> IngestReport:
        """Ingest the key-moment faces of a stored clip analysis (see :func:`add_from_analysis`)."""
        return add_from_analysis(self.store, analysis_id, library=self)

    def _store_pending(self, pending: list[_Pending], report: IngestReport) -> None:
        fresh = _without_duplicates(self.store, pending, report)
        if not fresh:
            return
        embedders = self._need_embedders()
        for start in range(0, len(fresh), 1024):
            chunk = fresh[start:start + 1024]
            vectors, emotion_probs, style_probs = embedders.embed_faces(np.stack([p.face for p in chunk]))
            items = [_library_item(p, v, e, s) for p, v, e, s in zip(chunk, vectors, emotion_probs, style_probs)]
            ids = self.store.library.add(items)
            self.index.add(ids, np.stack([item.embedding for item in items]))
            report.added += [(i, p.source_path) for i, p in zip(ids, chunk)]
        self.index.save(self.index_path, self.sidecar_path)

    def add_items(self, items: Sequence[LibraryItem]) -> list[int]:
        """Store ready-made items (embedding already computed) and index them; for bulk loads and benchmarks."""
        ids = self.store.library.add(items)
        self.index.add(ids, np.stack([item.embedding for item in items]) if items else np.zeros((0, EMBEDDING_DIM)))
        self.index.save(self.index_path, self.sidecar_path)
        return ids

    # ---- items ----------------------------------------------------------------------------------------------------

    def remove(self, ids: Iterable[int]) -> tuple[list[int], list[int]]:
        """Delete items: (removed ids, ids that were not in the library)."""
        wanted = sorted({int(i) for i in ids})
        removed = self.store.library.remove(wanted)
        self.index.remove(removed)
        if self.index.needs_compaction():
            self.notes.append(f"{len(self.index.tombstones)} removed items in the vector index: rebuilt it")
            from facecast.vector_index import rebuild_from_store

            self.index = rebuild_from_store(self.store, EMBEDDING_DIM)
        self.index.save(self.index_path, self.sidecar_path)
        return removed, [i for i in wanted if i not in set(removed)]

    def update_labels(self, item_id: int, *, emotion: str | None = None, style: str | None = None,
                      character: str | None = None) -> bool:
        return self.store.library.update_labels(item_id, emotion=emotion, style=style, character=character)

    def stats(self) -> dict[str, Any]:
        stats = self.store.library.stats()
        stats["index"] = {"path": str(self.index_path), "vectors": len(self.index), "removed_in_graph":
                          len(self.index.tombstones), "device": self.index.device}
        return stats

    # ---- search ---------------------------------------------------------------------------------------------------

    def encode_query(self, query: Query, notes: list[str]) -> tuple[np.ndarray, RankingContext]:
        """The query vector (served query_fuser) and the emotion/style distributions the re-rank compares."""
        embedders = self._need_embedders()
        text = query.text
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise QueryError("the text query is empty: describe the expression in a few words")
            if len(text) > MAX_QUERY_CHARS:
                notes.append(f"the query text had {len(text)} characters; only the first {MAX_QUERY_CHARS} were used "
                             "(the text model reads about 32 words)")
                text = text[:MAX_QUERY_CHARS]
        for value, vocabulary, what in ((query.emotion, EMOTIONS, "emotion"), (query.style, STYLES, "style")):
            if value is not None and value not in vocabulary:
                raise QueryError(f"unknown {what} {value!r}; choose one of {', '.join(vocabulary)}")
        if text is None and query.image is None and query.emotion is None and query.style is None:
            raise QueryError("empty query: give a text, an image, an emotion or a style")
        face = None
        if query.image is not None:
            try:
                image = query.image if isinstance(query.image, np.ndarray) else load_rgb(query.image)
                face = fit_square(np.asarray(image, np.uint8), FACE_SIZE)
            except (ImageDecodeError, ValueError) as error:
                raise QueryError(f"query image: {error}") from None
        emotion_onehot = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index(query.emotion)] \
            if query.emotion else None
        style_onehot = np.eye(len(STYLES), dtype=np.float32)[STYLES.index(query.style)] if query.style else None

        emotion_views, style_views = [], []
        text_vector = image_vector = None
        if text is not None:
            text_vector = embedders.text.embed([text])[0]
            emotion_protos, style_protos = embedders.prototypes()
            for prototypes, views in ((emotion_protos, emotion_views), (style_protos, style_views)):
                view = _text_view(prototypes @ text_vector)
                if view is not None:
                    views.append(view)
        if face is not None:
            image_vectors, image_emotion, image_style = embedders.image.embed(face[None])
            image_vector = image_vectors[0]
            emotion_views.append(np.asarray(image_emotion[0], np.float32))
            style_views.append(np.asarray(image_style[0], np.float32))
        vector = embedders.fuse(text_vector, image_vector, emotion_onehot, style_onehot)
        emotion = emotion_onehot if emotion_onehot is not None else (
            np.mean(emotion_views, axis=0) if emotion_views else None)
        style = style_onehot if style_onehot is not None else (np.mean(style_views, axis=0) if style_views else None)
        return vector, RankingContext(vector=vector, emotion=emotion, style=style)

    def profile(self, name: str | None) -> tuple[np.ndarray, Any]:
        if not name:
            return DEFAULT_WEIGHTS.copy(), None
        if name not in self._profiles:
            self._profiles[name] = feedback_module.load_profile(self.store, name)
        return self._profiles[name]

    def search(self, query: Query, *, top_k: int = 10, filters: Filters | None = None, profile: str | None = None,
               previous_item: int | None = None, character_context: str | None = None,
               candidates: int = CANDIDATES) -> SearchResults:
        """Two-stage search (module docstring). `previous_item` (an item id) and `character_context` are the
        production context of the temporal-coherence and character-identity terms."""
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP:
            raise QueryError(f"top must be a whole number from 1 to {MAX_TOP}, got {top_k!r}")
        filters = filters or Filters()
        for value, vocabulary, what in ((filters.emotion, EMOTIONS, "emotion"), (filters.style, STYLES, "style")):
            if value is not None and value not in vocabulary:
                raise QueryError(f"unknown {what} filter {value!r}; choose one of {', '.join(vocabulary)}")
        notes: list[str] = []
        timings: dict[str, float] = {}
        started = time.perf_counter()
        vector, context = self.encode_query(query, notes)
        if previous_item is not None or character_context is not None:
            previous = None
            if previous_item is not None:
                _, found = self.store.library.embeddings([previous_item])
                if not len(found):
                    raise QueryError(f"previous item {previous_item} is not in the library")
                previous = found[0]
            context = RankingContext(vector, context.emotion, context.style, previous, character_context)
        timings["encode"] = 1000 * (time.perf_counter() - started)

        mark = time.perf_counter()
        wanted = max(candidates, top_k)
        ids, scores = self.index.search(vector, wanted)
        ids, scores = ids[0], scores[0]
        timings["ann"] = 1000 * (time.perf_counter() - mark)

        mark = time.perf_counter()
        need_embeddings = context.previous is not None
        rows = self.store.library.search_candidates(ids.tolist(), emotion=filters.emotion, style=filters.style,
                                             character=filters.character, with_embeddings=need_embeddings)
        exact = False
        if len(rows["id"]) < top_k:
            matching = self.store.library.filtered_count(emotion=filters.emotion, style=filters.style,
                                                         character=filters.character)
            if matching > len(rows["id"]):
                exact = True
                ids, scores = self.store.library.exact_search(vector, wanted, emotion=filters.emotion,
                                                              style=filters.style, character=filters.character)
                rows = self.store.library.search_candidates(ids.tolist(), emotion=filters.emotion, style=filters.style,
                                                     character=filters.character, with_embeddings=need_embeddings)
                notes.append(f"the filters kept {len(rows['id'])} of the approximate candidates; searched all "
                             f"{matching} matching items exactly")
        similarity = dict(zip(ids.tolist(), scores.tolist()))
        candidate_similarity = np.asarray([similarity[int(i)] for i in rows["id"]], np.float32)
        timings["fetch"] = 1000 * (time.perf_counter() - mark)

        mark = time.perf_counter()
        weights, preference = self.profile(profile)
        phi = phi_matrix(context, rows, candidate_similarity, preference, rows.get("embedding"))
        order, total = rerank(phi, weights, candidate_similarity)
        weight_map = {t: float(w) for t, w in zip(TERMS, weights / weights.sum())}
        results = []
        for rank, position in enumerate(order[:top_k], start=1):
            intensity = float(rows["intensity"][position])
            results.append(SearchResult(
                rank=rank, id=int(rows["id"][position]), score=float(total[position]),
                similarity=float(candidate_similarity[position]),
                phi={t: float(v) for t, v in zip(TERMS, phi[position])}, weights=weight_map,
                emotion=str(rows["emotion"][position]), style=str(rows["style"][position]),
                character=rows["character"][position], intensity=None if np.isnan(intensity) else intensity,
                source=str(rows["source"][position]), source_path=str(rows["source_path"][position])))
        timings["rerank"] = 1000 * (time.perf_counter() - mark)
        timings["total"] = 1000 * (time.perf_counter() - started)
        if not results:
            notes.append("no items match" + (" these filters" if filters else ": the library is empty"))
        return SearchResults(uuid.uuid4().hex, query.kind, results, profile, weight_map, exact, notes, timings)

    # ---- feedback -------------------------------------------------------------------------------------------------

    def record_selection(self, profile: str, results: SearchResults, selected_ids: Iterable[int],
                         *, learn: bool = True) -> int:
        """Implicit feedback on a shown list; re-learns the profile's weights and preference unless learn=False."""
        count = feedback_module.record_selection(self.store, profile, results, selected_ids)
        self._profiles.pop(profile, None)
        if learn:
            self.learn(profile)
        return count

    def record_rating(self, profile: str, results: SearchResults, item_id: int, rating: float,
                      *, learn: bool = True) -> int:
        count = feedback_module.record_rating(self.store, profile, results, item_id, rating)
        self._profiles.pop(profile, None)
        if learn:
            self.learn(profile)
        return count

    def learn(self, profile: str) -> np.ndarray:
        weights, preference = feedback_module.update_profile(self.store, profile)
        self._profiles[profile] = (weights, preference if preference.rates else None)
        return weights


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


def _library_item(pending: _Pending, vector: np.ndarray, emotion_probs: np.ndarray,
                  style_probs: np.ndarray) -> LibraryItem:
    labels = pending.labels
    emotion = labels.get("emotion") or EMOTIONS[int(np.argmax(emotion_probs))]
    style = labels.get("style") or STYLES[int(np.argmax(style_probs))]
    if labels.get("emotion"):
        emotion_probs = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index(emotion)]
    if labels.get("style"):
        style_probs = np.eye(len(STYLES), dtype=np.float32)[STYLES.index(style)]
    return LibraryItem(content_sha256=pending.digest, source=pending.source, source_path=pending.source_path,
                       emotion=emotion, style=style, emotion_probs=emotion_probs, style_probs=style_probs,
                       embedding=vector, thumbnail=_png(pending.face), labelled=bool(labels.get("emotion")),
                       character=labels.get("character"), intensity=labels.get("intensity"),
                       params=labels.get("params"))


# --------------------------------------------------------------------------------------------------------------------
# Expressions from analysed clips
# --------------------------------------------------------------------------------------------------------------------


def add_from_analysis(store: Store, analysis_id: int, library: Library | None = None,
                      embedders: Embedders | None = None) -> IngestReport:
    """Ingest the key-moment faces of stored clip analysis `analysis_id` (its report's thumbnails).

    Each key moment becomes an item: its thumbnail is the face crop the analysis encoded; its emotion is the one the
    analysis reported, its style the track's, its character "<clip name>#<track id>", its action parameters those
    of the clip_faces row of that track at that time. Without `library` the rows go to the store only and the index
    catches up when a library next opens the store (the check at open adds them)."""
    import base64

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
        library._store_pending(pending, result)
        return result
    # rows only: embed here, the index is reconciled at the next open
    if embedders is None:
        raise LibraryError("adding expressions from an analysis needs the served embedders (or an open Library)")
    fresh = _without_duplicates(store, pending, result)
    if fresh:
        vectors, emotion_probs, style_probs = embedders.embed_faces(np.stack([p.face for p in fresh]))
        ids = store.library.add([_library_item(p, v, e, s) for p, v, e, s in
                                       zip(fresh, vectors, emotion_probs, style_probs)])
        result.added += [(i, p.source_path) for i, p in zip(ids, fresh)]
        result.notes.append("stored without updating the vector index: it is brought up to date when the library "
                            "next opens")
    return result
