"""How the engagement model's window outputs become one clip's scores.

The model scores windows of MAX_STEPS steps (32 s). A clip longer than that is cut into consecutive windows;
clip-level scores are the windows' scores weighted by how many character-steps each window observed (a window
with faces on screen for 30 s says more than a 2-s tail), and so are the interval half-widths (a weighted mean of
conformal half-widths keeps roughly the nominal coverage when windows agree and is conservative otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facecast.clients.engagement import WindowScores
from facecast.engagement_features import INTERVAL_ORDER, MAX_STEPS
from facecast.vocab import AUDIENCE_GROUPS, ENGAGEMENT_CLASSES


@dataclass(frozen=True)
class ClipScores:
    """Clip-level scores: values and half-widths by name (INTERVAL_ORDER names), class probabilities, curve."""

    values: dict[str, float]
    halfwidths: dict[str, float]
    class_probabilities: dict[str, float]
    curve: np.ndarray  # per step over the whole clip
    curve_halfwidth: float

    @property
    def engagement_class(self) -> str:
        return max(self.class_probabilities, key=self.class_probabilities.get)


def combine_windows(windows: list[WindowScores], observed_steps: list[float], window_steps: list[int]) -> ClipScores:
    """One clip's scores from its windows; `observed_steps` weighs each window, `window_steps` trims the curve."""
    if not windows:
        raise ValueError("no windows to combine")
    weights = np.asarray(observed_steps, np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(windows), 1 / len(windows))

    def mean(values) -> float:
        return float(np.dot(weights, np.asarray(values, np.float64)))

    values = {"engagement": mean([w.engagement for w in windows]), "resonance": mean([w.resonance for w in windows]),
              "shareability": mean([w.shareability for w in windows])}
    for index, group in enumerate(AUDIENCE_GROUPS):
        values[f"appeal_{group}"] = mean([w.appeal[index] for w in windows])
    halfwidths = {name: mean([w.halfwidth(name) for w in windows]) for name in INTERVAL_ORDER}
    probabilities = np.tensordot(weights, np.stack([w.class_probabilities for w in windows]), axes=1)
    curve = np.concatenate([w.curve[:steps] for w, steps in zip(windows, window_steps)])
    assert all(steps <= MAX_STEPS for steps in window_steps)
    return ClipScores(values, halfwidths, dict(zip(ENGAGEMENT_CLASSES, map(float, probabilities))), curve,
                      halfwidths["curve"])
