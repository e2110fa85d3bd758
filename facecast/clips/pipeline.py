"""One clip from file to engagement report, through Triton: decode → detect → track → encode → engagement.

The clip is streamed in windows of the engagement model's length (32 s). A background thread decodes and samples
(facecast.media.video) a bounded number of frames ahead; as soon as `DETECT_BATCH_FRAMES` sampled frames are there
they go to `face_detector` in one batched call, their detections to the tracker (which runs across windows, so a
character keeps its track id), and the crops of faces whose track is already confirmed to `expression_encoder` in
one batched call, so decoding overlaps inference instead of waiting for a whole window. Faces of a track not yet
confirmed wait (as crops) until their track is confirmed or the window ends; at the window's end its tracks go to
`engagement`. The faces encoded are exactly those whose track is confirmed by the window's end, as when a window was
processed whole. Only frames in flight (the prefetch queue and one detection batch) and the current window's face
crops (for the key-moment thumbnails) hold pixels, so memory stays bounded whatever the clip's length: a 2-hour clip
costs its observations (a few numbers per face per sample), not frames.

Nothing is stored here: `analyze_clip` returns the report and the per-face observations, and the caller stores them
in one transaction (facecast.store), so a cancelled or failed analysis leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from queue import Full, Queue
from typing import Any, TypeVar

import numpy as np

from facecast.clients._common import weights_digest
from facecast.clients.engagement import EngagementScorer
from facecast.clients.expression_encoder import ExpressionPrediction, ExpressionRecognizer
from facecast.clients.face_detector import Detection, FaceDetector
from facecast.clips.report import ClipInfo, EngagementReport
from facecast.clips.scoring import Observation, ScoredWindow, fill_scores, moment_candidates, track_arrays
from facecast.clips.tracking import FaceTracker, appearance
from facecast.engagement_features import (
    DEFAULT_ENGAGEMENT_DESCRIPTION,
    DEFAULT_ENGAGEMENT_VERSION,
    MAX_STEPS,
    MODEL_RATE_HZ,
    build_window,
    step_count,
)
from facecast.media import video
from facecast.media.images import face_crop
from facecast.store.rows import AnalysisRecord, ClipRow, FaceRow, ScoreRow, TrackRow
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

T = TypeVar("T")
WINDOW_S = MAX_STEPS / MODEL_RATE_HZ
# A face seen in a single sample was on screen for less than a quarter second: nothing an audience reads, and
# most often a false detection. Such tracks are left out (unless the clip itself has a single sampled frame).
MIN_TRACK_OBSERVATIONS = 2
# Detections at the operating threshold (facecast.clients.face_detector) may continue a track, but a track only
# counts once one of its detections is confident (as ByteTrack does): a photograph's texture can score above the
# threshold here and there over a long pan, a real face scores far above it most of the time. Only confirmed tracks'
# faces are encoded, which also keeps the encoder's work proportional to the faces on screen.
# For the detector retrained in 2026-12: on the validation scenes 0.6 keeps 85 % of the faces per frame with 0.003
# false detections per scene (docs/results-detection.md), and slow pans over the photographs the detector trains
# on peak at ≤ 0.49 (`python -m benchmarks.photo_pans`, docs/benchmarks.md); true faces score ≈ 0.80 on average
# (training/data/detector_response.json). Pans over held-out photographs peak at up to 0.70 (coins; coffee 0.56), so
# 3 of 16 still confirm a track. (0.4 for the first detector, whose faces
# peaked at 0.54–0.74.)
CONFIRM_SCORE = 0.6


# Sampled frames per face_detector request (16 s of clip at the 4-Hz base rate), so detection starts while the clip
# is still decoding. Measured on the 30-s 720p benchmark clip (benchmarks/analyze.py), with Triton on the same 2
# cores: the Triton tree's CPU time per clip fell from batches of 16 to 32 to 64 frames (≈ 2.4, 2.1, 1.9 s under
# load) while the wall time stayed within the noise, and on these cores CPU time is what the wall time follows.
# 64 is also the served detector's max_batch_size.
DETECT_BATCH_FRAMES = 64

DEFAULT_ENGAGEMENT_MODEL = {"version": DEFAULT_ENGAGEMENT_VERSION, "description": DEFAULT_ENGAGEMENT_DESCRIPTION}

# Stage names, in pipeline order, as they appear in the progress callback and the report's timings.
STAGES = ("decode", "detect", "track", "encode", "engagement")

# (stage, fraction of the clip that stage has finished, in [0, 1]): "decode" as frames stream in; "detect", "track",
# "encode" and "engagement" each time a 32-s window has been through them.
Progress = Callable[[str, float], None]


# Raised whenever a change to sampling, tracking or scoring code changes what a report says, so that stored reports
# made by an older pipeline are recomputed when their clip comes again, not reopened. New weights need no raise since
# 2026-12-07: the fingerprint holds the served weights' digests (ClipAnalyzer.weights); versions 6-8 were raised by
# hand for retrained engagement models. 2: shot cuts and appearance tracking.
# 3: intervals in logit space and the engagement lead margin (and the engagement model retrained without the
# detection-score skew: served models keep their version number when only their weights change). 4: non-reference
# frames are not decoded (a change sample may land one frame later) and the detector's letterbox shrinks by reduce()
# (within one level of the box filter); grid samples and the batching of detection leave reports as they were.
# 5: the tracker's association (established tracks first, appearance ranks pairs within the gates, false cuts,
# look-alike second boxes, confident-look galleries) changes which track a face joins; with it (same release) the
# retrained detector's operating threshold 0.4 and CONFIRM_SCORE 0.6. 6: the engagement model retrained on rows drawn
# from that detector's measured response (its version number stays 1). 7: the engagement model is an ensemble of three
# networks pretrained on ideal-perception clips (version 1 still). 8: its members pretrained for eight epochs, not four.
PIPELINE_VERSION = 8


@dataclass(frozen=True)
class AnalysisOptions:
    base_rate_hz: float = 4.0  # one frame per step of the engagement model...
    max_rate_hz: float = 8.0  # ...and up to twice that where the picture changes
    max_long_side: int = 960  # frames are scaled down to this before detection and cropping (faces stay ≥ 64 px)

    def fingerprint(self, models: dict[str, str], weights: dict[str, str] | None = None) -> str:
        """Identifies what produced a report: the same clip with the same pipeline, settings, model versions and
        weights (ClipAnalyzer.weights) is not redone. Without weights it is the fingerprint reports stored before
        they were part of it carry."""
        text = repr((PIPELINE_VERSION, self.base_rate_hz, self.max_rate_hz, self.max_long_side, sorted(models.items())))
        if weights:
            text += repr(sorted(weights.items()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def engagement_weights(scorer: EngagementScorer, engagement_version: int) -> dict[str, str]:
    """The engagement entry of ClipAnalyzer.weights: the default version's digest; none for a studio's version."""
    digest = weights_digest(scorer.client) if int(engagement_version) == DEFAULT_ENGAGEMENT_VERSION else ""
    return {scorer.client.model_name: digest} if digest else {}


@dataclass
class Analysis:
    report: EngagementReport
    observations: list[Observation]
    fingerprint: str

    def record(self, analysed_by: str | None = None) -> AnalysisRecord:
        """What the store keeps of this analysis (facecast.store.analyses), in one transaction."""
        return analysis_record(self.report, self.observations, self.fingerprint, analysed_by)


def analysis_record(
    report: EngagementReport, observations: list[Observation], fingerprint: str, analysed_by: str | None = None
) -> AnalysisRecord:
    clip, engagement = report.clip, report.engagement
    return AnalysisRecord(
        clip=ClipRow(
            clip.sha256, clip.name, clip.size_bytes, clip.duration_s, clip.width, clip.height, clip.fps, clip.codec
        ),
        fingerprint=fingerprint,
        name=clip.name,
        faces_found=report.faces_found,
        engagement=ScoreRow(engagement.value, engagement.low, engagement.high) if engagement else None,
        engagement_class=report.engagement_class,
        resonance=report.resonance.value if report.resonance else None,
        shareability=report.shareability.value if report.shareability else None,
        report_json=json.dumps(report.as_dict(), separators=(",", ":")),
        tracks=[
            TrackRow(c.track_id, c.first_s, c.last_s, c.observations, c.screen_time_s, c.dominant_emotion, c.style)
            for c in report.characters
        ],
        analysed_by=analysed_by,
        faces=[
            FaceRow(
                o.track_id, o.t_s, o.box, o.detection_score, o.emotion, o.emotion_probs, o.style_probs, o.action_params
            )
            for o in observations
        ],
    )


@dataclass
class _Run:
    """Everything one analysis accumulates. It lives in analyze()'s frame, never on the analyzer: the app shares one
    analyzer across browser sessions, and two analyses at once must not confirm or drop each other's tracks."""

    clock: _Clock
    engagement_version: int = DEFAULT_ENGAGEMENT_VERSION
    tracker: FaceTracker = field(default_factory=FaceTracker)
    best_score: dict[int, float] = field(default_factory=dict)  # strongest detection per track so far
    seen: dict[int, int] = field(default_factory=dict)  # observations per track so far
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("frames_sampled", "faces_detected", "faces_encoded", "windows"), 0)
    )


@dataclass
class _Face:
    """A detected face on its way to an observation: its crop is cut when it is detected, so its frame can go."""

    order: int  # position in the window (frame order, then the tracker's order), as observations are kept
    t: float
    frame_size: tuple[int, int]  # (height, width) of the sampled frame, to normalise the box
    detection: Detection
    track_id: int
    crop: np.ndarray

    def observation(self, prediction: ExpressionPrediction) -> Observation:
        height, width = self.frame_size
        x0, y0, x1, y1 = self.detection.box
        return Observation(
            t_s=float(self.t),
            track_id=int(self.track_id),
            box=(x0 / width, y0 / height, x1 / width, y1 / height),
            detection_score=float(self.detection.score),
            emotion_probs=np.array([prediction.emotion_probs[e] for e in EMOTIONS], np.float32),
            style_probs=np.array([prediction.style_probs[s] for s in STYLES], np.float32),
            action_params=np.array([prediction.action_params[a] for a in ACTION_PARAMS], np.float32),
        )


@dataclass
class _WindowFaces:
    """One window's faces: encoded ones (with their crops) and those waiting for their track to be confirmed."""

    encoded: list[tuple[_Face, Observation]] = field(default_factory=list)
    waiting: list[_Face] = field(default_factory=list)
    next_order: int = 0

    def observations(self) -> tuple[list[Observation], list[np.ndarray]]:
        """The window's observations and their crops, in frame order."""
        ordered = sorted(self.encoded, key=lambda item: item[0].order)
        return [observation for _, observation in ordered], [face.crop for face, _ in ordered]


@dataclass
class _Clock:
    """Seconds spent per stage; decoding is the time spent waiting for the next sampled frame."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def timed(self, stage: str, action: Callable[..., T], *args: object) -> T:
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

    def __init__(
        self,
        detector: FaceDetector,
        recognizer: ExpressionRecognizer,
        scorer: EngagementScorer,
        options: AnalysisOptions | None = None,
    ):
        self.detector, self.recognizer, self.scorer = detector, recognizer, scorer
        self.options = options or AnalysisOptions()

    @classmethod
    def for_urls(cls, urls: list[str], options: AnalysisOptions | None = None) -> ClipAnalyzer:
        return cls(
            FaceDetector.for_urls(urls), ExpressionRecognizer.for_urls(urls), EngagementScorer.for_urls(urls), options
        )

    def models(self, engagement_version: int = DEFAULT_ENGAGEMENT_VERSION) -> dict[str, str]:
        """The served model versions a report comes from (its fingerprint): the engagement version is the one the
        caller chose, the others are the ones each model serves."""
        models = {
            client.model_name: client.signature.version or "1"
            for client in (self.detector.client, self.recognizer.client, self.scorer.client)
        }
        models[self.scorer.client.model_name] = str(int(engagement_version))
        self.scorer.client.require_version(str(int(engagement_version)))
        return models

    def weights(self, engagement_version: int = DEFAULT_ENGAGEMENT_VERSION) -> dict[str, str]:
        """The served weights a report comes from: each model's weights digest at version 1 (the config's
        weights_sha256; export.triton_repository.WEIGHTS_PARAMETER), shortened. A studio's engagement version ≥ 2 is
        never rewritten, so its number in `models` names its weights; it has no entry here."""
        faces = {c.model_name: weights_digest(c) for c in (self.detector.client, self.recognizer.client)}
        return {**{name: d for name, d in faces.items() if d}, **engagement_weights(self.scorer, engagement_version)}

    def fingerprint(self, engagement_version: int = DEFAULT_ENGAGEMENT_VERSION) -> str:
        """What a report of this analyzer with this engagement version is stored under (AnalysisOptions.fingerprint);
        fails fast when Triton or a model is missing."""
        return self.options.fingerprint(self.models(engagement_version), self.weights(engagement_version))

    def analyze(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        sha256: str | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        engagement_model: Mapping[str, Any] | None = None,
    ) -> Analysis:
        """Analyse one clip file. Raises facecast.media.video.MediaError for unusable files (AnalysisCancelled when
        cancelled) and facecast.serving.errors.TritonError when Triton is down or a model is missing.
        `engagement_model`: {"version", "description"} of the engagement version that scores (the store's active
        one, ModelCard.provenance); the shipped default when not given."""
        path = Path(path)
        started = time.perf_counter()
        info = video.probe_video(path)
        engagement_model = dict(engagement_model or DEFAULT_ENGAGEMENT_MODEL)
        # fails fast (Triton down, model missing) before any decoding
        models = self.models(int(engagement_model["version"]))
        weights = self.weights(int(engagement_model["version"]))
        clip = ClipInfo(
            name=name or path.name,
            sha256=sha256 or file_sha256(path),
            size_bytes=path.stat().st_size,
            duration_s=round(float(info.duration_s), 3),
            width=int(info.width),
            height=int(info.height),
            fps=round(float(info.average_fps or 0.0), 3),
            codec=str(info.codec),
            rotation=int(info.rotation_degrees),
        )
        run = _Run(_Clock(), engagement_version=int(engagement_model["version"]))
        clock, counts, seen = run.clock, run.counts, run.seen
        observations: list[Observation] = []
        windows: list[ScoredWindow] = []
        stats = video.SamplingStats()

        def decode_progress(fraction: float) -> None:
            if progress:
                progress("decode", fraction)

        frames = video.sample_frames(
            path,
            base_rate_hz=self.options.base_rate_hz,
            max_rate_hz=self.options.max_rate_hz,
            max_long_side=self.options.max_long_side,
            progress=decode_progress,
            cancel=cancel,
            stats=stats,
        )
        window = _WindowFaces()
        batches = _batches(clock.frames(_prefetched(frames)), WINDOW_S, DETECT_BATCH_FRAMES)
        for window_start, batch, window_ends in batches:
            if cancel is not None and cancel.is_set():
                raise video.AnalysisCancelled(f"analysis of {clip.name} was cancelled")
            counts["frames_sampled"] += len(batch)
            self._observe(batch, run, window)
            if not window_ends:
                continue
            self._encode(run, window, window_ends=True)
            window_observations, crops = window.observations()
            window = _WindowFaces()
            observations += window_observations
            for observation in window_observations:
                seen[observation.track_id] = seen.get(observation.track_id, 0) + 1
            readable = {tid for tid, n in seen.items() if n >= MIN_TRACK_OBSERVATIONS}
            # Scored now, so this window's crops can be dropped once its key-moment thumbnails are cut.
            windows.append(
                clock.timed(
                    "engagement",
                    score_window,
                    self.scorer,
                    run.engagement_version,
                    window_start,
                    window_observations,
                    crops,
                    readable if counts["frames_sampled"] >= MIN_TRACK_OBSERVATIONS else set(seen),
                )
            )
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
        report = EngagementReport(
            clip=clip,
            faces_found=bool(observations),
            counts=counts,
            models=models,
            weights=weights,
            engagement_model=engagement_model,
        )
        if stats.truncated:
            report.notes.append("the file ends early (truncated); the analysis covers the part that decodes")
        if observations:
            duration = max(clip.duration_s, observations[-1].t_s)
            fill_scores(report, windows, observations, duration)
        else:
            report.notes.append("no faces were found in the clip, so there is no engagement prediction")
        report.timings_s = {stage: round(seconds, 4) for stage, seconds in clock.seconds.items()}
        report.timings_s["total"] = round(time.perf_counter() - started, 4)
        report.timings_s["realtime_factor"] = round(clip.duration_s / max(report.timings_s["total"], 1e-9), 2)
        return Analysis(report, observations, self.options.fingerprint(models, weights))

    # ---- stages -------------------------------------------------------------------------------------------------

    def _observe(self, frames: list[video.SampledFrame], run: _Run, window: _WindowFaces) -> None:
        """Detect and track the faces of a batch of consecutive frames, cut their crops, and encode those whose track
        is confirmed (the others wait in `window`)."""
        if not frames:
            return
        clock, counts, best = run.clock, run.counts, run.best_score
        size = self.recognizer.face_size
        detections = clock.timed("detect", self.detector.detect, [frame.image for frame in frames])
        for frame, frame_detections in zip(frames, detections):
            counts["faces_detected"] += len(frame_detections)
            if frame.cut:
                run.tracker.mark_cut(frame.t)
            looks = clock.timed("track", _appearances, frame.image, frame_detections)
            track_ids = clock.timed("track", run.tracker.update, frame.t, frame_detections, looks)
            # The tracker gives a duplicate box the id of the stronger detection: one face per track per frame.
            strongest: dict[int, Detection] = {}
            for detection, track_id in zip(frame_detections, track_ids):
                if track_id not in strongest or detection.score > strongest[track_id].score:
                    strongest[track_id] = detection
            for track_id, detection in strongest.items():
                best[track_id] = max(best.get(track_id, 0.0), detection.score)
                crop = clock.timed("encode", face_crop, frame.image, detection.box, size)
                window.waiting.append(
                    _Face(window.next_order, frame.t, frame.image.shape[:2], detection, track_id, crop)
                )
                window.next_order += 1
        self._encode(run, window, window_ends=False)

    def _encode(self, run: _Run, window: _WindowFaces, *, window_ends: bool) -> None:
        """Encode the waiting faces whose track is confirmed, in one request; at the window's end the faces of tracks
        still unconfirmed are dropped (they never count, as before batches: only confirmed tracks are encoded)."""
        best = run.best_score
        ready = [face for face in window.waiting if best[face.track_id] >= CONFIRM_SCORE]
        window.waiting = [] if window_ends else [f for f in window.waiting if best[f.track_id] < CONFIRM_SCORE]
        if not ready:
            return
        # The heads only (vectors=False): observations keep emotions, styles and action parameters, never the
        # expression vector or the attention map, so Triton need not compute or send them.
        crops = np.stack([face.crop for face in ready])
        predictions = run.clock.timed("encode", self.recognizer.predict, crops, False)
        run.counts["faces_encoded"] += len(predictions)
        window.encoded += [(face, face.observation(prediction)) for face, prediction in zip(ready, predictions)]


def score_window(
    scorer: EngagementScorer,
    version: int,
    start: float,
    observations: list[Observation],
    crops: list[np.ndarray] | None,
    readable: set[int],
) -> ScoredWindow:
    """Score one window's tracks (those in `readable`) with engagement `version`; `crops` (the observations' face
    crops) give the key moments their thumbnails, None leaves them without (re-scoring stored observations)."""
    tracks = {tid: arrays for tid, arrays in track_arrays(observations).items() if tid in readable}
    features, mask, slots = build_window(tracks, start)
    if not mask.any():
        return ScoredWindow(start, None, 0.0, slots, [], 0)
    scores = scorer.score(features[None], mask[None], version)[0]
    return ScoredWindow(
        start,
        scores,
        float(mask.sum()),
        slots,
        moment_candidates(scores, start, mask, slots, observations, crops),
        len(tracks) - len(slots),
    )


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


def _appearances(image: np.ndarray, detections: list[Detection]) -> list[np.ndarray]:
    """Each detected face's appearance vector, for the tracker's re-identification across cuts."""
    return [appearance(image, detection.box) for detection in detections]


def _batches(
    frames: Iterator[video.SampledFrame], window_s: float, size: int
) -> Iterator[tuple[float, list[video.SampledFrame], bool]]:
    """(window start, batch, window ends): consecutive frames of one window [k·window_s, (k+1)·window_s), at most
    `size` at a time, as soon as they are there. `window ends` is True on the last batch of every window that has
    frames; that batch is empty when the window turned out to end right after a full one."""
    batch: list[video.SampledFrame] = []
    start = 0.0
    window_has_frames = False
    for frame in frames:
        while frame.t >= start + window_s:
            if window_has_frames:
                yield start, batch, True
                batch, window_has_frames = [], False
            start += window_s
        batch.append(frame)
        window_has_frames = True
        if len(batch) == size:
            yield start, batch, False
            batch = []
    if window_has_frames:
        yield start, batch, True


def window_inputs(observations: list[Observation], duration_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The engagement model's inputs for a whole clip, window by window, as the pipeline builds them:
    features float32 [W, MAX_CHARACTERS, MAX_STEPS, F], mask float32 [W, MAX_CHARACTERS, MAX_STEPS] and the
    number of clip steps in each window [W] (training on a studio's own clips uses exactly these)."""
    from facecast.engagement_features import window_starts

    tracks = track_arrays(observations)
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
