"""The served face detector's measured response to synthetic faces, for simulating it in training rows.

`detector_response.json` beside this file is written by `python -m benchmarks.detector_response` (which runs the
served detector on rendered frames); this module reads it and draws, for a face of a given visible fraction and
height, whether the detector finds it and with what score. Torch-free and Triton-free, so the data builders can
use it without a server.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

RESPONSE_PATH = Path(__file__).with_name("detector_response.json")
VISIBLE_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0001)
HEIGHT_EDGES = (0.0, 0.06, 0.12, 0.25, 10.0)  # face height as a share of the frame height


def bin_of(visible: float, height: float) -> tuple[int, int]:
    i = int(np.clip(np.searchsorted(VISIBLE_EDGES, visible, side="right") - 1, 0, len(VISIBLE_EDGES) - 2))
    j = int(np.clip(np.searchsorted(HEIGHT_EDGES, height, side="right") - 1, 0, len(HEIGHT_EDGES) - 2))
    return i, j


@dataclass(frozen=True)
class DetectorResponse:
    detected: np.ndarray  # [visible bins, height bins] share of faces found
    logit_mean: np.ndarray  # same shape: mean logit of a found face's score
    logit_sd: np.ndarray
    score_threshold: float

    def draw(self, rng: np.random.Generator, visible: float, height: float) -> float | None:
        """A detection score for one face, or None when the detector misses it."""
        i, j = bin_of(visible, height)
        if rng.random() >= self.detected[i, j]:
            return None
        score = 1.0 / (1.0 + np.exp(-rng.normal(self.logit_mean[i, j], self.logit_sd[i, j])))
        return float(max(score, self.score_threshold))  # below the threshold the client would have dropped it


@lru_cache(maxsize=4)
def load_response(path: Path = RESPONSE_PATH) -> DetectorResponse:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: measure it with `python -m benchmarks.detector_response`")
    data = json.loads(path.read_text())
    if tuple(data["visible_edges"]) != VISIBLE_EDGES or tuple(data["height_edges"]) != HEIGHT_EDGES:
        raise ValueError(f"{path} was measured with other bins; rerun `python -m benchmarks.detector_response`")

    def grid(key: str) -> np.ndarray:
        return np.array([[cell[key] for cell in row] for row in data["table"]], np.float64)

    return DetectorResponse(grid("detected"), grid("logit_mean"), grid("logit_sd"), float(data["score_threshold"]))
