"""Searching the library in two stages: the query (text, image, emotion, style, or a mix) becomes one vector through
the served query_fuser (a text-only query through text_query: the text_embedder and the query_fuser in one call);
HNSW proposes :data:`CANDIDATES` items; the filters are applied to those candidates and what the ranking needs is
read from the library's in-process copy of the ranking rows (facecast.library.candidate_rows, kept current with the
store); facecast.library.ranking re-ranks them with the profile's weights and preference.
When the filters leave fewer than the asked number, the search runs exactly over every matching item in DuckDB
instead, so a selective filter never silently drops matches."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facecast.clients._common import softmax
from facecast.clients.embedders import Embedders
from facecast.library.errors import QueryError
from facecast.library.ranking import TERMS, RankingContext, explain, phi_matrix, rerank
from facecast.media.images import MIN_FACE_SIDE, ImageDecodeError, fit_square, load_rgb
from facecast.vocab import EMOTIONS, STYLES

if TYPE_CHECKING:
    from facecast.library import Library

FACE_SIZE = 64  # the image_embedder's input (its Triton dims)
CANDIDATES = 200  # first stage: approximate neighbours handed to the re-rank
MAX_TOP = 500
MAX_QUERY_CHARS = 1000  # the text model reads 32 tokens; longer input is cut here (and said so) before tokenising
QUERY_TYPES = ("text", "image", "emotion", "style", "mixed")
PROTOTYPE_TEMPERATURE = 0.05
PROTOTYPE_MARGIN = 0.2


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
        return {
            "rank": self.rank,
            "id": self.id,
            "score": round(self.score, 4),
            "similarity": round(self.similarity, 4),
            "emotion": self.emotion,
            "style": self.style,
            "character": self.character,
            "intensity": None if self.intensity is None else round(self.intensity, 3),
            "source": self.source,
            "source_path": self.source_path,
            "explanation": explain(self.phi_vector, [self.weights[t] for t in TERMS]),
        }


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
        return {
            "query_id": self.query_id,
            "query_type": self.query_type,
            "profile": self.profile,
            "weights": self.weights,
            "exact_search": self.exact,
            "notes": self.notes,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "results": [r.as_dict() for r in self.results],
        }


def encode_query(embedders: Embedders, query: Query, notes: list[str]) -> tuple[np.ndarray, RankingContext]:
    """The query vector (served query_fuser) and the emotion/style distributions the re-rank compares."""
    text = query.text
    if text is not None:
        if not isinstance(text, str) or not text.strip():
            raise QueryError("the text query is empty: describe the expression in a few words")
        if len(text) > MAX_QUERY_CHARS:
            notes.append(
                f"the query text had {len(text)} characters; only the first {MAX_QUERY_CHARS} were used "
                "(the text model reads about 32 words)"
            )
            text = text[:MAX_QUERY_CHARS]
    for value, vocabulary, what in ((query.emotion, EMOTIONS, "emotion"), (query.style, STYLES, "style")):
        if value is not None and value not in vocabulary:
            raise QueryError(f"unknown {what} {value!r}; choose one of {', '.join(vocabulary)}")
    if text is None and query.image is None and query.emotion is None and query.style is None:
        raise QueryError("empty query: give a text, an image, an emotion or a style")
    face = None
    if query.image is not None:
        try:
            image = (
                query.image if isinstance(query.image, np.ndarray) else load_rgb(query.image, min_side=MIN_FACE_SIDE)
            )
            face = fit_square(np.asarray(image, np.uint8), FACE_SIZE)
        except (ImageDecodeError, ValueError) as error:
            raise QueryError(f"query image: {error}") from None
    emotion_onehot = np.eye(len(EMOTIONS), dtype=np.float32)[EMOTIONS.index(query.emotion)] if query.emotion else None
    style_onehot = np.eye(len(STYLES), dtype=np.float32)[STYLES.index(query.style)] if query.style else None

    emotion_views: list[np.ndarray] = []
    style_views: list[np.ndarray] = []
    text_vector = image_vector = vector = None
    if text is not None:
        if face is None and emotion_onehot is None and style_onehot is None and embedders.text_query is not None:
            # text only: text_embedder → query_fuser in one served call (text_query), padded to this text's length
            fused, text_vectors = embedders.text_query.encode([text])
            vector, text_vector = fused[0], text_vectors[0]
        else:
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
    if vector is None:
        vector = embedders.fuse(text_vector, image_vector, emotion_onehot, style_onehot)
    emotion = (
        emotion_onehot if emotion_onehot is not None else (np.mean(emotion_views, axis=0) if emotion_views else None)
    )
    style = style_onehot if style_onehot is not None else (np.mean(style_views, axis=0) if style_views else None)
    return vector, RankingContext(vector=vector, emotion=emotion, style=style)


def search(
    library: Library,
    query: Query,
    *,
    top_k: int = 10,
    filters: Filters | None = None,
    profile: str | None = None,
    previous_item: int | None = None,
    character_context: str | None = None,
    candidates: int = CANDIDATES,
) -> SearchResults:
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
    vector, context = encode_query(library.need_embedders(), query, notes)
    if previous_item is not None or character_context is not None:
        previous = None
        if previous_item is not None:
            _, found = library.store.library.embeddings([previous_item])
            if not len(found):
                raise QueryError(f"previous item {previous_item} is not in the library")
            previous = found[0]
        context = RankingContext(vector, context.emotion, context.style, previous, character_context)
    timings["encode"] = 1000 * (time.perf_counter() - started)

    mark = time.perf_counter()
    wanted = max(candidates, top_k)
    with library.index_lock:
        ids, scores = library.index.search(vector, wanted)
    ids, scores = ids[0], scores[0]
    timings["ann"] = 1000 * (time.perf_counter() - mark)

    mark = time.perf_counter()
    need_embeddings = context.previous is not None
    rows = _candidate_rows(library, ids, filters, need_embeddings)
    exact = False
    if len(rows["id"]) < top_k:
        matching = library.store.library.filtered_count(
            emotion=filters.emotion, style=filters.style, character=filters.character
        )
        if matching > len(rows["id"]):
            exact = True
            ids, scores = library.store.library.exact_search(
                vector, wanted, emotion=filters.emotion, style=filters.style, character=filters.character
            )
            rows = _candidate_rows(library, ids, filters, need_embeddings)
            notes.append(
                f"the filters kept {len(rows['id'])} of the approximate candidates; searched all "
                f"{matching} matching items exactly"
            )
    similarity = dict(zip(ids.tolist(), scores.tolist()))
    candidate_similarity = np.asarray([similarity[int(i)] for i in rows["id"]], np.float32)
    timings["fetch"] = 1000 * (time.perf_counter() - mark)

    mark = time.perf_counter()
    weights, preference = library.profile(profile)
    phi = phi_matrix(context, rows, candidate_similarity, preference, rows.get("embedding"))
    order, total = rerank(phi, weights, candidate_similarity)
    weight_map = {t: float(w) for t, w in zip(TERMS, weights / weights.sum())}
    results = []
    for rank, position in enumerate(order[:top_k], start=1):
        intensity = float(rows["intensity"][position])
        results.append(
            SearchResult(
                rank=rank,
                id=int(rows["id"][position]),
                score=float(total[position]),
                similarity=float(candidate_similarity[position]),
                phi={t: float(v) for t, v in zip(TERMS, phi[position])},
                weights=weight_map,
                emotion=str(rows["emotion"][position]),
                style=str(rows["style"][position]),
                character=rows["character"][position],
                intensity=None if np.isnan(intensity) else intensity,
                source=str(rows["source"][position]),
                source_path=str(rows["source_path"][position]),
            )
        )
    timings["rerank"] = 1000 * (time.perf_counter() - mark)
    timings["total"] = 1000 * (time.perf_counter() - started)
    if not results:
        notes.append("no items match" + (" these filters" if filters else ": the library is empty"))
    return SearchResults(uuid.uuid4().hex, query.kind, results, profile, weight_map, exact, notes, timings)


def _candidate_rows(library: Library, ids: np.ndarray, filters: Filters, with_embeddings: bool) -> dict[str, Any]:
    """The candidates' ranking rows, filtered: from the library's in-process copy, or from DuckDB when the copy is
    off or the re-rank needs the candidates' embeddings too (a previous shot in the context; the copy has none)."""
    if library.rows is not None and not with_embeddings:
        library.rows.refresh()
        return library.rows.candidates(ids, emotion=filters.emotion, style=filters.style, character=filters.character)
    return library.store.library.search_candidates(
        ids.tolist(),
        emotion=filters.emotion,
        style=filters.style,
        character=filters.character,
        with_embeddings=with_embeddings,
    )


def _text_view(similarities: np.ndarray) -> np.ndarray | None:
    """The distribution a text asks for over emotions (or styles), or None when it names none of them.

    Measured on the served text_embedder: a text naming an emotion/style is ≥ 0.2 closer to that prototype than
    to the runner-up, one that names none ("a surprised face" for styles, "a face" for emotions) is within 0.15;
    a softmax over a text that names nothing would invent a preference."""
    ordered = np.sort(similarities)
    if ordered[-1] - ordered[-2] < PROTOTYPE_MARGIN:
        return None
    return softmax(similarities / PROTOTYPE_TEMPERATURE)
