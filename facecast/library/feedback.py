"""Feedback on search results and what the ranking learns from it (seed 003 §4.3), per user or team profile.

Two kinds of feedback are stored in DuckDB (``library_feedback``): implicit selections (the items a person picked
from a shown list, and the ones shown but skipped) and explicit ratings (1–5). Each row keeps the φ values the item
was shown with, so everything below is recomputed from the table, never from hidden state.

Two things adapt, both small and explainable:

* **The user-preference term** (:class:`Preference`): for each attribute (style, character, intensity band) and
  value, the Beta(1, 1)-smoothed rate at which items with that value were chosen when shown:
  (chosen + 1) / (chosen + passed over + 2), compared with that attribute's overall rate (people pick only a few of
  the ten they see, so a liked value's rate is high only relative to the rest). An item's φ adds the log-odds lifts
  of its values as independent evidence, σ(Σ [logit(rate) − logit(base rate)]), so a strong liking for one
  attribute is not diluted by attributes with no opinion; 0.5 when nothing is known. A rating of 4–5 counts as
  chosen, 1–2 as passed over.
* **The weights** (:func:`learn_weights`): a pairwise logistic model. For every (chosen, passed-over) pair from one
  shown list, d = φ(chosen) − φ(passed over), with the preference term recomputed from the current profile; the
  weights maximise Σ log σ(β w·d) − λ‖w − w₀‖² by projected gradient ascent, starting at and pulled towards the
  seed's defaults w₀, each kept within :data:`MIN_WEIGHTS` / :data:`MAX_WEIGHTS` and the sum at one. A term that
  separates what people choose from what they skip gains weight; one that does not, loses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facecast.library.ranking import DEFAULT_WEIGHTS, NEUTRAL, TERMS, normalised_weights
from facecast.library.search import SearchResults
from facecast.store import Store

# Bounds per term (TERMS order). Feedback re-balances the terms but cannot switch off what the query asks for: pairs
# come from one shown list, whose items all match the query about equally, so they say little about the query terms
# and a free learner would drift away from them. With emotional similarity ≥ 0.25 and user preference ≤ 0.40, an
# item of the wrong emotion (φ ≈ 0) cannot overtake one of the right emotion on preference alone.
MIN_WEIGHTS = np.array([0.25, 0.10, 0.02, 0.02, 0.02])
MAX_WEIGHTS = np.array([0.70, 0.70, 0.70, 0.70, 0.40])
SHARPNESS = 10.0  # β: φ differences are tenths, so the logistic needs a scale to be in its useful range
PRIOR_STRENGTH = 0.02  # λ
LEARNING_RATE = 0.5
STEPS = 300
PREFERENCE_ATTRIBUTES = ("style", "character", "intensity_band")
_PREFERENCE_TERM = TERMS.index("user_preference")


class FeedbackError(ValueError):
    """Feedback that cannot be recorded (unknown kind, rating out of range, ...)."""


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def intensity_band(intensity: float | None) -> str | None:
    if intensity is None or (isinstance(intensity, float) and math.isnan(intensity)):
        return None
    return "subtle" if intensity < 0.5 else ("clear" if intensity < 0.75 else "strong")


@dataclass(frozen=True)
class Preference:
    """Selection rates per attribute value; scores candidates for the user-preference term."""

    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    base_rates: dict[str, float] = field(default_factory=dict)  # per attribute: chosen share over all its values
    events: int = 0

    def score(self, candidates: dict[str, np.ndarray]) -> np.ndarray:
        count = len(candidates["id"])
        if not self.rates:
            return np.full(count, NEUTRAL, np.float32)
        columns: dict[str, Sequence[object] | np.ndarray] = {
            "style": candidates["style"],
            "character": candidates["character"],
            "intensity_band": [intensity_band(float(v)) for v in candidates["intensity"]],
        }
        log_odds = np.zeros(count, np.float64)
        for attribute, rates in self.rates.items():
            base = _logit(self.base_rates[attribute])
            for row, value in enumerate(columns[attribute]):
                if value is not None and str(value) in rates:
                    log_odds[row] += _logit(rates[str(value)]) - base
        return (1.0 / (1.0 + np.exp(-log_odds))).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"events": self.events, "rates": self.rates, "base_rates": self.base_rates}


def _outcomes(feedback: pd.DataFrame) -> pd.Series:
    """+1 chosen, -1 passed over, 0 neither (a middling rating)."""
    outcome = np.zeros(len(feedback), np.int8)
    kind = feedback["kind"].to_numpy()
    rating = pd.to_numeric(feedback["rating"], errors="coerce").to_numpy()
    outcome[kind == "selected"] = 1
    outcome[kind == "skipped"] = -1
    outcome[(kind == "rating") & (rating >= 4)] = 1
    outcome[(kind == "rating") & (rating <= 2)] = -1
    return pd.Series(outcome, index=feedback.index)


def preference_from_feedback(feedback: pd.DataFrame) -> Preference:
    """Preference from a profile's feedback rows (Store.library_feedback)."""
    if feedback.empty:
        return Preference()
    frame = feedback.assign(
        outcome=_outcomes(feedback), intensity_band=[intensity_band(v) for v in feedback["intensity"]]
    )
    frame = frame[frame["outcome"] != 0]
    rates: dict[str, dict[str, float]] = {}
    bases: dict[str, float] = {}
    for attribute in PREFERENCE_ATTRIBUTES:
        known = frame[frame[attribute].notna()]
        if known.empty:
            continue
        grouped = known.groupby(attribute)["outcome"]
        chosen = grouped.apply(lambda o: int((o > 0).sum()))
        passed = grouped.apply(lambda o: int((o < 0).sum()))
        rates[attribute] = {
            str(value): round((chosen[value] + 1) / (chosen[value] + passed[value] + 2), 4) for value in chosen.index
        }
        bases[attribute] = (int(chosen.sum()) + 1) / (int(chosen.sum()) + int(passed.sum()) + 2)
    return Preference(rates, bases, int(len(frame)))


def training_pairs(feedback: pd.DataFrame, preference: Preference) -> np.ndarray:
    """φ(chosen) − φ(passed over) [P, len(TERMS)] over pairs from the same shown list, with the preference term
    recomputed from `preference` (at the time they were shown it was the older profile's)."""
    if feedback.empty:
        return np.zeros((0, len(TERMS)), np.float32)
    frame = feedback.assign(outcome=_outcomes(feedback))
    phi = np.stack(frame["phi"].to_numpy()).astype(np.float32)
    candidates = {
        "id": frame["item_id"].to_numpy(),
        "style": frame["style"].to_numpy(),
        "character": frame["character"].to_numpy(),
        "intensity": pd.to_numeric(frame["intensity"], errors="coerce").to_numpy(np.float32),
    }
    phi[:, _PREFERENCE_TERM] = preference.score(candidates)
    differences = []
    for rows in frame.groupby("query_id").indices.values():
        outcome = frame["outcome"].to_numpy()[rows]
        chosen, passed = rows[outcome > 0], rows[outcome < 0]
        if len(chosen) and len(passed):
            differences.append((phi[chosen][:, None, :] - phi[passed][None, :, :]).reshape(-1, len(TERMS)))
    return np.concatenate(differences) if differences else np.zeros((0, len(TERMS)), np.float32)


def _project(weights: np.ndarray) -> np.ndarray:
    """Onto {w : MIN_WEIGHTS ≤ w ≤ MAX_WEIGHTS, Σ w = 1}: shift every weight by the same amount (bisection on the
    shift), clipping to the bounds; the Euclidean projection onto that set."""
    low, high = -1.0, 1.0
    for _ in range(60):
        shift = (low + high) / 2
        if np.clip(weights + shift, MIN_WEIGHTS, MAX_WEIGHTS).sum() > 1.0:
            high = shift
        else:
            low = shift
    return np.clip(weights + (low + high) / 2, MIN_WEIGHTS, MAX_WEIGHTS)


def learn_weights(differences: np.ndarray, prior: Sequence[float] | np.ndarray = DEFAULT_WEIGHTS) -> np.ndarray:
    """Weights from pairwise differences (see the module docstring). No pairs: the prior unchanged."""
    w0 = normalised_weights(prior).astype(np.float64)
    if len(differences) == 0:
        return w0.astype(np.float32)
    d = np.asarray(differences, np.float64)
    w = w0.copy()
    for _ in range(STEPS):
        margin = SHARPNESS * (d @ w)
        gradient = SHARPNESS * ((1.0 - 1.0 / (1.0 + np.exp(-margin)))[:, None] * d).mean(axis=0)
        w = _project(w + LEARNING_RATE * (gradient - 2 * PRIOR_STRENGTH * (w - w0)))
    return w.astype(np.float32)


# --------------------------------------------------------------------------------------------------------------------
# Recording and updating (against the store)
# --------------------------------------------------------------------------------------------------------------------


def profile_name(user: str | None = None, team: str | None = None) -> str:
    """The key feedback and weights are kept under: a user name, or 'team:<name>' for a shared team profile."""
    if team:
        return f"team:{team.strip()}"
    if not user or not user.strip():
        raise FeedbackError("feedback needs a user (or team) name")
    return user.strip()


def record_selection(store: Store, profile: str, results: SearchResults, selected_ids: Iterable[int]) -> int:
    """Implicit feedback on one shown list : the selected items and every other
    shown item as skipped. Returns the number of rows stored."""
    selected = {int(i) for i in selected_ids}
    shown = {r.id for r in results.results}
    unknown = selected - shown
    if unknown:
        raise FeedbackError(f"items {sorted(unknown)} were not among the shown results")
    rows = [
        {
            "item_id": r.id,
            "kind": "selected" if r.id in selected else "skipped",
            "rating": None,
            "rank": r.rank,
            "phi": r.phi_vector,
        }
        for r in results.results
    ]
    return store.feedback.add(profile, results.query_id, rows)


def record_rating(store: Store, profile: str, results: SearchResults, item_id: int, rating: float) -> int:
    """Explicit feedback: a 1–5 rating of one shown item."""
    if not 1 <= float(rating) <= 5:
        raise FeedbackError(f"a rating is 1 to 5, got {rating}")
    result = next((r for r in results.results if r.id == int(item_id)), None)
    if result is None:
        raise FeedbackError(f"item {item_id} was not among the shown results")
    return store.feedback.add(
        profile,
        results.query_id,
        [
            {
                "item_id": result.id,
                "kind": "rating",
                "rating": float(rating),
                "rank": result.rank,
                "phi": result.phi_vector,
            }
        ],
    )


def update_profile(store: Store, profile: str) -> tuple[np.ndarray, Preference]:
    """Re-learn the profile's preference and weights from all its feedback; stores the weights."""
    feedback = store.feedback.for_profile(profile)
    preference = preference_from_feedback(feedback)
    differences = training_pairs(feedback, preference)
    weights = learn_weights(differences)
    store.feedback.set_weights(profile, weights, len(differences))
    return weights, preference


def load_profile(store: Store, profile: str | None) -> tuple[np.ndarray, Preference | None]:
    """(weights, preference) for ranking: the defaults and no preference without a profile or feedback."""
    if not profile:
        return DEFAULT_WEIGHTS.copy(), None
    stored = store.feedback.weights(profile)
    weights = stored[0] if stored is not None else DEFAULT_WEIGHTS.copy()
    feedback = store.feedback.for_profile(profile)
    return weights, (preference_from_feedback(feedback) if not feedback.empty else None)
