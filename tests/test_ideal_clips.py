"""Ideal-perception engagement rows (training/data/ideal_clips.py): what a perfect detector and encoder would report,
in the served rows' layout, for pretraining clips that never share a character with calib or test."""

from __future__ import annotations

import numpy as np

from facecast.engagement_features import FEATURE_NAMES, MAX_STEPS, step_count
from facecast.vocab import EMOTIONS
from training.data import clips
from training.data.build_clips import SPLITS, clip_seed
from training.data.engagement_dataset import load_engagement_split
from training.data.ideal_clips import build_pretraining_split, drawn_emotion_probs, ideal_rows


def test_drawn_emotion_probabilities_put_the_intensity_on_the_drawn_emotion() -> None:
    probs = drawn_emotion_probs(np.array([0, 4, EMOTIONS.index("neutral")]), np.array([0.7, 1.3, 0.5]))
    np.testing.assert_allclose(probs.sum(-1), 1.0)
    assert probs[0, 0] == np.float32(0.7) and np.isclose(probs[0, -1], 0.3)
    assert probs[1, 4] == 1.0  # intensity clipped to 1
    assert probs[2, -1] == 1.0  # a neutral face is all neutral


def test_ideal_rows_mark_every_visible_face_and_read_the_truth() -> None:
    script = clips.sample_clip_script(12345)
    features, mask, _ = ideal_rows(script)
    steps = min(step_count(script.duration_s), MAX_STEPS)
    geo = clips.step_geometry(script, (np.arange(steps) + 0.5) / 4)
    visible = geo.visible[: mask.shape[0], :steps] > 0
    np.testing.assert_array_equal(mask[: visible.shape[0], :steps], visible)
    assert not mask[:, steps:].any() and not features[~mask].any()
    score = features[..., FEATURE_NAMES.index("detection_score")]
    truth = geo.visible[: mask.shape[0], :steps]
    np.testing.assert_allclose(score[: visible.shape[0], :steps][visible], truth[visible], rtol=1e-6)


def test_pretraining_split_holds_train_characters_only_in_the_served_layout(tmp_path) -> None:
    path = build_pretraining_split(tmp_path / "pretrain", count=3, first=100_000, workers=1)
    arrays = load_engagement_split(path)
    assert len(arrays) == 3 and list(arrays.clip_id) == ["pretrain-100000", "pretrain-100001", "pretrain-100002"]
    assert arrays.mask.any(axis=(1, 2)).all()
    assert set(arrays.targets) == set(arrays.oracle) and arrays.targets["curve"].shape == (3, MAX_STEPS)
    # the train split's seed sequence, far past its own clips and short of calib's first seed
    _, _, train_seed = SPLITS["train"]
    assert list(arrays.seed) == [clip_seed(train_seed, 100_000 + i) for i in range(3)]
    assert arrays.seed.max() < clip_seed(SPLITS["calib"][2], 0)
