"""The synthetic studio audience (training/data/studio_audience.py): its documented response to anger and to long
neutral stretches, its screening noise, and the clip set it writes for `facecast train engagement`."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from facecast.calibration.manifest import targets as metrics_to_targets
from facecast.vocab import EMOTIONS
from training.data.clips import (
    Camera,
    ClipScript,
    Keyframe,
    Shot,
    Waypoint,
    engagement_truth,
    sample_clip_script,
)
from training.data.studio_audience import (
    STUDIO_CHARACTERS,
    STUDIO_WEIGHTS,
    WATCH_NOISE_SD,
    describe_spread,
    studio_observed,
    studio_rows,
    studio_scripts,
    studio_truth,
    write_studio_set,
)
from training.studio_engagement import read_studio_manifest

DURATION = 6.0


def one_face(emotion: str, onset: float) -> ClipScript:
    """One character filling a steady wide shot, neutral until `onset`, then `emotion` at 0.8 to the end."""
    base = sample_clip_script(11, character_ids=STUDIO_CHARACTERS, n_characters=1, duration_s=DURATION)
    centre = (base.aspect / 2, 0.5)
    variant = EMOTIONS.index(emotion) + 1
    arc = (
        Keyframe(0.0, "neutral", 0.0, 0),
        Keyframe(onset, "neutral", 0.0, 0),
        Keyframe(onset + 0.3, emotion, 0.8, variant),
        Keyframe(DURATION, emotion, 0.8, variant),
    )
    track = replace(base.characters[0], face_height=0.3, path=(Waypoint(0.0, *centre),), arc=arc)
    camera = Camera(*centre, 1.0)
    shot = Shot(0.0, DURATION, "wide", (0,), camera, camera)
    return replace(base, characters=(track,), shots=(shot,), occluders=())


def test_same_seed_same_set():
    first, second = studio_rows(4, seed=3), studio_rows(4, seed=3)
    assert [r[1:] for r in first] == [r[1:] for r in second]
    assert [r[1:] for r in studio_rows(4, seed=4)] != [r[1:] for r in first]
    truth = studio_truth(first[0][0])
    assert studio_observed(truth, np.random.default_rng(1)) == studio_observed(truth, np.random.default_rng(1))


def test_characters_are_the_test_splits():
    for script in studio_scripts(5, seed=0):
        assert all(c.character_id in STUDIO_CHARACTERS for c in script.characters)
        assert script.duration_s == 10.0


def test_anger_raises_the_studio_truth_all_else_equal():
    angry, happy = studio_truth(one_face("anger", 0.5)), studio_truth(one_face("happiness", 0.5))
    assert angry.components["anger"] > 0.8 and happy.components["anger"] == 0.0
    assert angry.components["neutral_run"] == happy.components["neutral_run"]
    assert angry.components["solo"] == happy.components["solo"] == 1.0
    assert angry.engagement > happy.engagement
    expected = STUDIO_WEIGHTS["anger"] * (angry.components["anger"] - happy.components["anger"])
    assert angry.logit - happy.logit == pytest.approx(expected)


def test_a_long_neutral_stretch_lowers_the_studio_truth():
    early, late = studio_truth(one_face("happiness", 0.5)), studio_truth(one_face("happiness", 4.0))
    assert late.components["neutral_run"] > early.components["neutral_run"] + 0.4
    assert late.components["anger"] == early.components["anger"] == 0.0
    assert late.engagement < early.engagement


def test_watch_noise_has_the_documented_sd():
    truth = studio_truth(one_face("anger", 0.5))
    rng = np.random.default_rng(0)
    watch = np.array([studio_observed(truth, rng)["watch_pct"] for _ in range(3000)]) / 100
    residual = np.log(watch / (1 - watch)) - truth.logit
    assert abs(residual.mean()) < 0.05 and residual.std() == pytest.approx(WATCH_NOISE_SD, rel=0.06)


def test_written_set_is_a_studio_manifest_with_matching_truth(tmp_path):
    manifest = write_studio_set(tmp_path / "studio", n_clips=3, seed=5, duration_s=3.0, width=128, height=72)
    frame, _ = read_studio_manifest(manifest)  # accepts it: columns, numbers, files present
    assert len(frame) == 3
    assert all((tmp_path / "studio" / "clips" / f"studio-{i:03d}.mp4").stat().st_size > 0 for i in range(3))
    targets = metrics_to_targets(frame)
    assert np.all((targets["engagement"] > 0) & (targets["engagement"] < 1))
    raw = pd.read_csv(manifest)
    truth = pd.read_csv(tmp_path / "studio" / "truth.csv")
    assert raw["path"].tolist() == truth["path"].tolist() == [f"clips/studio-{i:03d}.mp4" for i in range(3)]
    scripts = studio_scripts(3, seed=5, duration_s=3.0, width=128, height=72)
    assert truth["seed"].tolist() == [s.seed for s in scripts]
    np.testing.assert_allclose(truth["studio_engagement"], [studio_truth(s).engagement for s in scripts], atol=1e-6)
    np.testing.assert_allclose(
        truth["default_engagement"], [engagement_truth(s).engagement for s in scripts], atol=1e-6
    )
    rows = studio_rows(3, seed=5, duration_s=3.0, width=128, height=72)
    assert raw.to_dict("records") == [r[1] for r in rows]  # the manifest is deterministic for the seed


def test_describe_spread_reports_the_documented_numbers():
    summary = describe_spread(n_scripts=40, seed=0, set_size=20, draws=20)
    assert 0 < summary["engagement_sd"] < 0.5
    assert -1 <= summary["spearman_with_default"] <= 1
    assert 0 < summary["oracle_spearman_mean"] <= 1 and -1 <= summary["set_oracle_spearman"] <= 1
