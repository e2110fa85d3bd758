"""Synthetic clips: scripts, what the viewer sees, the engagement ground truth, and rendering."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

from facecast.engagement_features import MODEL_RATE_HZ, step_times
from facecast.vocab import EMOTIONS, STYLES
from training.data import clips
from training.data.clips import (
    NOISE_SD,
    Camera,
    ClipScript,
    ClipScriptError,
    Keyframe,
    Shot,
    character_crops,
    character_states,
    crop_rect,
    engagement_truth,
    observed_targets,
    render_frames,
    sample_clip_script,
    write_clip,
)
from training.data.synthetic import (
    GEOMETRY_FIELDS,
    character_for_id,
    draw_face,
    emotion_of,
    emotions_of,
    expression_for,
    expression_in_style,
    face_box,
)


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _short(seed: int = 7, **kwargs) -> ClipScript:
    """A small, quick clip to render."""
    return dataclasses.replace(sample_clip_script(seed, duration_s=3.0, width=192, height=108, **kwargs), fps=8.0)


def test_scripts_are_deterministic_and_survive_json():
    for seed in range(20):
        script = sample_clip_script(seed)
        assert script == sample_clip_script(seed)
        assert ClipScript.from_dict(json.loads(json.dumps(script.to_dict()))) == script
        assert 3.0 <= script.duration_s <= 30.0 and 1 <= len(script.characters) <= 4
    assert sample_clip_script(1) != sample_clip_script(2)
    a, b = observed_targets(sample_clip_script(5)), observed_targets(sample_clip_script(5))
    assert a.engagement == b.engagement and np.array_equal(a.curve, b.curve)


def test_bad_scripts_get_a_clear_error():
    data = sample_clip_script(3).to_dict()
    data["characters"][0]["style"] = "watercolour"
    with pytest.raises(ClipScriptError, match="unknown style"):
        ClipScript.from_dict(data)
    with pytest.raises(ClipScriptError, match="not a clip script"):
        ClipScript.from_dict({"seed": 1})
    with pytest.raises(ClipScriptError, match="3–30 s"):
        sample_clip_script(1, duration_s=45)


def test_synthetic_hooks_agree_with_the_painter():
    rng = np.random.default_rng(0)
    faces = [
        expression_in_style(expression_for(EMOTIONS[i % 7], float(rng.random()), rng), STYLES[i % 4])
        for i in range(300)
    ]
    index, intensity = emotions_of(np.array([[getattr(f, g) for g in GEOMETRY_FIELDS] for f in faces]))
    for face, k, v in zip(faces, index, intensity):
        label, strength = emotion_of(face)
        assert EMOTIONS[k] == label and math.isclose(v, strength, abs_tol=1e-9)
    for character_id in ("c00003", "c00410", "c01333"):
        character = character_for_id(character_id)
        for style in STYLES:
            image = Image.new("RGB", (300, 300))
            drawn = draw_face(
                image,
                character,
                faces[0],
                style,
                (150, 160),
                120.0,
                np.random.default_rng(2),
                roll_degrees=-9,
                yaw=0.3,
                body=True,
            )
            assert np.allclose(drawn, face_box(character, style, (150, 160), 120.0, -9), atol=1e-6)


def test_targets_in_range_and_classes_roughly_balanced():
    classes = []
    for seed in range(240):
        script = sample_clip_script(10_000 + seed)
        for truth in (engagement_truth(script), observed_targets(script)):
            for value in (truth.engagement, truth.resonance, truth.shareability, *truth.appeal, *truth.curve):
                assert 0.0 <= value <= 1.0
            assert len(truth.appeal) == 4 and truth.curve.shape == (math.ceil(script.duration_s * MODEL_RATE_HZ),)
            assert truth.engagement_class == int(np.searchsorted(clips.CLASS_THRESHOLDS, truth.engagement, "right"))
        classes.append(observed_targets(script).engagement_class)
    shares = np.bincount(classes, minlength=3) / len(classes)
    assert shares.min() > 0.22 and shares.max() < 0.45, shares


def test_label_noise_has_the_documented_sd():
    residuals = {name: [] for name in ("engagement", "resonance", "shareability", "appeal", "curve")}
    for seed in range(300):
        script = sample_clip_script(20_000 + seed, duration_s=6.0)
        oracle, observed = engagement_truth(script), observed_targets(script)
        for name in ("engagement", "resonance", "shareability"):
            residuals[name].append(_logit(getattr(observed, name)) - _logit(getattr(oracle, name)))
        residuals["appeal"].extend(_logit(observed.appeal) - _logit(oracle.appeal))
        residuals["curve"].append((_logit(observed.curve) - _logit(oracle.curve))[len(oracle.curve) // 2])
    for name, values in residuals.items():
        values = np.asarray(values)
        assert abs(values.mean()) < 0.2 * NOISE_SD[name], name
        assert abs(values.std() / NOISE_SD[name] - 1) < 0.15, (name, values.std())


def _staged(script: ClipScript, arcs) -> ClipScript:
    """`script` with the given arcs, one wide shot showing everyone, no occluders."""
    characters = tuple(
        dataclasses.replace(c, arc=tuple(arc), face_height=0.3) for c, arc in zip(script.characters, arcs)
    )
    shot = Shot(
        0.0,
        script.duration_s,
        "wide",
        tuple(range(len(characters))),
        Camera(script.aspect / 2, 0.5, 1.0),
        Camera(script.aspect / 2, 0.5, 1.0),
    )
    return dataclasses.replace(script, characters=characters, shots=(shot,), occluders=())


def test_a_well_paced_arc_beats_a_static_face_and_a_frantic_one():
    base = sample_clip_script(42, n_characters=2, duration_s=20.0, mixed_styles=False)
    static = [[Keyframe(0.0, "happiness", 0.6, 1)]] * 2
    cycle = ("happiness", "surprise", "sadness", "anger", "happiness", "fear", "surprise")

    def arc(period, offset, hold):
        keys, t, k = [Keyframe(0.0, "neutral", 0.0, 0)], 0.5 + offset, 0
        while t < 20.0:
            emotion = cycle[k % len(cycle)]
            keys += [
                dataclasses.replace(keys[-1], time=round(t, 3)),
                Keyframe(round(t + 0.4, 3), emotion, 0.9, EMOTIONS.index(emotion) + 1),
                Keyframe(round(t + 0.4 + hold, 3), emotion, 0.8, EMOTIONS.index(emotion) + 1),
            ]
            t, k = t + period, k + 1
        return keys

    paced = [arc(2.6, 0.0, 1.6), arc(2.6, 0.9, 1.4)]  # the second character reacts ~0.9 s later
    frantic = [arc(0.55, 0.0, 0.1), arc(0.55, 0.2, 0.1)]
    dull = engagement_truth(_staged(base, static))
    lively = engagement_truth(_staged(base, paced))
    chaotic = engagement_truth(_staged(base, frantic))
    assert lively.engagement > dull.engagement + 0.3
    assert lively.engagement > chaotic.engagement + 0.2
    assert lively.components["pace_preference"] > 0.8 > chaotic.components["pace_preference"]
    assert lively.components["interplay"] > dull.components["interplay"]
    assert lively.engagement_class == 2 and dull.engagement_class == 0
    assert np.std(lively.curve) > np.std(dull.curve)  # the curve follows the moments


def test_rendered_faces_sit_in_the_boxes_of_character_states():
    script = _short(11, n_characters=2)
    empty = dataclasses.replace(script, shots=tuple(dataclasses.replace(s, characters=()) for s in script.shots))
    frames = list(render_frames(script))
    backgrounds = list(render_frames(empty))
    assert len(frames) == round(script.duration_s * script.fps)
    checked = 0
    for frame, background in zip(frames[::6], backgrounds[::6]):
        assert frame.image.shape == (script.height, script.width, 3) and not background.faces
        states = character_states(script, frame.t)
        assert [f[0] for f in frame.faces] == [s.character_index for s in states if s.visible_fraction > 0]
        diff = np.abs(frame.image.astype(int) - background.image.astype(int)).sum(axis=2)
        for index, box_px, visible in frame.faces:
            state = states[index]
            assert np.allclose(
                np.array(state.box) * (script.width, script.height, script.width, script.height), box_px, atol=1e-6
            )
            x0, y0, x1, y1 = (int(round(v)) for v in box_px)
            inner = diff[y0 + (y1 - y0) // 4 : y1 - (y1 - y0) // 4, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4]
            if visible > 0.9:
                assert (inner > 30).mean() > 0.5  # a face is drawn there
                checked += 1
    assert checked >= 2
    far = np.ones(diff.shape, bool)
    for _, (x0, y0, x1, y1), _ in frames[::6][-1].faces:
        w, h = x1 - x0, y1 - y0
        far[max(0, int(y0 - 0.6 * h)) :, max(0, int(x0 - w)) : int(x1 + w) + 1] = False  # head, hair and body
    assert (diff[far] > 30).mean() < 0.02  # elsewhere only the background


def test_character_crops_look_like_crops_of_the_frame():
    script = _short(4, n_characters=2)
    crops, boxes, visible = character_crops(script)
    steps = math.ceil(script.duration_s * MODEL_RATE_HZ)
    assert crops.shape == (2, steps, 64, 64, 3) and crops.dtype == np.uint8
    assert boxes.shape == (2, steps, 4) and visible.shape == (2, steps)
    for k, t in enumerate(step_times(steps)):
        for state in character_states(script, t):
            assert visible[state.character_index, k] == (state.visible_fraction > 0)
    assert not crops[~visible].any() and not boxes[~visible].any()
    frames = {round(f.t, 6): f for f in render_frames(script)}  # fps 8: every step centre is a frame time
    matched = contrasted = 0
    for i in range(2):
        for k in np.flatnonzero(visible[i])[::3]:
            frame = frames[round(float(step_times(steps)[k]), 6)]
            rect = crop_rect(boxes[i, k], script.width, script.height)
            cut = np.asarray(Image.fromarray(frame.image).resize((64, 64), Image.Resampling.BOX, box=rect))
            same = np.abs(cut.astype(int) - crops[i, k].astype(int)).mean()
            other = np.abs(cut.astype(int) - crops[1 - i, k].astype(int)).mean() if visible[1 - i, k] else None
            assert same < 12, same
            if other is not None:
                assert same * 2 < other
                contrasted += 1
            matched += 1
    assert matched >= 4 and contrasted >= 2
    again = character_crops(script)
    assert np.array_equal(again[0], crops)


def test_cuts_and_occlusion_change_visibility():
    cut_seen = occlusion_seen = False
    for seed in range(400):
        script = sample_clip_script(seed)
        steps = step_times(math.ceil(script.duration_s * MODEL_RATE_HZ))
        geometry = clips._geometry(script, steps)
        if not cut_seen and len(script.shots) > 1 and len(script.characters) > 1:
            for shot in script.shots:
                left_out = [i for i in range(len(script.characters)) if i not in shot.characters]
                inside = (steps >= shot.start) & (steps < shot.end)
                if left_out and inside.any():
                    assert (geometry.visible[left_out][:, inside] == 0).all()
                    t = float(steps[inside][0])
                    assert all(character_states(script, t)[i].box is None for i in left_out)
                    cut_seen = True
        if not occlusion_seen and script.occluders:
            occ = script.occluders[0]
            during = (steps >= occ.start) & (steps <= occ.end)
            outside = ~during
            partly = (geometry.visible[:, during] < 0.99) & (geometry.visible[:, during] > 0)
            if partly.any() and outside.any():
                occlusion_seen = True
        if cut_seen and occlusion_seen:
            break
    assert cut_seen and occlusion_seen


def test_mixed_style_scenes_occur():
    scripts = [sample_clip_script(seed) for seed in range(150)]
    multi = [s for s in scripts if len(s.characters) > 1]
    assert any(s.mixed_style for s in multi) and any(not s.mixed_style for s in multi)
    assert {s.characters[0].style for s in scripts} == set(STYLES)
    forced = sample_clip_script(3, n_characters=3, mixed_styles=True)
    assert len(set(forced.styles)) >= 2
    assert not sample_clip_script(3, n_characters=3, mixed_styles=False).mixed_style


def test_write_clip_encodes_a_real_video(tmp_path):
    from facecast.media.video import probe_video

    script = _short(5)
    path = write_clip(script, tmp_path / "clip.mp4")
    info = probe_video(path)
    assert (info.width, info.height) == (script.width, script.height)
    assert info.frame_count == round(script.duration_s * script.fps)
