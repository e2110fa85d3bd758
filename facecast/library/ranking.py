"""Context-aware re-ranking of library candidates (seed 003 §4.2): R(q, e, c) = Σ wᵢ φᵢ(q, e, c).

The approximate index proposes candidates by embedding similarity; this module orders them by five terms, each a
number in [0, 1] computed from what DuckDB knows about the item and what the query and its context ask for:

==================== ======= =====================================================================================
term                 default φ(q, e, c)
==================== ======= =====================================================================================
emotional_similarity 0.45    cosine between the query's emotion distribution and the item's (both non-negative, so
                             the cosine is in [0, 1]). The query's distribution is the one-hot emotion asked for,
                             the query image's emotion head, or (text) a softmax over the similarity of the text to
                             one prototype phrase per emotion when the text clearly names one (facecast.library:
                             the best prototype leads by ≥ 0.2); mixed queries average what they have. 0.5 for every
                             item when the query says nothing about emotion (no effect on the order).
style_consistency    0.25    the same cosine over the four styles (query: the style asked for, the image's style
                             head, or the text's style prototypes when the text names a style). 0.5 when the query
                             names no style.
temporal_coherence   0.15    max(0, cos(anchor, item embedding)) where the anchor is the embedding of the previous
                             shot of the sequence when the context gives one (so consecutive picks flow), and
                             otherwise the query vector itself: then this is the embedding similarity that
                             produced the candidate.
character_identity   0.10    1 when the item belongs to the character the context is casting for, 0 when it
                             belongs to another or to none; 0.5 for every item without a character in the context.
user_preference      0.05    the profile's learned liking for the item's style, character and intensity band
                             (facecast.feedback.Preference: Beta-smoothed selection rates); 0.5 without feedback.
==================== ======= =====================================================================================

Weights are per profile (user or team) and adapt from feedback (facecast.feedback); they are non-negative and sum to
one, so R is in [0, 1] too. Each result keeps its φ values and the weights, so a UI can say why it ranks there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

TERMS: tuple[str, ...] = (
    "emotional_similarity",
    "style_consistency",
    "temporal_coherence",
    "character_identity",
    "user_preference",
)
DEFAULT_WEIGHTS = np.array([0.45, 0.25, 0.15, 0.10, 0.05], np.float32)  # seed 003, Table 8
NEUTRAL = 0.5  # a term the query or context says nothing about: equal for every item, so it cannot reorder them

assert len(TERMS) == len(DEFAULT_WEIGHTS) and abs(float(DEFAULT_WEIGHTS.sum()) - 1.0) < 1e-6


class PreferenceScorer(Protocol):
    def score(self, candidates: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True, eq=False)
class RankingContext:
    """What the re-rank compares candidates with: the query's vector and distributions, and the production context."""

    vector: np.ndarray  # L2-normalised query embedding [D]
    emotion: np.ndarray | None = None  # query emotion distribution [7], None = not asked
    style: np.ndarray | None = None  # query style distribution [4], None = not asked
    previous: np.ndarray | None = None  # embedding of the previous shot in the sequence [D]
    character: str | None = None  # the character being cast (soft; a hard filter is Filters.character)


def _cosine_rows(query: np.ndarray, rows: np.ndarray) -> np.ndarray:
    query = np.asarray(query, np.float32)
    norms = np.linalg.norm(rows, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    return np.clip((rows @ query) / np.maximum(norms, 1e-12), 0.0, 1.0)


def phi_matrix(
    context: RankingContext,
    candidates: dict[str, np.ndarray],
    similarity: np.ndarray,
    preference: PreferenceScorer | None = None,
    embeddings: np.ndarray | None = None,
) -> np.ndarray:
    """φ values [N, len(TERMS)] of the candidates (dict from Store.library_candidates).

    `similarity` is the inner product of the query vector with each candidate (from FAISS or the exact search);
    `embeddings` [N, D] are needed only when the context has a previous shot."""
    count = len(candidates["id"])
    phi = np.full((count, len(TERMS)), NEUTRAL, np.float32)
    if count == 0:
        return phi
    if context.emotion is not None:
        phi[:, 0] = _cosine_rows(context.emotion, candidates["emotion_probs"])
    if context.style is not None:
        phi[:, 1] = _cosine_rows(context.style, candidates["style_probs"])
    if context.previous is not None:
        if embeddings is None:
            raise ValueError("a previous shot in the context needs the candidates' embeddings")
        phi[:, 2] = np.clip(embeddings @ np.asarray(context.previous, np.float32), 0.0, 1.0)
    else:
        phi[:, 2] = np.clip(np.asarray(similarity, np.float32), 0.0, 1.0)
    if context.character is not None:
        phi[:, 3] = np.asarray([c == context.character for c in candidates["character"]], np.float32)
    if preference is not None:
        phi[:, 4] = np.clip(preference.score(candidates), 0.0, 1.0)
    return phi


def normalised_weights(weights: Sequence[float] | np.ndarray) -> np.ndarray:
    vector = np.asarray(weights, np.float32).reshape(-1)
    if vector.shape != (len(TERMS),) or not np.all(np.isfinite(vector)) or (vector < 0).any() or vector.sum() <= 0:
        raise ValueError(f"ranking weights must be {len(TERMS)} non-negative numbers, got {vector.tolist()}")
    return vector / vector.sum()


def rerank(
    phi: np.ndarray, weights: Sequence[float] | np.ndarray = DEFAULT_WEIGHTS, tie_break: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(order, R) with order the candidate positions by R descending; ties keep `tie_break` descending (the
    embedding similarity), then the input order."""
    scores = phi @ normalised_weights(weights)
    secondary = np.zeros(len(scores), np.float32) if tie_break is None else np.asarray(tie_break, np.float32)
    order = np.lexsort((np.arange(len(scores)), -secondary, -np.round(scores, 6)))
    return order, scores


def explain(phi_row: np.ndarray, weights: Sequence[float] | np.ndarray) -> dict[str, dict[str, float]]:
    """{term: {"phi": φ, "weight": w, "contribution": w φ}} for one result."""
    w = normalised_weights(weights)
    return {
        term: {"phi": round(float(p), 4), "weight": round(float(wi), 4), "contribution": round(float(p * wi), 4)}
        for term, p, wi in zip(TERMS, phi_row, w)
    }
