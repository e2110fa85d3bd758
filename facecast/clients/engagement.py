"""Engagement prediction through Triton's `engagement` model: one 32-s window of per-character features in, the
window's scores out (how windows become one clip's scores: facecast.clips.scoring)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facecast.clients._common import expect_client, softmax
from facecast.engagement_features import DEFAULT_ENGAGEMENT_VERSION, INTERVAL_ORDER
from facecast.serving.client import TritonModelClient
from facecast.vocab import ENGAGEMENT

_HALFWIDTH = {name: index for index, name in enumerate(INTERVAL_ORDER)}


@dataclass(frozen=True)
class WindowScores:
    """The engagement model's outputs for one window (arrays over its MAX_STEPS steps)."""

    engagement: float
    resonance: float
    shareability: float
    appeal: np.ndarray  # [len(AUDIENCE_GROUPS)]
    class_probabilities: np.ndarray  # [len(ENGAGEMENT_CLASSES)]
    curve: np.ndarray  # [MAX_STEPS]
    moment_weights: np.ndarray  # [MAX_STEPS]
    interval_logit_halfwidth: np.ndarray  # [len(INTERVAL_ORDER)]

    def logit_halfwidth(self, name: str) -> float:
        return float(self.interval_logit_halfwidth[_HALFWIDTH[name]])


class EngagementScorer:
    def __init__(self, client: TritonModelClient):
        expect_client(client, ENGAGEMENT, "EngagementScorer")
        self.client = client

    @classmethod
    def for_urls(cls, urls: str | list[str]) -> EngagementScorer:
        return cls(TritonModelClient(ENGAGEMENT, urls))

    def score(
        self, features: np.ndarray, mask: np.ndarray, version: int = DEFAULT_ENGAGEMENT_VERSION
    ) -> list[WindowScores]:
        """features float32 [W, MAX_CHARACTERS, MAX_STEPS, F], mask float32 [W, MAX_CHARACTERS, MAX_STEPS];
        `version`: which served version scores (the store's active one: facecast.store.engagement_models)."""
        outputs = self.client.infer(
            {"features": np.ascontiguousarray(features, np.float32), "mask": np.ascontiguousarray(mask, np.float32)},
            version=str(int(version)),
        )
        if "interval_logit_halfwidth" not in outputs:
            raise ValueError(
                f"the served {self.client.model_name} model has no interval_logit_halfwidth output: it was exported "
                "before 2026-12 (intervals on the probability scale). Rebuild the model repository from current "
                "weights (`make repository`) or retrain a studio model (`facecast train engagement`)."
            )
        class_probabilities = softmax(outputs["class_logits"])
        return [
            WindowScores(
                engagement=float(outputs["engagement"][i, 0]),
                resonance=float(outputs["resonance"][i, 0]),
                shareability=float(outputs["shareability"][i, 0]),
                appeal=outputs["appeal"][i],
                class_probabilities=class_probabilities[i],
                curve=outputs["curve"][i],
                moment_weights=outputs["moment_weights"][i],
                interval_logit_halfwidth=outputs["interval_logit_halfwidth"][i],
            )
            for i in range(len(features))
        ]
