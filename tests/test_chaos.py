"""Chaos on loopback (benchmarks/chaos.py, its default 12-s phases): three real replicas serving all seven models under
concurrent analyses and searches; one SIGKILLed, one SIGSTOPped and resumed, the killed one restarted. Nothing the
user asked for may fail, every result must equal the single-replica run, traffic must spread evenly, and the
restarted replica must be used again."""

from __future__ import annotations

import pytest

from benchmarks.chaos import run_chaos
from tests.clipmaker import emoji_over_photo

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def test_three_replicas_survive_a_kill_a_stop_and_a_restart(full_repository, tmp_path) -> None:
    clip = emoji_over_photo(tmp_path / "two.mp4", [("grin|sob", "twemoji"), ("rage", "noto")], seconds=6.0)
    # the benchmark's own 12-s phases: with 8-s phases two full-suite runs on the shared 2-core machine measured a
    # replica's steady share at 0.249 and 0.215 (the test alone: 0.317-0.359). Not diagnosed; the likely cause is
    # that the shares count every inference and the 6-7 analyses of a short phase (each a burst of frame batches)
    # weigh too much in them. 12 s holds ~13.
    result = run_chaos(full_repository, clip, tmp_path, seconds_per_phase=12.0, stop_seconds=3.0)
    summaries = {phase.name: phase.summary() for phase in result.phases}
    print(result.as_dict())
    assert result.failures == [], result.failures[:5]
    assert result.mismatches == [], result.mismatches[:5]
    assert all(s["analyses"] >= 1 and s["searches"] >= 5 for s in summaries.values()), summaries
    assert result.retried_tries >= 1, "the kill and the stop were seen by the clients and retried elsewhere"
    mean = 1 / 3
    assert all(abs(share - mean) <= 0.25 * mean for share in result.spread.values()), result.spread
    assert result.readmitted, result.events
