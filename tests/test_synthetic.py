"""The synthetic character generator: labels follow from parameters, every style renders, all of it by seed."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLE_PARAM_BOUNDS, STYLES
from training.data import synthetic
from training.data.manifest import read_manifest
from training.data.synthetic import (
    NEUTRAL,
    Expression,
    action_params,
    build_stills,
    character_for_id,
    emotion_of,
    expression_for,
    plan_still,
    render_face,
    render_frame,
    sample_character,
    sample_still,
)

LABEL_KEYS = {"emotion", "intensity", "style", "character", *ACTION_PARAMS, "source"}


def png_bytes(image: Image.Image) -> bytes:
    return image.tobytes()


# --- expressions and labels ---------------------------------------------------------------------------------


def test_neutral_face_is_neutral():
    assert emotion_of(NEUTRAL) == ("neutral", 0.0)


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_expression_for_gives_its_emotion_back(emotion):
    rng = np.random.default_rng(123)
    errors = []
    for _ in range(300):
        intensity = float(rng.uniform(0.35, 1.0))
        expression = expression_for(emotion, intensity, rng)
        label, label_intensity = emotion_of(expression)
        assert label == emotion
        assert 0.0 <= label_intensity <= 1.0
        errors.append(label_intensity - intensity)
    if emotion != "neutral":
        # the intensity read back is the one asked for, up to the natural variation
        assert abs(np.mean(errors)) < 0.06 and np.max(np.abs(errors)) < 0.4


def test_intensity_grows_with_the_expression():
    rng = np.random.default_rng(5)
    weak = [emotion_of(expression_for("anger", 0.4, rng))[1] for _ in range(50)]
    strong = [emotion_of(expression_for("anger", 0.95, rng))[1] for _ in range(50)]
    assert np.mean(strong) > np.mean(weak) + 0.3


def test_very_low_intensity_reads_as_neutral():
    rng = np.random.default_rng(9)
    labels = [emotion_of(expression_for(e, 0.0, rng))[0] for e in EMOTIONS for _ in range(20)]
    assert labels.count("neutral") / len(labels) > 0.9


def test_expression_parameters_stay_in_range():
    rng = np.random.default_rng(2)
    signed = {"mouth_curve", "brow_tilt", "mouth_asym"}
    for emotion in EMOTIONS:
        for _ in range(100):
            expression = expression_for(emotion, float(rng.uniform(0, 1)), rng)
            for field in dataclasses.fields(Expression):
                value = getattr(expression, field.name)
                assert (-1.0 if field.name in signed else 0.0) <= value <= 1.0, (field.name, value)


def test_unknown_emotion_is_rejected():
    with pytest.raises(ValueError):
        expression_for("joy", 0.5, np.random.default_rng(0))


@pytest.mark.parametrize("style", STYLES)
def test_action_params_are_within_style_bounds(style):
    rng = np.random.default_rng(4)
    extremes = [
        Expression(mouth_open=0.0, eye_open=0.0, brow_raise=0.0, cheek_raise=0.0),
        Expression(mouth_open=1.0, eye_open=1.0, brow_raise=1.0, cheek_raise=1.0),
    ]
    samples = extremes + [expression_for(e, float(rng.uniform(0.35, 1)), rng) for e in EMOTIONS for _ in range(20)]
    for expression in samples:
        params = action_params(expression, style)
        assert params.dtype == np.float32 and params.shape == (4,)
        for name, value in zip(ACTION_PARAMS, params):
            low, high = STYLE_PARAM_BOUNDS[style][name]
            assert low - 1e-6 <= value <= high + 1e-6


# --- characters ---------------------------------------------------------------------------------------------


def test_characters_are_deterministic_and_varied():
    assert character_for_id("c0042") == character_for_id("c0042")
    assert sample_character(np.random.default_rng(1), "x") == sample_character(np.random.default_rng(1), "x")
    characters = [character_for_id(f"c{n:05d}") for n in range(200)]
    assert len({c.kind for c in characters}) == 3
    assert len({c.hair_style for c in characters}) >= 6
    assert len({c.skin for c in characters}) > 100


# --- stills -------------------------------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different_image():
    first, labels = sample_still(17)
    again, labels_again = sample_still(17)
    assert png_bytes(first) == png_bytes(again) and labels == labels_again
    other, _ = sample_still(18)
    assert png_bytes(first) != png_bytes(other)


def test_stills_are_identical_across_processes():
    # nothing may depend on Python's per-process hash seed or on what ran before
    code = (
        "import hashlib; from training.data.synthetic import sample_still; "
        "print(hashlib.sha256(sample_still(5, style='anime')[0].tobytes()).hexdigest())"
    )
    root = Path(__file__).resolve().parents[1]
    here = hashlib.sha256(sample_still(5, style="anime")[0].tobytes()).hexdigest()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == here


def test_render_face_is_deterministic_given_the_rng_state():
    character = character_for_id("c0007")
    expression = expression_for("surprise", 0.8, np.random.default_rng(0))
    a = render_face(character, expression, "anime", 64, np.random.default_rng(3))
    b = render_face(character, expression, "anime", 64, np.random.default_rng(3))
    c = render_face(character, expression, "anime", 64, np.random.default_rng(4))
    assert png_bytes(a) == png_bytes(b) != png_bytes(c)


@pytest.mark.parametrize("style", STYLES)
def test_a_character_keeps_its_look_while_the_expression_changes(style):
    # clips redraw a face every frame with the same rng seed: light, outline, shading must not flicker
    character = character_for_id("c00042")
    rng = np.random.default_rng(0)
    looks = []
    for emotion in EMOTIONS:
        expression = expression_for(emotion, 0.9, rng)
        look = synthetic._look_for(character, style, expression, False, np.random.default_rng(7))
        looks.append((look.light_angle, look.outline, look.line_width, look.shading, look.skin))
    assert len(set(looks)) == 1


@pytest.mark.parametrize("size", [32, 64, 128])
def test_render_face_any_size(size):
    image = render_face(character_for_id("c0001"), NEUTRAL, "cartoon", size, np.random.default_rng(0))
    assert image.mode == "RGB" and image.size == (size, size)


def test_every_emotion_renders_in_every_style():
    seed = 1000
    for emotion in EMOTIONS:
        for style in STYLES:
            seed += 1
            image, labels = sample_still(seed, style=style, emotion=emotion)
            assert image.mode == "RGB" and image.size == (64, 64)
            assert np.asarray(image).std() > 10  # a face was drawn, not a blank square
            assert labels["emotion"] == emotion and labels["style"] == style


def test_labels_are_valid_and_follow_from_the_drawn_parameters():
    for seed in range(300):
        plan = plan_still(seed)
        labels = plan.labels
        assert set(labels) == LABEL_KEYS
        assert labels["source"] == "synthetic"
        assert labels["emotion"] in EMOTIONS and labels["style"] in STYLES
        assert 0.0 <= labels["intensity"] <= 1.0
        emotion, intensity = emotion_of(plan.expression)
        assert labels["emotion"] == emotion and labels["intensity"] == pytest.approx(intensity, abs=1e-3)
        params = action_params(plan.expression, plan.style)
        assert [labels[k] for k in ACTION_PARAMS] == pytest.approx(params.tolist(), abs=1e-3)
        assert labels["character"] == plan.character.character_id
        if emotion != "neutral":
            assert intensity >= 0.2


def test_emotions_and_styles_are_roughly_balanced():
    labels = [plan_still(seed).labels for seed in range(1400)]
    emotions = [lab["emotion"] for lab in labels]
    styles = [lab["style"] for lab in labels]
    for emotion in EMOTIONS:
        assert 0.09 < emotions.count(emotion) / len(labels) < 0.2, emotion
    for style in STYLES:
        assert 0.18 < styles.count(style) / len(labels) < 0.32, style
    strong = [lab["intensity"] for lab in labels if lab["emotion"] != "neutral"]
    assert min(strong) < 0.45 and max(strong) > 0.95


def test_fixed_character_and_style_are_honoured():
    image, labels = sample_still(5, style="stylized_3d", emotion="fear", character_id="c0123")
    assert labels["character"] == "c0123" and labels["style"] == "stylized_3d" and labels["emotion"] == "fear"


# --- frames -------------------------------------------------------------------------------------------------


def _faces(count: int):
    rng = np.random.default_rng(11)
    return [
        (character_for_id(f"c{n * 31:05d}"), expression_for(EMOTIONS[n % 7], 0.9, rng), STYLES[n % 4])
        for n in range(count)
    ]


def test_render_frame_boxes_are_inside_the_frame_and_hold_the_faces():
    width, height = 200, 120
    for seed in range(4):
        faces = _faces(1 + seed % 3)
        frame, boxes = render_frame(faces, width, height, np.random.default_rng(seed))
        assert frame.size == (width, height) and frame.mode == "RGB"
        assert len(boxes) == len(faces)
        # the same rng without faces gives the same scene: what changed is the faces
        empty, _ = render_frame([], width, height, np.random.default_rng(seed))
        changed = np.abs(np.asarray(frame, dtype=int) - np.asarray(empty, dtype=int)).sum(axis=2) > 0
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        # the last face is drawn on top: most of its box has changed
        x0, y0, x1, y1 = boxes[-1]
        assert changed[y0:y1, x0:x1].mean() > 0.6


def test_render_frame_is_deterministic():
    faces = _faces(2)
    a, boxes_a = render_frame(faces, 160, 90, np.random.default_rng(1))
    b, boxes_b = render_frame(faces, 160, 90, np.random.default_rng(1))
    assert png_bytes(a) == png_bytes(b) and boxes_a == boxes_b


# --- data sets ----------------------------------------------------------------------------------------------


def test_build_stills_writes_a_readable_manifest(tmp_path):
    ids = ["c0000", "c0001", "c0002"]
    manifest = build_stills(tmp_path / "set", count=12, size=32, seed=3, styles=["cartoon", "anime"], character_ids=ids)
    frame = read_manifest(manifest)
    assert len(frame) == 12
    assert set(frame["character"]) <= set(ids)
    assert set(frame["style"]) <= {"cartoon", "anime"}
    assert (frame["source"] == "synthetic").all()
    assert frame[list(ACTION_PARAMS)].notna().all().all()
    with Image.open(frame["path"].iloc[0]) as image:
        assert image.size == (32, 32)
    # the same call again writes the same labels
    again = read_manifest(
        build_stills(tmp_path / "again", count=12, size=32, seed=3, styles=["cartoon", "anime"], character_ids=ids)
    )
    columns = ["emotion", "style", "character", "intensity"]
    assert frame[columns].equals(again[columns])


def test_cli_writes_the_manifest(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path / "cli"), "--count", "3", "--size", "32", "--seed", "1"]) == 0
    assert len(read_manifest(tmp_path / "cli" / "manifest.csv")) == 3
    assert "manifest.csv" in capsys.readouterr().out


# --- look variation (issue 14 item 3) ---------------------------------------------------------------------------


def test_a_varied_still_keeps_its_face_and_label_and_changes_its_drawing():
    for seed in range(40):
        plain, varied = plan_still(seed), plan_still(seed, vary_look=True)
        assert "eyes_from" not in plain.labels  # plain stills are what they were
        assert {k: v for k, v in varied.labels.items() if k != "eyes_from"} == plain.labels
        assert varied.expression == plain.expression and varied.character == plain.character
        assert varied.variation == plan_still(seed, vary_look=True).variation  # by seed
        if varied.variation is None:
            assert varied.labels["eyes_from"] == ""
            continue
        assert varied.labels["eyes_from"] == (varied.variation.eyes_from or "")
        assert varied.variation.eyes_from != varied.style  # eyes are borrowed from another style only
        plain_image, _ = sample_still(seed)
        varied_image, _ = sample_still(seed, vary_look=True)
        assert png_bytes(varied_image) != png_bytes(plain_image)


def test_look_variations_borrow_eyes_from_every_other_style_and_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    variations = [synthetic.LookVariation.sample("anime", rng) for _ in range(400)]
    drawn = [v for v in variations if v is not None]
    assert 0.8 * 400 < len(drawn) < 0.97 * 400  # P_PLAIN_LOOK keeps some in the style's own layout
    assert {v.eyes_from for v in drawn} == {None, "realistic", "cartoon", "stylized_3d"}
    heights = np.array([v.eye_height for v in drawn])
    assert heights.min() >= np.exp(-1.0) - 1e-9 and heights.max() <= np.exp(0.25) + 1e-9
    assert all(np.exp(-0.1) - 1e-9 <= v.head_size <= np.exp(0.25) + 1e-9 for v in drawn)


def test_the_varied_set_labels_which_eyes_it_borrowed(tmp_path):
    ids = ["c0000", "c0001"]
    manifest = build_stills(tmp_path / "varied", count=30, size=32, seed=5, character_ids=ids, vary_looks=True)
    frame = read_manifest(manifest)
    borrowed = frame["eyes_from"].dropna()
    assert len(borrowed) > 0 and set(borrowed) <= set(STYLES)
    assert (frame["eyes_from"] != frame["style"]).all()
    plain = read_manifest(build_stills(tmp_path / "plain", count=30, size=32, seed=5, character_ids=ids))
    assert plain["eyes_from"].isna().all()
    assert frame[["emotion", "style", "character"]].equals(plain[["emotion", "style", "character"]])


def test_a_manifest_with_an_unknown_eyes_from_style_is_refused(tmp_path):
    (tmp_path / "face.png").write_bytes(b"")
    (tmp_path / "manifest.csv").write_text("path,emotion,eyes_from\nface.png,fear,watercolour\n")
    with pytest.raises(ValueError, match="eyes_from 'watercolour'"):
        read_manifest(tmp_path / "manifest.csv", check_files=False)


def test_a_manifest_without_its_optional_text_columns_reads(tmp_path):
    (tmp_path / "manifest.csv").write_text("path,emotion\nface.png,fear\n")
    frame = read_manifest(tmp_path / "manifest.csv", check_files=False)
    assert frame["style"].isna().all() and frame["eyes_from"].isna().all()


def test_a_run_without_a_style_also_leaves_out_the_stills_with_its_eyes(tmp_path):
    from training.train_expression import TrainingOptions, train

    manifest = build_stills(tmp_path / "varied", count=60, size=64, seed=2, vary_looks=True)
    frame = read_manifest(manifest)
    borrowed_anime = (frame["eyes_from"] == "anime") & (frame["style"] != "anime")
    assert borrowed_anime.any()  # else the test would not test the exclusion
    options = TrainingOptions(epochs=1, batch_size=8, bf16=False, exclude_style="anime")
    summary = train([manifest], [manifest], tmp_path / "run", options)
    kept = int(((frame["style"] != "anime") & ~borrowed_anime).sum())
    assert summary["train_images"] == summary["val_images"] == kept
