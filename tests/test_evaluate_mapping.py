"""training/evaluate_mapping.py: the metric and table helpers behind docs/results-mapping.md (no Triton, no torch
networks: the script itself runs them against a real server)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from facecast.vocab import EMOTIONS, STYLES
from training.evaluate_mapping import (
    EMOJI_ROWS,
    choose_emoji,
    grouped_means,
    judge_size,
    ordered_pairs,
    paired_difference,
    picture_grid,
    psnr_uint8,
    ssim_uint8,
)


def random_pictures(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


# --- PSNR / SSIM ------------------------------------------------------------------------------------------------


def test_psnr_of_a_constant_offset_is_known():
    a = np.full((2, 8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[0] += 10  # mse 100 → 10·log10(255² / 100)
    b[1] += 1  # mse 1
    np.testing.assert_allclose(psnr_uint8(a, b), [20 * math.log10(255 / 10), 20 * math.log10(255)], rtol=1e-12)


def test_psnr_of_identical_pictures_is_capped_and_uint8_does_not_wrap():
    a = random_pictures(3)
    assert (psnr_uint8(a, a) == 100.0).all()
    black, white = np.zeros((1, 4, 4, 3), np.uint8), np.full((1, 4, 4, 3), 255, np.uint8)
    assert psnr_uint8(black, white)[0] == pytest.approx(0.0)  # 255 − 0 computed in floats, not wrapped uint8


def test_ssim_is_one_for_identical_pictures_and_lower_for_noise():
    a = random_pictures(2, size=48)
    np.testing.assert_allclose(ssim_uint8(a, a), 1.0)
    noisy = np.clip(a.astype(int) + np.random.default_rng(1).integers(-60, 61, a.shape), 0, 255).astype(np.uint8)
    other = random_pictures(2, size=48, seed=2)
    noisy_score, unrelated_score = ssim_uint8(a, noisy), ssim_uint8(a, other)
    assert (noisy_score < 0.99).all() and (unrelated_score < noisy_score).all()


def test_ssim_matches_skimage_on_a_smooth_picture():
    from skimage.metrics import structural_similarity

    y, x = np.mgrid[0:40, 0:40]
    a = np.stack([x * 6, y * 6, (x + y) * 3], axis=-1).astype(np.uint8)[None]
    b = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    expected = structural_similarity(a[0], b[0], channel_axis=-1, data_range=255)
    assert ssim_uint8(a, b)[0] == pytest.approx(expected)
    assert 0 < expected < 1


# --- tables -----------------------------------------------------------------------------------------------------


def test_grouped_means_gives_rates_per_group_an_all_row_and_nan_for_empty_groups():
    groups = np.array([0, 0, 1, 1, 1, 6])  # happiness ×2, sadness ×3, neutral ×1; nothing else
    preserved = np.array([True, False, True, True, False, True])
    table = grouped_means({"preserved": preserved, "psnr": np.arange(6.0)}, groups, EMOTIONS)
    assert list(table.index) == [*EMOTIONS, "all"]
    assert table.loc["happiness", "n"] == 2 and table.loc["happiness", "preserved"] == 0.5
    assert table.loc["sadness", "preserved"] == pytest.approx(2 / 3)
    assert table.loc["sadness", "psnr"] == pytest.approx(3.0)
    assert table.loc["neutral", "preserved"] == 1.0
    assert table.loc["anger", "n"] == 0 and math.isnan(table.loc["anger", "preserved"])
    assert table.loc["all", "n"] == 6 and table.loc["all", "preserved"] == pytest.approx(4 / 6)


def test_grouped_means_without_counts():
    table = grouped_means({"x": np.array([1.0, 3.0])}, np.array([2, 2]), STYLES, count=False)
    assert "n" not in table.columns
    assert table.loc["anime", "x"] == 2.0 and math.isnan(table.loc["realistic", "x"])


def test_ordered_pairs_are_the_twelve_pairs_of_different_styles_per_set():
    sets, source, target = ordered_pairs(3)
    assert len(sets) == 3 * 12
    assert (source != target).all()
    for n in range(3):
        pairs = set(zip(source[sets == n].tolist(), target[sets == n].tolist()))
        assert len(pairs) == 12


def test_paired_difference_resamples_whole_sets():
    clusters = np.repeat(np.arange(20), 12)
    a = np.random.default_rng(0).normal(size=len(clusters))
    mean, low, high = paired_difference(a + 1.0, a, clusters)
    assert (mean, low, high) == pytest.approx((1.0, 1.0, 1.0))  # a constant difference has no spread
    # a difference shared by the 12 pairs of a set: 20 independent values, not 240
    per_set = np.random.default_rng(1).normal(0.5, 1.0, size=20)
    mean, low, high = paired_difference(a + per_set[clusters], a, clusters)
    assert mean == pytest.approx(per_set.mean()) and low < mean < high
    expected_width = 2 * 1.96 * per_set.std(ddof=1) / np.sqrt(20)
    assert high - low == pytest.approx(expected_width, rel=0.25)


# --- pictures ---------------------------------------------------------------------------------------------------


def test_judge_size_is_a_box_filter():
    image = np.zeros((1, 4, 4, 3), np.uint8)
    image[0, :2, :2] = 200  # one 2×2 block bright, one pixel in another block
    image[0, 2, 3] = 100
    small = judge_size(image, 2)
    assert small.shape == (1, 2, 2, 3)
    assert small[0, 0, 0, 0] == 200 and small[0, 0, 1, 0] == 0 and small[0, 1, 1, 0] == 25
    assert judge_size(image, 4) is image


def test_picture_grid_writes_a_small_png(tmp_path):
    rows = [[random_pictures(1, 64, seed=r)[0] for _ in range(3)] for r in range(2)]
    path = picture_grid(
        rows,
        ["a", "b", "c"],
        tmp_path / "images" / "grid.png",
        tile=48,
        row_labels=["first\nrow", "second"],
        label_width=40,
    )
    with Image.open(path) as picture:
        assert picture.size == (40 + 3 * 52 + 4, 16 + 2 * 52 + 4)
    assert path.stat().st_size < 300_000


def test_choose_emoji_takes_every_set_and_the_planned_emotions():
    sources = ["noto", "openmoji", "twemoji"]
    label = np.repeat(np.arange(len(EMOTIONS)), 6)  # six of every emotion
    source = np.tile(np.repeat(sources, 2), len(EMOTIONS))  # two per set and emotion
    chosen = choose_emoji(label, source, sources)
    assert len(chosen) == sum(EMOJI_ROWS.values()) == 12 and len(set(chosen)) == 12
    assert set(source[chosen]) == set(sources)
    for emotion, rows in EMOJI_ROWS.items():
        assert (label[chosen] == EMOTIONS.index(emotion)).sum() == rows
