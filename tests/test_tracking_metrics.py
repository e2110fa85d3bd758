"""The tracking metrics (benchmarks/tracking.py) on a real rendered clip script: perfect tracks score
perfectly, a swap and a phantom are counted (pure: no server)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.tracking import MIN_VISIBLE, score_clip, summary
from training.data.clips import character_states, sample_clip_script


@pytest.fixture(scope="module")
def script():
    return sample_clip_script(880_001, duration_s=6.0, n_characters=2)


def truth_observations(script, times, swap_after: float | None = None, phantom: bool = False):
    observations = []
    for t in times:
        for state in character_states(script, t):
            if state.box is None or state.visible_fraction < MIN_VISIBLE:
                continue
            track = state.character_index
            if swap_after is not None and t > swap_after:
                track = 1 - track
            observations.append(SimpleNamespace(t_s=t, track_id=track, box=state.box, emotion=state.emotion))
        if phantom:
            observations.append(SimpleNamespace(t_s=t, track_id=9, box=(0.0, 0.0, 0.01, 0.01), emotion="neutral"))
    return observations


def test_the_truth_itself_scores_perfectly(script) -> None:
    times = list(np.arange(0, 6.0, 0.25))
    scores = score_clip("truth", script, times, truth_observations(script, times))
    assert scores.gt_detections > 0
    totals = summary([scores])
    assert totals["idf1"] == pytest.approx(1.0)
    assert totals["switches_per_min"] == 0 and totals["phantoms_per_clip"] == 0 and totals["timeline"] == 1.0


def test_a_swap_and_a_phantom_are_counted(script) -> None:
    times = list(np.arange(0, 6.0, 0.25))
    scores = score_clip("swapped", script, times, truth_observations(script, times, swap_after=3.0, phantom=True))
    totals = summary([scores])
    assert scores.switches >= 1 and scores.phantoms == 1
    assert 0.3 < totals["idf1"] < 0.8
