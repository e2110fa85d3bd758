"""The detector's cluttered scenes (training/data/hard_negatives.py) and how its evaluation scores detections."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.hard_negatives import (
    HELD_OUT_PHOTOS,
    TRAIN_PHOTOS,
    cluttered_background,
    fractal_background,
    load_photos,
    photo_background,
    text_overlay,
)


def test_training_and_held_out_photographs_are_disjoint_and_show_no_person() -> None:
    assert not set(TRAIN_PHOTOS) & set(HELD_OUT_PHOTOS)
    # near-copies of held-out pictures and photographs of people are in neither list
    for name in ("astronaut.png", "camera.png", "motorcycle_right.png", "chessboard_GRAY.png"):
        assert name not in TRAIN_PHOTOS + HELD_OUT_PHOTOS
    assert all(photo.mode == "RGB" for photo in load_photos(TRAIN_PHOTOS))


@pytest.mark.parametrize("size", [(320, 180), (108, 192), (200, 200)])
def test_backgrounds_fill_the_frame_and_repeat_for_a_seed(size) -> None:
    photos = load_photos(TRAIN_PHOTOS)
    makers = [
        lambda rng: photo_background(*size, rng, photos),
        lambda rng: fractal_background(*size, rng),
        lambda rng: cluttered_background(*size, rng, photos),
    ]
    for make in makers:
        first, again = make(np.random.default_rng(7)), make(np.random.default_rng(7))
        assert first.size == size and first.mode == "RGB"
        assert np.array_equal(np.asarray(first), np.asarray(again))
        assert np.asarray(first).std() > 2, "a background with nothing in it"


def test_text_overlay_draws_on_a_copy() -> None:
    from PIL import Image

    plain = Image.new("RGB", (256, 160), (40, 90, 160))
    with_text = text_overlay(plain, np.random.default_rng(3))
    assert (np.asarray(plain) == (40, 90, 160)).all(), "the input picture must not change"
    assert (np.asarray(with_text) != np.asarray(plain)).any()


def test_cluttered_scenes_hold_their_faces_inside_the_frame() -> None:
    from training.data.build import SPLITS, character_ids
    from training.data.detection import INPUT_HEIGHT, INPUT_WIDTH, render_scene

    first, end, _ = SPLITS["val"]
    characters, photos = character_ids(first, end), load_photos(TRAIN_PHOTOS)
    counts = []
    for seed in range(12):
        scene = render_scene(seed, "cluttered", characters, [], photos)
        assert scene.image.shape == (INPUT_HEIGHT, INPUT_WIDTH, 3)
        pad_x, pad_y = (INPUT_WIDTH - scene.frame_size[0]) // 2, (INPUT_HEIGHT - scene.frame_size[1]) // 2
        for x0, y0, x1, y1 in scene.boxes:
            assert pad_x <= x0 < x1 <= pad_x + scene.frame_size[0] and pad_y <= y0 < y1 <= pad_y + scene.frame_size[1]
        assert len(scene.faces) == len(scene.boxes)
        counts.append(len(scene.boxes))
    assert max(counts) >= 2, "cluttered scenes should hold crowds too"


def test_evaluation_scores_what_the_client_keeps() -> None:
    """A face's second, weaker peak is suppressed as the client does, and boxes are clipped to the frame inside the
    letterbox before they are matched."""
    from training.evaluate_detector import client_detections, detection_scores

    record = {"frame_width": 240, "frame_height": 192}  # pad_x = 40
    boxes = np.array([[[50, 20, 110, 80], [54, 24, 112, 84], [0, 100, 70, 160], [0, 0, 0, 0]]], np.float32)
    scores = np.array([[0.9, 0.6, 0.5, 0.0]], np.float32)
    kept_boxes, kept_scores = client_detections(boxes, scores, [record])
    assert kept_scores[0].tolist() == pytest.approx([0.9, 0.5, 0.0, 0.0])
    assert kept_boxes[0, 1].tolist() == [40, 100, 70, 160], "clipped to the frame's left edge"
    truth = [np.array([[50, 20, 110, 80], [40, 100, 70, 160]], np.float32)]
    raw = detection_scores(boxes, scores, truth, 0.3)
    kept = detection_scores(kept_boxes, kept_scores, truth, 0.3)
    assert raw["precision"] < 1.0 and kept["precision"] == 1.0 and kept["recall"] == 1.0
