"""Tracking: detections over time → stable per-character tracks (pure, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from facecast.clients.face_detector import Detection
from facecast.clips.tracking import FaceTracker, TrackerSettings, TrackingError, box_iou, track_faces

RATE_HZ = 4.0


def square(cx: float, cy: float, size: float = 40.0) -> tuple[float, float, float, float]:
    return (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)


def ids_by_truth(tracks, truth_of) -> dict[int, set]:
    """For each track, the set of true characters its observations belong to (one each when nothing swapped)."""
    return {track.track_id: {truth_of[(o.t, o.box)] for o in track.observations} for track in tracks}


def crossing_observations(missing_at_crossing: bool):
    """Two faces walking past each other at almost the same height, A left → right, B right → left; they pass
    between samples 10 and 11."""
    observations, truth_of = [], {}
    for step in range(21):
        t = step / RATE_HZ
        a, b = square(40 + 13 * step, 100), square(320 - 13 * step, 104)
        detections = [Detection(a, 0.9), Detection(b, 0.8)]
        if missing_at_crossing and step in (10, 11):
            detections = [Detection(a, 0.9)]  # B hidden behind A at the crossing
        for detection, who in zip(detections, "AB"):
            truth_of[(t, detection.box)] = who
        observations.append((t, detections))
    return observations, truth_of


@pytest.mark.parametrize("missing_at_crossing", [False, True])
def test_crossing_faces_keep_their_ids(missing_at_crossing) -> None:
    observations, truth_of = crossing_observations(missing_at_crossing)
    tracks = track_faces(observations)
    assert len(tracks) == 2
    assert all(len(who) == 1 for who in ids_by_truth(tracks, truth_of).values()), "identities swapped"
    assert {next(iter(w)) for w in ids_by_truth(tracks, truth_of).values()} == {"A", "B"}


def test_crossing_without_motion_prediction_would_be_ambiguous() -> None:
    """The crossing test is not trivially passed: by IoU with the last box alone, at the sample after the
    crossing each face overlaps the *other* face's previous box more than its own."""
    observations, _ = crossing_observations(False)
    (_, before), (_, after) = observations[10], observations[11]
    overlaps = box_iou([d.box for d in before], [d.box for d in after])
    assert overlaps[0, 1] > overlaps[0, 0] and overlaps[1, 0] > overlaps[1, 1]


def test_vertical_crossing_with_different_sizes() -> None:
    observations, truth_of = [], {}
    for step in range(16):
        t = step / RATE_HZ
        a, b = square(150, 20 + 12 * step, 50), square(160, 200 - 12 * step, 36)
        observations.append((t, [Detection(a, 0.9), Detection(b, 0.9)]))
        truth_of[(t, a)], truth_of[(t, b)] = "A", "B"
    tracks = track_faces(observations)
    assert len(tracks) == 2
    assert all(len(who) == 1 for who in ids_by_truth(tracks, truth_of).values())


def test_missed_samples_do_not_break_a_track() -> None:
    observations = []
    for step in range(20):
        t = step / RATE_HZ
        detections = [] if step in (5, 6, 12) else [Detection(square(50 + 5 * step, 60), 0.7)]
        observations.append((t, detections))
    tracks = track_faces(observations)
    assert len(tracks) == 1
    assert len(tracks[0].observations) == 17
    assert tracks[0].first_time == 0.0 and tracks[0].last_time == 19 / RATE_HZ


def test_reidentification_after_an_occlusion_longer_than_the_gap_tolerance() -> None:
    settings = TrackerSettings(max_gap_s=0.5, reid_window_s=2.0)
    tracker = FaceTracker(settings)
    for step in range(8):
        tracker.update(step / RATE_HZ, [Detection(square(100, 100), 0.9)])
    for step in range(8, 13):  # 1.25 s hidden: beyond max_gap_s, within the re-identification window
        tracker.update(step / RATE_HZ, [])
    tracker.update(13 / RATE_HZ, [Detection(square(108, 102), 0.9)])
    tracker.update(14 / RATE_HZ, [Detection(square(110, 102), 0.9)])
    tracks = tracker.tracks()
    assert len(tracks) == 1 and len(tracks[0].observations) == 10


def test_a_face_far_away_after_a_long_gap_is_a_new_track() -> None:
    tracker = FaceTracker(TrackerSettings(max_gap_s=0.5, reid_window_s=2.0))
    for step in range(6):
        tracker.update(step / RATE_HZ, [Detection(square(60, 60), 0.9)])
    for step in range(6, 10):
        tracker.update(step / RATE_HZ, [Detection(square(400, 300), 0.9)])
    assert len(tracker.tracks()) == 2


def test_a_marked_cut_starts_new_tracks_even_at_the_same_place() -> None:
    observations = [(step / RATE_HZ, [Detection(square(100, 100), 0.9)]) for step in range(12)]
    assert len(track_faces(observations)) == 1
    tracks = track_faces(observations, cuts=[6 / RATE_HZ])
    assert len(tracks) == 2
    assert tracks[0].last_time < tracks[1].first_time == 6 / RATE_HZ


def test_boxes_jumping_at_an_unmarked_cut_start_new_tracks() -> None:
    observations = []
    for step in range(12):
        boxes = [square(60, 60), square(250, 60)] if step < 6 else [square(150, 160, 80)]
        observations.append((step / RATE_HZ, [Detection(b, 0.9) for b in boxes]))
    tracks = track_faces(observations)
    assert len(tracks) == 3
    assert sorted(len(t.observations) for t in tracks) == [6, 6, 6]


def test_short_tracks_are_dropped_but_a_one_sample_clip_keeps_its_faces() -> None:
    observations = [(step / RATE_HZ, [Detection(square(100, 100), 0.9)]) for step in range(8)]
    observations[3] = (3 / RATE_HZ, [Detection(square(100, 100), 0.9), Detection(square(300, 40, 20), 0.4)])
    tracks = track_faces(observations)
    assert len(tracks) == 1 and len(tracks[0].observations) == 8
    single = track_faces([(0.0, [Detection(square(10, 10), 0.9), Detection(square(90, 10), 0.8)])])
    assert len(single) == 2


def test_duplicate_detections_of_one_face_share_a_track() -> None:
    tracker = FaceTracker()
    ids = tracker.update(0.0, [Detection(square(100, 100), 0.6), Detection(square(103, 101), 0.9)])
    assert ids[0] == ids[1]
    tracker.update(0.25, [Detection(square(102, 100), 0.9)])
    (track,) = tracker.tracks()
    assert [o.score for o in track.observations] == [0.9, 0.9]


def test_ids_are_renumbered_by_first_appearance_and_accept_box_score_pairs() -> None:
    observations = [
        (0.0, [(square(50, 50), 0.9)]),
        (0.25, [(square(52, 50), 0.9), (square(200, 50), 0.8)]),
        (0.5, [(square(54, 50), 0.9), (square(202, 50), 0.8)]),
    ]
    tracks = track_faces(observations)
    assert [t.track_id for t in tracks] == [0, 1]
    assert tracks[0].first_time == 0.0 and tracks[1].first_time == 0.25
    assert tracks[1].box_at(0.5) == square(202, 50)
    t, box, score = tracks[1].observations[0]  # observations are (t, box, score) tuples
    assert (t, box, score) == (0.25, square(200, 50), 0.8)
    assert np.isclose(tracks[0].mean_score, 0.9)


def test_normalised_coordinates_track_like_pixels() -> None:
    pixels, _ = crossing_observations(True)
    normalised = [(t, [Detection(tuple(v / 400 for v in d.box), d.score) for d in ds]) for t, ds in pixels]
    assert [len(t.observations) for t in track_faces(normalised)] == [len(t.observations) for t in track_faces(pixels)]


@pytest.mark.parametrize(
    "detection, message",
    [
        ((square(0, 0),), "box and a score"),
        (((1.0, 2.0, 3.0), 0.5), "4 finite numbers"),
        (((10.0, 10.0, 5.0, 20.0), 0.5), "x1 > x0"),
        (((0.0, 0.0, float("nan"), 1.0), 0.5), "finite"),
    ],
)
def test_bad_detections_are_rejected_with_a_sentence(detection, message) -> None:
    with pytest.raises(TrackingError, match=message):
        FaceTracker().update(0.0, [detection])


def test_time_must_not_go_backwards() -> None:
    tracker = FaceTracker()
    tracker.update(1.0, [])
    with pytest.raises(TrackingError, match="time order"):
        tracker.update(0.5, [])


def test_appearance_is_a_colour_distribution_comparable_by_dot_product() -> None:
    from facecast.clips.tracking import appearance

    frame = np.zeros((200, 300, 3), np.uint8)
    frame[20:80, 20:80] = (220, 180, 150)  # a pale face
    frame[100:160, 200:260] = (60, 160, 70)  # a green one
    frame[120:180, 20:80] = (222, 178, 152)  # the pale one again, elsewhere
    pale, green, pale_again = (
        appearance(frame, box) for box in ((20, 20, 80, 80), (200, 100, 260, 160), (20, 120, 80, 180))
    )
    assert abs(float(pale @ pale) - 1.0) < 1e-6
    assert float(pale @ pale_again) > 0.95 and float(pale @ green) < 0.2
    assert appearance(frame, (295, 195, 400, 400)).shape == pale.shape  # a box past the frame edge is clipped


def test_appearance_carries_each_character_across_a_cut() -> None:
    """Two characters, then a cut to a closer shot where they stand elsewhere, swapped: by position alone they get
    new IDs; by appearance each keeps its own."""
    pale, green = np.array([0.0, 1.0]), np.array([1.0, 0.0])  # any vectors: the tracker compares by dot product
    tracker = FaceTracker()
    for step in range(8):
        tracker.update(
            step / RATE_HZ, [Detection(square(80, 100), 0.9), Detection(square(300, 100), 0.9)], [pale, green]
        )
    tracker.mark_cut(8 / RATE_HZ)
    for step in range(8, 16):
        ids = tracker.update(
            step / RATE_HZ, [Detection(square(90, 150, 80), 0.9), Detection(square(320, 150, 80), 0.9)], [green, pale]
        )
        assert ids == [1, 0]  # the green face (track 1) now on the left, the pale one (track 0) on the right
    assert len(tracker.tracks()) == 2


def test_a_new_character_after_a_cut_gets_a_new_id() -> None:
    tracker = FaceTracker()
    for step in range(6):
        tracker.update(step / RATE_HZ, [Detection(square(80, 100), 0.9)], [np.array([0.0, 1.0])])
    tracker.mark_cut(6 / RATE_HZ)
    ids = tracker.update(6 / RATE_HZ, [Detection(square(80, 100), 0.9)], [np.array([1.0, 0.0])])
    assert ids == [1]  # same place, other look: not the earlier character


def test_appearance_vectors_must_match_the_detections() -> None:
    with pytest.raises(TrackingError, match="2 appearance vectors for 1 detections"):
        FaceTracker().update(0.0, [Detection(square(80, 100), 0.9)], [np.ones(4), np.ones(4)])


def test_a_second_box_inside_a_face_is_the_same_face() -> None:
    """A detector's extra box on part of a face (IoU with the face box well under duplicate_iou) starts no second
    track that would alternate with the first."""
    tracker = FaceTracker()
    for step in range(8):
        face = square(100 + 5 * step, 100, 60)
        inner = (face[0] + 15, face[1] + 20, face[2] - 15, face[3] - 10)  # IoU 0.33, wholly inside
        ids = tracker.update(step / RATE_HZ, [Detection(face, 0.9), Detection(inner, 0.6)])
        assert ids[0] == ids[1] == 0
    assert len(tracker.tracks()) == 1


def test_a_new_pipeline_version_changes_the_fingerprint(monkeypatch) -> None:
    """Stored reports of an older pipeline (before cut and appearance tracking) are recomputed, not reopened."""
    from facecast.clips import pipeline

    models = {"face_detector": "1", "expression_encoder": "1", "engagement": "1"}
    current = pipeline.AnalysisOptions().fingerprint(models)
    assert current == pipeline.AnalysisOptions().fingerprint(dict(reversed(models.items())))  # order-free
    monkeypatch.setattr(pipeline, "PIPELINE_VERSION", pipeline.PIPELINE_VERSION - 1)
    assert pipeline.AnalysisOptions().fingerprint(models) != current


def test_new_weights_under_the_same_version_change_the_fingerprint() -> None:
    """A retrained model served as version 1 again retires the reports the old weights made; reports stored before
    weights were recorded keep the fingerprint they were stored under (so they still re-score)."""
    from facecast.clips.pipeline import AnalysisOptions

    models = {"face_detector": "1", "expression_encoder": "1", "engagement": "1"}
    weights = {"face_detector": "aa", "expression_encoder": "bb", "engagement": "cc"}
    options = AnalysisOptions()
    current = options.fingerprint(models, weights)
    assert current == options.fingerprint(models, dict(reversed(weights.items())))
    assert options.fingerprint(models, {**weights, "engagement": "dd"}) != current
    assert options.fingerprint(models, {}) == options.fingerprint(models) != current


# ---- association: issue 14's ID switches (benchmarks/tracking.py --replay --explain names the causes) -------------


def look(k: int, size: int = 8) -> np.ndarray:
    """A stand-in appearance vector: unit length, unlike every other k (dot product 0)."""
    vector = np.zeros(size, np.float32)
    vector[k] = 1.0
    return vector


def test_a_shifted_second_box_that_looks_alike_is_the_same_face() -> None:
    """The detector's second box on one face, shifted by a third of its width (IoU ≈ 0.4, below duplicate_iou), with
    the same colours: one face. The same overlap between faces that look different stays two faces."""
    tracker = FaceTracker()
    ids = tracker.update(0.0, [Detection(square(100, 100), 0.5), Detection(square(117, 100), 0.4)], [look(0), look(0)])
    assert ids[0] == ids[1]
    other = FaceTracker().update(
        0.0, [Detection(square(100, 100), 0.5), Detection(square(117, 100), 0.4)], [look(0), look(1)]
    )
    assert other[0] != other[1]


def test_a_young_track_does_not_take_an_established_tracks_face() -> None:
    """A spurious box next to a tracked face starts a track; at the next sample the one detection overlaps that young
    track's box more than the established track's, yet continues the established track."""
    tracker = FaceTracker()
    for step in range(5):
        tracker.update(step / RATE_HZ, [Detection(square(100, 100), 0.9)])
    ids = tracker.update(5 / RATE_HZ, [Detection(square(100, 100), 0.9), Detection(square(125, 100), 0.3)])
    assert ids == [0, 1]  # IoU 0.23 with the face: a track of its own
    assert box_iou([square(115, 100)], [square(125, 100)])[0, 0] > box_iou([square(115, 100)], [square(100, 100)])[0, 0]
    assert tracker.update(6 / RATE_HZ, [Detection(square(115, 100), 0.9)]) == [0]


def test_a_face_overlapping_a_continued_face_starts_no_track() -> None:
    """A box overlapping (IoU ≥ birth_overlap) a face that continues its track is that face's second box: it gets
    the face's ID instead of a track that would alternate with it."""
    tracker = FaceTracker()
    for step in range(4):
        tracker.update(step / RATE_HZ, [Detection(square(100, 100), 0.9)])
    assert tracker.update(4 / RATE_HZ, [Detection(square(100, 100), 0.9), Detection(square(115, 105), 0.3)]) == [0, 0]
    assert [len(track.observations) for track in tracker.tracks()] == [5]


def test_a_track_whose_prediction_missed_continues_near_its_last_box() -> None:
    """A face walking right that turns back: its prediction runs on to the right (IoU 0.14, 0.75 face sizes off the
    face), but the face is still next to the track's last box, so it keeps its ID."""
    tracker = FaceTracker()
    for step in range(6):
        tracker.update(step / RATE_HZ, [Detection(square(100 + 20 * step, 100), 0.9)])
    for step in range(6, 10):
        assert tracker.update(step / RATE_HZ, [Detection(square(200 - 10 * (step - 5), 100), 0.9)]) == [0]
    assert len(tracker.tracks()) == 1


def test_appearance_decides_between_two_tracks_that_could_take_a_face() -> None:
    """Two characters side by side; one goes out of view and the other steps towards its place: the face is within
    both tracks' gates and overlaps the absent character's box more, but looks like the one that moved."""
    tracker = FaceTracker()
    for step in range(5):
        tracker.update(
            step / RATE_HZ, [Detection(square(100, 100), 0.9), Detection(square(140, 100), 0.9)], [look(0), look(1)]
        )
    overlaps = box_iou([square(118, 100)], [square(100, 100), square(140, 100)])[0]
    assert overlaps[0] > overlaps[1] >= TrackerSettings().min_similarity
    assert tracker.update(5 / RATE_HZ, [Detection(square(118, 100), 0.9)], [look(1)]) == [1]
    # without appearance vectors, position alone decides
    blind = FaceTracker()
    for step in range(5):
        blind.update(step / RATE_HZ, [Detection(square(100, 100), 0.9), Detection(square(140, 100), 0.9)])
    assert blind.update(5 / RATE_HZ, [Detection(square(118, 100), 0.9)]) == [0]


def test_a_false_cut_keeps_faces_that_stay_put_and_look_alike() -> None:
    """A marked cut after which a face is where it was and looks much the same (an occluder passing, a pan: much of
    the picture moved) ends no track, even where the likeness (0.8) is below what re-identification anywhere needs
    (min_appearance); the same place with another look still starts a new one."""
    tracker = FaceTracker()
    faces = [Detection(square(80, 100), 0.9), Detection(square(300, 100), 0.9)]
    for step in range(6):
        tracker.update(step / RATE_HZ, faces, [look(0), look(1)])
    tracker.mark_cut(6 / RATE_HZ)
    shaded = 0.8 * look(0) + 0.6 * look(3)
    assert float(shaded @ look(0)) < TrackerSettings().min_appearance
    assert tracker.update(6 / RATE_HZ, faces, [shaded, look(2)]) == [0, 2]
    assert len(tracker.tracks()) == 2  # the new face has one observation so far


def test_reidentification_uses_a_tracks_confident_looks_when_its_mean_has_drifted() -> None:
    """A face seen clearly, then half hidden for a while (weak detections, other colours: the running mean drifts),
    then in a new shot clearly again: its confident looks still recognise it."""
    tracker = FaceTracker()
    blend = (look(0) + 2 * look(2)) / np.linalg.norm(look(0) + 2 * look(2))
    for step in range(4):
        tracker.update(step / RATE_HZ, [Detection(square(100, 100), 0.9)], [look(0)])
    for step in range(4, 12):
        tracker.update(step / RATE_HZ, [Detection(square(100, 100), 0.2)], [blend])
    tracker.mark_cut(12 / RATE_HZ)
    assert tracker.update(12 / RATE_HZ, [Detection(square(300, 200, 80), 0.9)], [look(0)]) == [0]
