"""One clip from file to engagement report, through Triton: decode → detect → track → encode → engagement.

The clip is streamed in windows of the engagement model's length (32 s). Inside a window, sampled frames go to
`face_detector` in one batched call, detections to the tracker (which runs across windows, so a character keeps
its track id), face crops to `expression_encoder` in one batched call, and the window's tracks to `engagement`.
Only the window in flight holds pixels (its face crops, for the key-moment thumbnails), so memory stays bounded
whatever the clip's length: a 2-hour clip costs its observations (a few numbers per face per sample), not frames.

Nothing is stored here: `analyze_clip` returns the report and the per-face observations, and the caller stores them
in one transaction (facecast.store), so a cancelled or failed analysis leaves nothing half-written.
"""

from __future__ import annotations

import base64
import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterator
from queue import Full, Queue
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from facecast.media import video
from facecast.clients.face_detector import FaceDetector
from facecast.clients.engagement import EngagementScorer, WindowScores
from facecast.clips.scoring import combine_windows
from facecast.engagement_features import (
    MAX_STEPS, MODEL_RATE_HZ, build_window, frame_features, step_count)
from facecast.clients.expression_encoder import ExpressionRecognizer
from facecast.media.images import face_crop
from facecast.report import (
    CharacterSummary, ClipInfo, CurvePoint, EmotionSegment, EngagementReport, KeyMoment, Scored)
from facecast.tracking import FaceTracker
from facecast.vocab import ACTION_PARAMS, AUDIENCE_GROUPS, EMOTIONS, STYLES

WINDOW_S = MAX_STEPS / MODEL_RATE_HZ
KEY_MOMENTS = 5
# A face seen in a single sample was on screen for less than a quarter second: nothing an audience reads, and
# most often a false detection. Such tracks are left out (unless the clip itself has a single sampled frame).
MIN_TRACK_OBSERVATIONS = 2
# The detector's operating threshold favours recall (facecast.clients.face_detector), so weak detections may continue a track,
# but a track only counts once one of its detections is confident (as ByteTrack does): textures in a photograph
# make long, weak tracks (mean score ≈ 0.2) that a real face (≈ 0.5–0.7) never looks like. Only confirmed tracks'
# faces are encoded, which also keeps the encoder's work proportional to the faces on screen.
CONFIRM_SCORE = 0.4  # faces peak at 0.54–0.74 on the test clips, photo textures at ≤ 0.35


# Stage names, in pipeline order, as they appear in the progress callback and the report's timings.
STAGES = ("decode", "detect", "track", "encode", "engagement")

# (stage, fraction of the clip that stage has finished, in [0, 1]): "decode" as frames stream in; "detect", "track",
# "encode" and "engagement" each time a 32-s window has been through them.
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class AnalysisOptions:
    base_rate_hz: float = 4.0  # one frame per step of the engagement model...
    max_rate_hz: float = 8.0  # ...and up to twice that where the picture changes
    max_long_side: int = 960  # frames are scaled down to this before detection and cropping (faces stay ≥ 64 px)

    def fingerprint(self, models: dict[str, str]) -> str:
        """Identifies what produced a report: the same clip with the same settings and models is not redone."""
        text = repr((self.base_rate_hz, self.max_rate_hz, self.max_long_side, sorted(models.items())))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Observation:
    """One face seen at one sampled frame, after tracking and expression encoding (a `clip_faces` row)."""

    t_s: float
    track_id: int
    box: tuple[float, float, float, float]  # normalised to [0, 1] of the upright frame
    detection_score: float
    emotion_probs: np.ndarray
    style_probs: np.ndarray
    action_params: np.ndarray

    @property
    def emotion(self) -> str:
        return EMOTIONS[int(np.argmax(self.emotion_probs))]

    def features(self) -> np.ndarray:
        return frame_features(self.emotion_probs, self.style_probs, self.action_params, self.box,
                              self.detection_score)


@dataclass
class Analysis:
    report: EngagementReport
    observations: list[Observation]
    fingerprint: str


@dataclass
class _Clock:
    """Seconds spent per stage; decoding is the time spent waiting for the next sampled frame."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def timed(self, stage: str, action, *args):
        start = time.perf_counter()
        try:
            return action(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - start

    def frames(self, frames: Iterator) -> Iterator:
        """Time spent waiting for frames (with prefetching, only the part decoding could not hide)."""
        while True:
            start = time.perf_counter()
            try:
                frame = next(frames)
            except StopIteration:
                return
            finally:
                self.seconds["decode"] += time.perf_counter() - start
            yield frame


class ClipAnalyzer:
    """The three Triton models the pipeline needs; one analyzer serves many clips (and threads)."""

    def __init__(self, detector: FaceDetector, recognizer: ExpressionRecognizer, scorer: EngagementScorer,
                 options: AnalysisOptions | None = None):
        self.detector, self.recognizer, self.scorer = detector, recognizer, scorer
        self.options = options or AnalysisOptions()

    @classmethod
    def for_urls(cls, urls: list[str], options: AnalysisOptions | None = None) -> "ClipAnalyzer":
        from facecast.serving.client import TritonModelClient
        from facecast.vocab import ENGAGEMENT, EXPRESSION_ENCODER, FACE_DETECTOR

        return cls(FaceDetector(TritonModelClient(FACE_DETECTOR, urls)),
                   ExpressionRecognizer(TritonModelClient(EXPRESSION_ENCODER, urls)),
                   EngagementScorer(TritonModelClient(ENGAGEMENT, urls)), options)

    def models(self) -> dict[str, str]:
        return {client.model_name: client.signature.version or "1"
                for client in (self.detector.client, self.recognizer.client, self.scorer.client)}

    def analyze(self, path: str | Path, *, name: str | None = None, sha256: str | None = None,
                progress: Progress | None = None, cancel: threading.Event | None = None) -> Analysis:
        """Analyse one clip file. Raises facecast.media.video.MediaError for unusable files, AnalysisCancelled when cancelled,
        and facecast.serving.client errors when Triton is down or a model is missing."""
        path = Path(path)
        started = time.perf_counter()
        info = video.probe_video(path)
        models = self.models()  # fails fast (Triton down, model missing) before any decoding
        clip = ClipInfo(name=name or path.name, sha256=sha256 or file_sha256(path), size_bytes=path.stat().st_size,
                        duration_s=round(float(info.duration_s), 3), width=int(info.width),
                        height=int(info.height), fps=round(float(info.average_fps or 0.0), 3),
                        codec=str(info.codec), rotation=int(info.rotation_degrees))
        clock = _Clock()
        tracker = FaceTracker()
        self._track_best_score: dict[int, float] = {}
        observations: list[Observation] = []
        windows: list[_ScoredWindow] = []
        seen: dict[int, int] = {}  # observations per track so far
        counts = dict.fromkeys(("frames_sampled", "faces_detected", "faces_encoded", "windows"), 0)
        stats = video.SamplingStats()

        def decode_progress(fraction: float) -> None:
            if progress:
                progress("decode", fraction)

        frames = video.sample_frames(path, base_rate_hz=self.options.base_rate_hz,
                                     max_rate_hz=self.options.max_rate_hz, max_long_side=self.options.max_long_side,
                                     progress=decode_progress, cancel=cancel, stats=stats)
        for window_start, window_frames in _windows(clock.frames(_prefetched(frames)), WINDOW_S):
            if cancel is not None and cancel.is_set():
                raise video.AnalysisCancelled(f"analysis of {clip.name} was cancelled")
            counts["frames_sampled"] += len(window_frames)
            window_observations, crops = self._observe(window_frames, tracker, clock, counts)
            observations += window_observations
            for observation in window_observations:
                seen[observation.track_id] = seen.get(observation.track_id, 0) + 1
            readable = {tid for tid, n in seen.items() if n >= MIN_TRACK_OBSERVATIONS}
            # Scored now, so this window's crops can be dropped once its key-moment thumbnails are cut.
            windows.append(self._score_window(window_start, window_observations, crops, clock,
                                              readable if counts["frames_sampled"] >= MIN_TRACK_OBSERVATIONS
                                              else set(seen)))
            if progress:
                done = min(1.0, (window_start + WINDOW_S) / max(clip.duration_s, 1e-9))
                for stage in STAGES[1:]:
                    progress(stage, done)
        if counts["frames_sampled"] >= MIN_TRACK_OBSERVATIONS:
            observations = [o for o in observations if seen[o.track_id] >= MIN_TRACK_OBSERVATIONS]
        counts["tracks"] = len({o.track_id for o in observations})
        counts["tracks_too_short"] = len(seen) - counts["tracks"]
        counts["frames_decoded"] = int(stats.frames_decoded)
        counts["windows"] = len(windows)
        report = EngagementReport(clip=clip, faces_found=bool(observations), counts=counts, models=models)
        if stats.truncated:
            report.notes.append("the file ends early (truncated); the analysis covers the part that decodes")
        if observations:
            duration = max(clip.duration_s, observations[-1].t_s)
            _fill_scores(report, windows, observations, duration)
        else:
            report.notes.append("no faces were found in the clip, so there is no engagement prediction")
        report.timings_s = {stage: round(seconds, 4) for stage, seconds in clock.seconds.items()}
        report.timings_s["total"] = round(time.perf_counter() - started, 4)
        report.timings_s["realtime_factor"] = round(clip.duration_s / max(report.timings_s["total"], 1e-9), 2)
        return Analysis(report, observations, self.options.fingerprint(models))

    # ---- stages -------------------------------------------------------------------------------------------------

    def _observe(self, frames: list, tracker: FaceTracker, clock: _Clock, counts: dict):
        """Detect, track and encode the faces of one window's frames."""
        detections = clock.timed("detect", self.detector.detect, [frame.image for frame in frames])
        faces = []  # (frame, detection, track id)
        best = self._track_best_score
        for frame, frame_detections in zip(frames, detections):
            counts["faces_detected"] += len(frame_detections)
            track_ids = clock.timed("track", tracker.update, frame.t, frame_detections)
            # The tracker gives a duplicate box the id of the stronger detection: one face per track per frame.
            strongest: dict[int, object] = {}
            for detection, track_id in zip(frame_detections, track_ids):
                if track_id not in strongest or detection.score > strongest[track_id].score:
                    strongest[track_id] = detection
            faces += [(frame, detection, track_id) for track_id, detection in strongest.items()]
            for track_id, detection in strongest.items():
                best[track_id] = max(best.get(track_id, 0.0), detection.score)
        faces = [face for face in faces if best[face[2]] >= CONFIRM_SCORE]
        if not faces:
            return [], []
        size = self.recognizer.face_size
        crops = clock.timed("encode", lambda: np.stack([face_crop(f.image, d.box, size) for f, d, _ in faces]))
        predictions = clock.timed("encode", self.recognizer.predict, crops)
        counts["faces_encoded"] += len(predictions)
        observations = []
        for (frame, detection, track_id), prediction in zip(faces, predictions):
            height, width = frame.image.shape[:2]
            x0, y0, x1, y1 = detection.box
            observations.append(Observation(
                t_s=float(frame.t), track_id=int(track_id),
                box=(x0 / width, y0 / height, x1 / width, y1 / height), detection_score=float(detection.score),
                emotion_probs=np.array([prediction.emotion_probs[e] for e in EMOTIONS], np.float32),
                style_probs=np.array([prediction.style_probs[s] for s in STYLES], np.float32),
                action_params=np.array([prediction.action_params[a] for a in ACTION_PARAMS], np.float32)))
        return observations, list(crops)

    def _score_window(self, start: float, observations: list[Observation], crops: list[np.ndarray],
                      clock: _Clock, readable: set[int]) -> "_ScoredWindow":
        tracks = {tid: arrays for tid, arrays in _track_arrays(observations).items() if tid in readable}
        features, mask, slots = build_window(tracks, start)
        if not mask.any():
            return _ScoredWindow(start, None, 0.0, slots, [], 0)
        scores = clock.timed("engagement", self.scorer.score, features[None], mask[None])[0]
        return _ScoredWindow(start, scores, float(mask.sum()), slots,
                             _moment_candidates(scores, start, mask, slots, observations, crops),
                             len(tracks) - len(slots))


@dataclass(frozen=True)
class _ScoredWindow:
    start: float
    scores: WindowScores | None  # None: no face in this window
    observed_steps: float
    slots: list[int]  # the track in each character slot of the model's input
    moments: list[KeyMoment]
    tracks_left_out: int  # tracks seen in the window beyond the model's MAX_CHARACTERS


# ---- helpers ---------------------------------------------------------------------------------------------------


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


_END = object()


def _prefetched(frames: Iterator, depth: int = 48) -> Iterator:
    """Run the frame iterator in a background thread, `depth` frames ahead.

    PyAV decodes with the GIL released, so decoding the next frames overlaps with this thread's waiting on Triton
    (another process): on 2 cores that hides most of the decoding time. The queue is bounded, so memory stays
    bounded; an exception in the decoder (a MediaError, a cancellation) is re-raised here, in the caller's thread."""
    queue: Queue = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        queue.put(frame, timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(_END)
        except BaseException as error:  # handed to the consumer, never lost in the thread
            queue.put(error)

    thread = threading.Thread(target=produce, name="facecast-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        close = getattr(frames, "close", None)
        thread.join(timeout=5)
        if close is not None and not thread.is_alive():
            close()


def _windows(frames: Iterator, window_s: float) -> Iterator[tuple[float, list]]:
    """Group sampled frames into consecutive windows [k·window_s, (k+1)·window_s)."""
    current, start = [], 0.0
    for frame in frames:
        while frame.t >= start + window_s:
            if current:
                yield start, current
            current, start = [], start + window_s
        current.append(frame)
    if current:
        yield start, current


def window_inputs(observations: list[Observation], duration_s: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The engagement model's inputs for a whole clip, window by window, as the pipeline builds them:
    features float32 [W, MAX_CHARACTERS, MAX_STEPS, F], mask float32 [W, MAX_CHARACTERS, MAX_STEPS] and the
    number of clip steps in each window [W] (training on a studio's own clips uses exactly these)."""
    from facecast.engagement_features import window_starts

    tracks = _track_arrays(observations)
    total_steps = step_count(duration_s)
    features, masks, steps = [], [], []
    for start in window_starts(duration_s):
        first = int(round(start * MODEL_RATE_HZ))
        window_steps = max(1, min(MAX_STEPS, total_steps - first))
        window_features, mask, _ = build_window(tracks, start, window_steps)
        features.append(window_features)
        masks.append(mask)
        steps.append(window_steps)
    return np.stack(features), np.stack(masks), np.array(steps, np.int64)


def _by_track(observations: list[Observation]) -> dict[int, list[Observation]]:
    """Observations grouped by track id, each group in time order (as the pipeline produced them)."""
    grouped: dict[int, list[Observation]] = {}
    for observation in observations:
        grouped.setdefault(observation.track_id, []).append(observation)
    return grouped


def _track_arrays(observations: list[Observation]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {tid: (np.array([o.t_s for o in obs]), np.stack([o.features() for o in obs]))
            for tid, obs in _by_track(observations).items()}


def _per_second(curve: np.ndarray, halfwidth: float, duration: float) -> list[CurvePoint]:
    seconds = max(1, int(np.ceil(duration - 1e-9)))
    points = []
    for second in range(seconds):
        part = curve[second * MODEL_RATE_HZ:(second + 1) * MODEL_RATE_HZ]
        if part.size == 0:
            break
        value = float(part.mean())
        scored = Scored.around(value, halfwidth)
        points.append(CurvePoint(float(second), scored.value, scored.low, scored.high))
    return points


def _characters(observations: list[Observation]) -> list[CharacterSummary]:
    summaries = []
    for track_id, obs in sorted(_by_track(observations).items()):
        times = np.array([o.t_s for o in obs])
        emotion_probs = np.stack([o.emotion_probs for o in obs])
        style = STYLES[int(np.stack([o.style_probs for o in obs]).mean(0).argmax())]
        steps = np.unique(np.floor(times * MODEL_RATE_HZ))
        summaries.append(CharacterSummary(
            track_id=track_id, first_s=round(float(times[0]), 3), last_s=round(float(times[-1]), 3),
            observations=len(obs), screen_time_s=round(len(steps) / MODEL_RATE_HZ, 2),
            dominant_emotion=EMOTIONS[int(emotion_probs.mean(0).argmax())], style=style,
            mean_face_height=round(float(np.mean([o.box[3] - o.box[1] for o in obs])), 4),
            timeline=_segments(times, emotion_probs)))
    return summaries


def _segments(times: np.ndarray, emotion_probs: np.ndarray, max_gap_s: float = 1.0) -> list[EmotionSegment]:
    """Consecutive observations with the same top emotion (and no gap over max_gap_s) become one segment."""
    labels = emotion_probs.argmax(1)
    segments, begin = [], 0
    for i in range(1, len(times) + 1):
        if i == len(times) or labels[i] != labels[begin] or times[i] - times[i - 1] > max_gap_s:
            emotion = int(labels[begin])
            end = times[i - 1] + 1.0 / MODEL_RATE_HZ
            segments.append(EmotionSegment(round(float(times[begin]), 3), round(float(end), 3), EMOTIONS[emotion],
                                           round(float(emotion_probs[begin:i, emotion].mean()), 4)))
            begin = i
    return segments


def _fill_scores(report: EngagementReport, windows: list[_ScoredWindow], observations: list[Observation],
                 duration: float) -> None:
    """Clip-level scores, curve, characters and key moments from the scored windows."""
    scored = [w for w in windows if w.scores is not None]
    total_steps = step_count(duration)
    steps = [max(0, min(MAX_STEPS, total_steps - int(round(w.start * MODEL_RATE_HZ)))) for w in scored]
    clip_scores = combine_windows([w.scores for w in scored], [w.observed_steps for w in scored], steps)
    values, widths = clip_scores.values, clip_scores.halfwidths
    report.engagement = Scored.around(values["engagement"], widths["engagement"])
    report.resonance = Scored.around(values["resonance"], widths["resonance"])
    report.shareability = Scored.around(values["shareability"], widths["shareability"])
    report.appeal = {g: Scored.around(values[f"appeal_{g}"], widths[f"appeal_{g}"]) for g in AUDIENCE_GROUPS}
    report.class_probabilities = {k: round(v, 4) for k, v in clip_scores.class_probabilities.items()}
    report.engagement_class = clip_scores.engagement_class

    # The clip's per-step curve: each scored window's curve in place; windows without faces stay at 0 (no
    # character on screen, nothing for the audience to read from faces).
    curve = np.zeros(total_steps, np.float32)
    for window in scored:
        first = int(round(window.start * MODEL_RATE_HZ))
        part = window.scores.curve[:max(0, min(MAX_STEPS, total_steps - first))]
        curve[first:first + part.size] = part
    report.curve = _per_second(curve, clip_scores.curve_halfwidth, duration)
    empty = [w.start for w in windows if w.scores is None]
    if empty:
        report.notes.append("no faces in the 32-s window(s) starting at " + ", ".join(f"{t:.0f} s" for t in empty)
                            + "; the curve is 0 there")
    if any(w.tracks_left_out for w in scored):
        report.notes.append("more than 4 characters were tracked; each 32-s window scores the 4 with the most "
                            "screen time in it")
    report.characters = _characters(observations)
    candidates = [m for w in scored for m in w.moments]
    total_observed = sum(w.observed_steps for w in scored)
    weight_of = {id(m): m.weight * w.observed_steps / total_observed for w in scored for m in w.moments}
    report.key_moments = sorted(sorted(candidates, key=lambda m: weight_of[id(m)], reverse=True)[:KEY_MOMENTS],
                                key=lambda m: m.t_s)


def _moment_candidates(scores: WindowScores, start: float, mask: np.ndarray, slots: list[int],
                       observations: list[Observation], crops: list[np.ndarray]) -> list[KeyMoment]:
    """This window's most heavily weighted steps, each shown by its most expressive face (with a thumbnail)."""
    moments = []
    for step in np.argsort(scores.moment_weights)[::-1]:
        if len(moments) == KEY_MOMENTS:
            break
        if not mask[:, step].any():
            continue
        t_step = start + step / MODEL_RATE_HZ
        in_step = [(i, o) for i, o in enumerate(observations)
                   if o.track_id in slots and t_step - 0.5 / MODEL_RATE_HZ <= o.t_s < t_step + 1.5 / MODEL_RATE_HZ]
        if not in_step:
            continue
        neutral = EMOTIONS.index("neutral")
        index, best = max(in_step, key=lambda item: (1 - item[1].emotion_probs[neutral]) * (item[1].box[3] - item[1].box[1]))
        if any(abs(m.t_s - best.t_s) < 1.0 for m in moments):  # one moment per second is enough
            continue
        moments.append(KeyMoment(t_s=round(best.t_s, 3), weight=round(float(scores.moment_weights[step]), 4),
                                 track_id=best.track_id, emotion=best.emotion,
                                 confidence=round(float(best.emotion_probs.max()), 4),
                                 thumbnail_png_b64=_png_b64(crops[index])))
    return moments


def _png_b64(crop: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
