"""Face tracks: per-frame detections → one stable track per character over a clip.

The detector sees frames one at a time; the engagement model needs "character 1 over time". The tracker links
detections of consecutive samples by where each track is expected to be:

- **Motion prediction.** Each track keeps a constant-velocity estimate of its box (centre and size, per second,
  smoothed over its last observations). A detection is compared with the box the track predicts at the
  detection's time, so two faces that cross keep their identities: each track expects its own face on its own
  side, where IoU with the last box alone would be ambiguous.
- **Matching.** Similarity = IoU with the predicted box, or, for small or fast faces that no longer overlap their
  prediction, a centre-distance score relative to the face size; pairs whose sizes differ by more than
  `max_size_ratio` never match. Within these gates (`min_similarity`), with appearance vectors, pairs rank by
  similarity + `appearance_weight` × how alike they look, so where two tracks could take a face (characters close
  together, one passing behind the other) the one that looks like it does. Pairs are assigned best-first (one
  detection per track, one track per detection); established tracks (`established_observations`) first, then
  younger ones, so a spurious box's young track never takes an established character's face.
- **Gaps.** A track that misses samples (a missed detection, a brief occlusion) stays active for `max_gap_s`
  seconds, moving along its prediction. A face its prediction missed (a face half hidden for a sample or two skews
  the velocity), or, after `max_gap_s`, for `reid_window_s` more seconds, an unmatched detection near its last box
  (looser, motion-free gate) continues the track with its old ID.
- **Minimum length.** Tracks with fewer than `min_observations` observations are dropped from the result (isolated
  false detections), except in clips too short to have that many samples (a 1-frame clip still has faces).
- **Cuts.** After a shot cut positions say nothing about identity. The caller marks cuts (`mark_cut(t)`); every
  track then ends, so no face after the cut continues a track by position (that would link whichever character
  happens to stand where another stood), with one exception for false cuts (an occluder or a pan changed much of the
  picture): a face at an ended track's last box (IoU ≥ `cut_keep_iou`, no motion) that looks like it
  (≥ `cut_keep_appearance`) continues it.
- **Appearance.** When the caller gives each detection an appearance vector (`appearance()`: the face's colour
  distribution, which a drawn character keeps across shots while its size and place change), a face that starts a
  new track is first compared with every track not continued at that sample (ended at a cut, lost, or too far
  from its prediction; seen up to `appearance_window_s` ago): if one looks alike (Bhattacharyya coefficient
  ≥ `min_appearance`) with its running mean or any of its gallery (the last `gallery_size` looks of confident
  detections, which a face half hidden for a while cannot drag away), the face continues it, keeping the
  character's ID through cuts and long occlusions.
- **Duplicates.** Boxes of one sample that overlap a stronger one by `duplicate_iou`, or lie mostly inside or
  around it, or (with appearance vectors) overlap it by `duplicate_look_iou` and look alike (`duplicate_look`), are
  one face. So is a face that continues no track but overlaps one that does by `birth_overlap`: it starts no track.

Coordinates may be pixels or normalised: every gate is relative (IoU, distances in face sizes). Torch-free.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

Box = tuple[float, float, float, float]


class TrackingError(ValueError):
    """Observations the tracker cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class TrackerSettings:
    min_similarity: float = 0.2  # below this a detection does not continue a track
    max_gap_s: float = 0.75  # an unmatched track keeps moving along its prediction this long
    reid_window_s: float = 2.0  # then stays dormant this long, re-identifiable near its last box
    reid_distance: float = 1.0  # dormant gate: centre distance in face sizes
    max_size_ratio: float = 1.8  # a face does not grow or shrink more than this between matches
    min_observations: int = 2  # shorter tracks are dropped (unless the clip has fewer samples)
    velocity_smoothing: float = 0.5  # weight of the newest velocity measurement
    duplicate_iou: float = 0.6  # detections of one sample overlapping this much are one face
    duplicate_inside: float = 0.8  # ...or when this share of the smaller box lies inside the larger
    min_appearance: float = 0.85  # re-identification by appearance: Bhattacharyya coefficient of colour histograms
    appearance_window_s: float = 30.0  # how long an ended or lost track can be re-identified by appearance
    appearance_memory: float = 0.8  # weight of a track's earlier appearance in its running mean
    established_observations: int = 3  # tracks this long are matched before younger (tentative) ones
    duplicate_look_iou: float = 0.3  # ...or overlapping this much and looking alike (with appearance vectors)
    duplicate_look: float = 0.9  # "alike": Bhattacharyya coefficient of their colour histograms
    cut_keep_iou: float = 0.6  # after a marked cut, a face this close to a track's last box...
    cut_keep_appearance: float = 0.7  # ...that looks this much like it continues the track (a false cut)
    appearance_weight: float = 3.0  # ranking of pairs within the geometric gates: similarity + this × appearance
    birth_overlap: float = 0.3  # a face overlapping a continued track's face this much starts no new track
    gallery_size: int = 10  # re-identification also compares with a track's last confident looks...
    gallery_min_score: float = 0.4  # ...those of detections this confident (whole, unoccluded faces)


class Observation(NamedTuple):
    """One detection of a track: a (t, box, score) tuple with names."""

    t: float
    box: Box
    score: float


@dataclass
class Track:
    track_id: int
    observations: list[Observation] = field(default_factory=list)

    @property
    def first_time(self) -> float:
        return self.observations[0].t

    @property
    def last_time(self) -> float:
        return self.observations[-1].t

    @property
    def mean_score(self) -> float:
        return float(np.mean([o.score for o in self.observations]))

    def box_at(self, t: float) -> Box | None:
        """The observed box at time t (exactly), or None when the track has no observation then."""
        for observation in self.observations:
            if observation.t == t:
                return observation.box
        return None


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between boxes a [N, 4] and b [M, 4] (x0, y0, x1, y1)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _containment(boxes: np.ndarray) -> np.ndarray:
    """[N, N]: the share of the smaller of each pair of boxes that lies inside the other (1 on the diagonal)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1]), 0, None)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return ix * iy / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-12)


def _as_state(box: Sequence[float] | np.ndarray) -> np.ndarray:
    """(x0, y0, x1, y1) → (cx, cy, w, h)."""
    x0, y0, x1, y1 = box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dtype=np.float64)


def _as_box(state: np.ndarray) -> Box:
    cx, cy, w, h = state
    w, h = max(w, 1e-9), max(h, 1e-9)
    return (float(cx - w / 2), float(cy - h / 2), float(cx + w / 2), float(cy + h / 2))


# A 4 x 4 x 4 joint RGB histogram: coarse enough that lighting, expression and scale barely move it, fine enough
# that characters drawn in different palettes differ. At most ~32 x 32 pixels are read per face (cheap per frame).
_BINS = 4
_SAMPLES = 32


def appearance(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """A face's colour distribution: the square root of a normalised RGB histogram of the box's inner part (the
    box edges hold background), so the dot product of two is their Bhattacharyya coefficient in [0, 1].
    `image` uint8 [H, W, 3], `box` (x0, y0, x1, y1) in its pixels."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box)
    inset_x, inset_y = (x1 - x0) * 0.15, (y1 - y0) * 0.15
    left, right = int(np.clip(x0 + inset_x, 0, width - 1)), int(np.clip(np.ceil(x1 - inset_x), 1, width))
    top, bottom = int(np.clip(y0 + inset_y, 0, height - 1)), int(np.clip(np.ceil(y1 - inset_y), 1, height))
    step_y, step_x = max(1, (bottom - top) // _SAMPLES), max(1, (right - left) // _SAMPLES)
    pixels = image[top : max(bottom, top + 1) : step_y, left : max(right, left + 1) : step_x].reshape(-1, 3)
    bins = pixels.astype(np.int32) * _BINS // 256
    counts = np.bincount((bins[:, 0] * _BINS + bins[:, 1]) * _BINS + bins[:, 2], minlength=_BINS**3)
    return np.sqrt(counts / max(1, counts.sum())).astype(np.float32)


def _bhattacharyya(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] cosine similarity of appearance vectors (their Bhattacharyya coefficient when they are appearance()
    vectors, whose squares sum to 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1)[:, None] * np.linalg.norm(b, axis=1)[None, :]
    return a @ b.T / np.maximum(norms, 1e-12)


def _best_first(score: np.ndarray, minimum: float = -np.inf) -> list[tuple[int, int]]:
    """Greedy one-to-one assignment on a [tracks, faces] score: the best remaining pair first, each row and column
    used once, until no finite score ≥ `minimum` is left (-inf marks pairs that must never match)."""
    score = np.array(score, dtype=np.float64)
    pairs: list[tuple[int, int]] = []
    while score.size:
        row, col = np.unravel_index(int(np.argmax(score)), score.shape)
        if not np.isfinite(score[row, col]) or score[row, col] < minimum:
            break
        pairs.append((int(row), int(col)))
        score[row, :] = -np.inf
        score[:, col] = -np.inf
    return pairs


def _look_similarity(candidates: list[_LiveTrack], faces: np.ndarray) -> np.ndarray:
    """[tracks, faces]: how alike each face looks to each track: its running mean or any of its gallery's confident
    looks, whichever is closer (a face half hidden for a while drags the mean); 0 for a track without appearance."""
    rows = []
    for live in candidates:
        if live.appearance is None:
            rows.append(np.zeros(len(faces)))
        else:
            rows.append(_bhattacharyya(np.stack([live.appearance, *live.gallery]), faces).max(axis=0))
    return np.stack(rows)


@dataclass
class _LiveTrack:
    track: Track
    state: np.ndarray  # cx, cy, w, h at the last observation
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # per second
    ended: bool = False  # by a cut: continued by appearance, or by position only where it looks alike (false cut)
    appearance: np.ndarray | None = None  # running mean of appearance() vectors
    gallery: list[np.ndarray] = field(default_factory=list)  # the last confident detections' appearance() vectors

    def predict(self, t: float, max_gap_s: float) -> np.ndarray:
        dt = min(t - self.track.last_time, max_gap_s)
        predicted = self.state + self.velocity * dt
        predicted[2:] = np.maximum(predicted[2:], self.state[2:] * 0.5)  # extrapolated shrinking stops at half
        return predicted


def _detection_parts(detection: object) -> tuple[Box, float]:
    """A facecast.clients.face_detector.Detection, or a (box, score) pair."""
    if hasattr(detection, "box") and hasattr(detection, "score"):
        box, score = detection.box, detection.score
    else:
        try:
            box, score = detection  # type: ignore[misc]  # any (box, score) pair; checked below
        except (TypeError, ValueError):
            raise TrackingError(f"a detection must have a box and a score, got {detection!r}") from None
    try:
        box = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise TrackingError(f"a detection box must be 4 numbers (x0, y0, x1, y1), got {box!r}") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise TrackingError(f"a detection box must be 4 finite numbers (x0, y0, x1, y1), got {box!r}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise TrackingError(f"a detection box must have x1 > x0 and y1 > y0, got {box!r}")
    return box, float(score)


class FaceTracker:
    """Incremental tracker: call `update(t, detections)` for each sample in time order, then `tracks()`."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.settings = settings or TrackerSettings()
        self._live: list[_LiveTrack] = []
        self._next_id = 0
        self._last_t: float | None = None
        self._samples = 0

    def mark_cut(self, t: float) -> None:
        """A shot cut at time t: every current track ends; faces from now on start new tracks, or continue an ended
        one only by appearance."""
        for live in self._live:
            live.ended = True

    def update(self, t: float, detections: Sequence, appearances: Sequence[np.ndarray] | None = None) -> list[int]:
        """Add one sample's detections at time t (seconds, non-decreasing); returns the track ID of each detection
        (in the order given; a duplicate of a stronger detection gets that detection's ID). `appearances`, one
        `appearance()` vector per detection, lets a face continue a track across a cut or a long gap."""
        t = float(t)
        if not math.isfinite(t):
            raise TrackingError(f"sample time must be a finite number of seconds, got {t}")
        if self._last_t is not None and t < self._last_t:
            raise TrackingError(f"samples must come in time order: got t={t:.3f} s after t={self._last_t:.3f} s")
        if self._last_t is None or t > self._last_t:
            self._samples += 1
        self._last_t = t
        parts = [_detection_parts(d) for d in detections]
        if not parts:
            return []
        if appearances is not None and len(appearances) != len(parts):
            raise TrackingError(f"{len(appearances)} appearance vectors for {len(parts)} detections")
        boxes = np.array([box for box, _ in parts])
        scores = np.array([score for _, score in parts])
        looks = None if appearances is None else np.stack([np.asarray(a, np.float32) for a in appearances])
        keep, duplicate_of = self._suppress_duplicates(boxes, scores, looks)

        settings = self.settings
        active = [
            live
            for live in self._live
            if not live.ended and t - live.track.last_time <= settings.max_gap_s and live.track.last_time < t
        ]
        # Established tracks first: a young track (often a false or second box) must not take their faces.
        established = [live for live in active if len(live.track.observations) >= settings.established_observations]
        assigned = self._assign(t, established, boxes, keep, predicted=True, looks=looks)
        unmatched = [i for i in keep if i not in assigned]
        tentative = [live for live in active if live not in established]
        assigned.update(self._assign(t, tentative, boxes, unmatched, predicted=True, looks=looks))
        unmatched = [i for i in keep if i not in assigned]
        if looks is not None and unmatched:
            assigned.update(self._keep_through_cut(t, boxes, looks, unmatched))
            unmatched = [i for i in keep if i not in assigned]
        # Dormant tracks, and active ones whose prediction missed (a face half hidden for a sample or two skews the
        # velocity): near their last box.
        taken = {id(live) for live in assigned.values()}
        dormant = [
            live
            for live in self._live
            if not live.ended
            and id(live) not in taken
            and live.track.last_time < t
            and t - live.track.last_time <= settings.max_gap_s + settings.reid_window_s
        ]
        if unmatched and dormant:
            assigned.update(self._assign(t, dormant, boxes, unmatched, predicted=False, looks=looks))
        recognised: dict[int, _LiveTrack] = {}
        if appearances is not None:
            unmatched = [i for i in keep if i not in assigned]
            taken = {id(live) for live in assigned.values()}
            # Any track not continued by position at this sample: ended by a cut, lost, or one whose face moved or
            # changed size too much between samples for the geometric gates.
            lost = [
                live
                for live in self._live
                if id(live) not in taken
                and live.appearance is not None
                and live.track.last_time < t
                and t - live.track.last_time <= settings.appearance_window_s
            ]
            recognised = self._assign_by_appearance(lost, appearances, unmatched)
            assigned.update(recognised)

        # A face that continues no track but overlaps one that does (by `birth_overlap`) starts no track of its own:
        # it is that face's second box (the detector's boxes on one face overlap by IoU 0.3-0.4 where its NMS stops);
        # a second face that close is mostly hidden.
        unmatched = [i for i in keep if i not in assigned]
        if unmatched and assigned:
            continued = list(assigned)
            overlap = box_iou(boxes[unmatched], boxes[continued])
            for row, index in enumerate(unmatched):
                if overlap[row].max() >= settings.birth_overlap:
                    duplicate_of[index] = continued[int(np.argmax(overlap[row]))]
            keep = [i for i in keep if i not in duplicate_of]
        ids = {}
        for index in keep:
            live = assigned.get(index)
            if live is None:
                live = _LiveTrack(Track(self._next_id), _as_state(boxes[index]))
                self._next_id += 1
                self._live.append(live)
            elif index in recognised:  # the same character in a new shot or after a long absence: old motion is moot
                live.ended, live.state, live.velocity = False, _as_state(boxes[index]), np.zeros(4)
            else:
                self._advance(live, t, boxes[index])
            if appearances is not None:
                seen = np.asarray(appearances[index], np.float32)
                memory = self.settings.appearance_memory
                live.appearance = seen if live.appearance is None else memory * live.appearance + (1 - memory) * seen
                if scores[index] >= settings.gallery_min_score:
                    live.gallery = [*live.gallery, seen][-settings.gallery_size :]
            x0, y0, x1, y1 = (float(v) for v in boxes[index])
            live.track.observations.append(Observation(t, (x0, y0, x1, y1), float(scores[index])))
            ids[index] = live.track.track_id
        return [ids[duplicate_of.get(i, i)] for i in range(len(parts))]

    def _suppress_duplicates(
        self, boxes: np.ndarray, scores: np.ndarray, looks: np.ndarray | None = None
    ) -> tuple[list[int], dict[int, int]]:
        """A weaker box overlapping a stronger one by `duplicate_iou`, or lying mostly (`duplicate_inside`) inside it
        or around it, is the same face: a detector's second box on one face (the face and its eyes-and-nose part)
        would otherwise start a second track that alternates with the first. With appearance vectors, so is a box
        overlapping by `duplicate_look_iou` that looks alike (`duplicate_look`): the detector's second, shifted box
        on one face (IoU 0.3-0.4 and colours alike), which two faces overlapping that much rarely are."""
        settings = self.settings
        order = list(np.argsort(-scores, kind="stable"))
        iou = box_iou(boxes, boxes)
        overlaps = np.maximum(iou, _containment(boxes) >= settings.duplicate_inside)
        if looks is not None:
            alike = (iou >= settings.duplicate_look_iou) & (_bhattacharyya(looks, looks) >= settings.duplicate_look)
            overlaps = np.maximum(overlaps, alike)
        keep: list[int] = []
        duplicate_of: dict[int, int] = {}
        for index in order:
            stronger = next((k for k in keep if overlaps[index, k] >= settings.duplicate_iou), None)
            if stronger is None:
                keep.append(int(index))
            else:
                duplicate_of[int(index)] = stronger
        return keep, duplicate_of

    def _assign(
        self,
        t: float,
        candidates: list[_LiveTrack],
        boxes: np.ndarray,
        indices: list[int],
        predicted: bool,
        looks: np.ndarray | None = None,
    ) -> dict[int, _LiveTrack]:
        """Best-first assignment of detections `indices` to tracks; returns detection index → track. Pairs within the
        geometric gate (`min_similarity`) rank by their geometric similarity plus `appearance_weight` times how alike
        they look (with appearance vectors `looks`, one per detection): where two tracks could take a face, the one
        that looks like it does."""
        if not candidates or not indices:
            return {}
        settings = self.settings
        states = np.stack([live.predict(t, settings.max_gap_s) if predicted else live.state for live in candidates])
        detection_states = np.stack([_as_state(boxes[i]) for i in indices])
        overlap = box_iou(np.array([_as_box(s) for s in states]), boxes[indices])
        size_track = np.sqrt(states[:, 2] * states[:, 3])[:, None]
        size_detection = np.sqrt(detection_states[:, 2] * detection_states[:, 3])[None, :]
        distance = np.hypot(
            states[:, None, 0] - detection_states[None, :, 0], states[:, None, 1] - detection_states[None, :, 1]
        ) / np.maximum((size_track + size_detection) / 2, 1e-12)
        reach = 0.75 if predicted else settings.reid_distance
        closeness = np.clip(1 - distance / reach, 0, None) * 0.5  # at most 0.5: overlap outranks mere nearness
        similarity = np.maximum(overlap, closeness)
        ratio = np.maximum(size_track / size_detection, size_detection / size_track)
        similarity[ratio > settings.max_size_ratio] = 0.0
        rank = np.where(similarity >= settings.min_similarity, similarity, -np.inf)
        if looks is not None and settings.appearance_weight > 0:
            rank = rank + settings.appearance_weight * _look_similarity(candidates, looks[indices])
        return {indices[col]: candidates[row] for row, col in _best_first(rank)}

    def _keep_through_cut(
        self, t: float, boxes: np.ndarray, looks: np.ndarray, indices: list[int]
    ) -> dict[int, _LiveTrack]:
        """A marked cut that changed nothing of a face (a false cut: an occluder or a pan moved much of the picture):
        a face at a cut-ended track's last box (`cut_keep_iou`, no motion) that looks like it (`cut_keep_appearance`)
        continues it. A real cut moves or changes the faces, and a different character standing exactly there after
        it would not look alike."""
        settings = self.settings
        candidates = [
            live
            for live in self._live
            if live.ended
            and live.appearance is not None
            and live.track.last_time < t
            and t - live.track.last_time <= settings.max_gap_s
        ]
        if not candidates:
            return {}
        overlap = box_iou(np.array([_as_box(live.state) for live in candidates]), boxes[indices])
        alike = _bhattacharyya(np.stack([live.appearance for live in candidates]), looks[indices])  # type: ignore[misc]
        rank = np.where((overlap >= settings.cut_keep_iou) & (alike >= settings.cut_keep_appearance), overlap, -np.inf)
        result: dict[int, _LiveTrack] = {}
        for row, col in _best_first(rank):
            result[indices[col]] = candidates[row]
            candidates[row].ended = False
        return result

    def _assign_by_appearance(
        self, candidates: list[_LiveTrack], appearances: Sequence[np.ndarray], indices: list[int]
    ) -> dict[int, _LiveTrack]:
        """Best-first assignment of detections `indices` to ended or lost tracks by appearance alone."""
        if not candidates or not indices:
            return {}
        similarity = _look_similarity(candidates, np.stack([np.asarray(appearances[i], np.float32) for i in indices]))
        pairs = _best_first(similarity, minimum=self.settings.min_appearance)
        return {indices[col]: candidates[row] for row, col in pairs}

    def _advance(self, live: _LiveTrack, t: float, box: np.ndarray) -> None:
        new_state = _as_state(box)
        dt = t - live.track.last_time
        if 0 < dt <= self.settings.max_gap_s:
            measured = (new_state - live.state) / dt
            alpha = self.settings.velocity_smoothing
            live.velocity = alpha * measured + (1 - alpha) * live.velocity
        else:  # re-identified after a long gap: the old motion is stale
            live.velocity = np.zeros(4)
        live.state = new_state

    def tracks(self) -> list[Track]:
        """Tracks so far with at least `min_observations` observations (fewer only when the clip has had fewer
        samples than that), ordered by first appearance."""
        needed = min(self.settings.min_observations, max(self._samples, 1))
        kept = [live.track for live in self._live if len(live.track.observations) >= needed]
        return sorted(kept, key=lambda track: (track.first_time, track.track_id))


def track_faces(
    observations: Iterable[tuple[float, Sequence]], settings: TrackerSettings | None = None, cuts: Iterable[float] = ()
) -> list[Track]:
    """Tracks for a whole clip: `observations` = (t, detections) per sample in time order; `cuts` = times of shot
    cuts. Track IDs are renumbered 0, 1, ... in order of first appearance."""
    tracker = FaceTracker(settings)
    pending_cuts = sorted(float(c) for c in cuts)
    for t, detections in observations:
        while pending_cuts and pending_cuts[0] <= t:
            tracker.mark_cut(pending_cuts.pop(0))
        tracker.update(t, detections)
    tracks = tracker.tracks()
    for new_id, track in enumerate(tracks):
        track.track_id = new_id
    return tracks
