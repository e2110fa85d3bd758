"""How the engagement model's window outputs become one clip's report: scores, curve, characters, key moments.

The model scores windows of MAX_STEPS steps (32 s). A clip longer than that is cut into consecutive windows;
clip-level scores are the windows' scores weighted by how many character-steps each window observed (a window
with faces on screen for 30 s says more than a 2-s tail), and so are the interval half-widths (a weighted mean of
conformal half-widths keeps roughly the nominal coverage when windows agree and is conservative otherwise).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from facecast.clients.engagement import WindowScores
from facecast.clips.report import CharacterSummary, CurvePoint, EmotionSegment, EngagementReport, KeyMoment, Scored
from facecast.engagement_features import INTERVAL_ORDER, MAX_STEPS, MODEL_RATE_HZ, frame_features, step_count
from facecast.vocab import AUDIENCE_GROUPS, EMOTIONS, ENGAGEMENT_CLASSES, STYLES

KEY_MOMENTS = 5


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
        return frame_features(
            self.emotion_probs, self.style_probs, self.action_params, np.asarray(self.box), self.detection_score
        )


@dataclass(frozen=True)
class ScoredWindow:
    start: float
    scores: WindowScores | None  # None: no face in this window
    observed_steps: float
    slots: list[int]  # the track in each character slot of the model's input
    moments: list[KeyMoment]
    tracks_left_out: int  # tracks seen in the window beyond the model's MAX_CHARACTERS


def by_track(observations: list[Observation]) -> dict[int, list[Observation]]:
    """Observations grouped by track id, each group in time order (as the pipeline produced them)."""
    grouped: dict[int, list[Observation]] = {}
    for observation in observations:
        grouped.setdefault(observation.track_id, []).append(observation)
    return grouped


def track_arrays(observations: list[Observation]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    return {
        tid: (np.array([o.t_s for o in obs]), np.stack([o.features() for o in obs]))
        for tid, obs in by_track(observations).items()
    }


@dataclass(frozen=True)
class ClipScores:
    """Clip-level scores: values and half-widths by name (INTERVAL_ORDER names), class probabilities, curve."""

    values: dict[str, float]
    logit_halfwidths: dict[str, float]
    class_probabilities: dict[str, float]
    curve: np.ndarray  # per step over the whole clip
    curve_logit_halfwidth: float

    @property
    def engagement_class(self) -> str:
        return max(self.class_probabilities, key=lambda name: self.class_probabilities[name])


def combine_windows(windows: list[WindowScores], observed_steps: list[float], window_steps: list[int]) -> ClipScores:
    """One clip's scores from its windows; `observed_steps` weighs each window, `window_steps` trims the curve."""
    if not windows:
        raise ValueError("no windows to combine")
    weights = np.asarray(observed_steps, np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(windows), 1 / len(windows))

    def mean(values: Sequence[float] | Sequence[np.ndarray]) -> float:
        return float(np.dot(weights, np.asarray(values, np.float64)))

    values = {
        "engagement": mean([w.engagement for w in windows]),
        "resonance": mean([w.resonance for w in windows]),
        "shareability": mean([w.shareability for w in windows]),
    }
    for index, group in enumerate(AUDIENCE_GROUPS):
        values[f"appeal_{group}"] = mean([w.appeal[index] for w in windows])
    halfwidths = {name: mean([w.logit_halfwidth(name) for w in windows]) for name in INTERVAL_ORDER}
    probabilities = np.tensordot(weights, np.stack([w.class_probabilities for w in windows]), axes=1)
    curve = np.concatenate([w.curve[:steps] for w, steps in zip(windows, window_steps)])
    assert all(steps <= MAX_STEPS for steps in window_steps)
    return ClipScores(
        values, halfwidths, dict(zip(ENGAGEMENT_CLASSES, map(float, probabilities))), curve, halfwidths["curve"]
    )


# ---- the report's scores, curve, characters and key moments ----------------------------------------------------


def _per_second(curve: np.ndarray, logit_halfwidth: float, duration: float) -> list[CurvePoint]:
    seconds = max(1, int(np.ceil(duration - 1e-9)))
    points = []
    for second in range(seconds):
        part = curve[second * MODEL_RATE_HZ : (second + 1) * MODEL_RATE_HZ]
        if part.size == 0:
            break
        value = float(part.mean())
        scored = Scored.in_logit_interval(value, logit_halfwidth)
        points.append(CurvePoint(float(second), scored.value, scored.low, scored.high))
    return points


def _characters(observations: list[Observation]) -> list[CharacterSummary]:
    summaries = []
    for track_id, obs in sorted(by_track(observations).items()):
        times = np.array([o.t_s for o in obs])
        emotion_probs = np.stack([o.emotion_probs for o in obs])
        style = STYLES[int(np.stack([o.style_probs for o in obs]).mean(0).argmax())]
        steps = np.unique(np.floor(times * MODEL_RATE_HZ))
        summaries.append(
            CharacterSummary(
                track_id=track_id,
                first_s=round(float(times[0]), 3),
                last_s=round(float(times[-1]), 3),
                observations=len(obs),
                screen_time_s=round(len(steps) / MODEL_RATE_HZ, 2),
                dominant_emotion=EMOTIONS[int(emotion_probs.mean(0).argmax())],
                style=style,
                mean_face_height=round(float(np.mean([o.box[3] - o.box[1] for o in obs])), 4),
                timeline=_segments(times, emotion_probs),
            )
        )
    return summaries


def _segments(times: np.ndarray, emotion_probs: np.ndarray, max_gap_s: float = 1.0) -> list[EmotionSegment]:
    """Consecutive observations with the same top emotion (and no gap over max_gap_s) become one segment."""
    labels = emotion_probs.argmax(1)
    segments, begin = [], 0
    for i in range(1, len(times) + 1):
        if i == len(times) or labels[i] != labels[begin] or times[i] - times[i - 1] > max_gap_s:
            emotion = int(labels[begin])
            end = times[i - 1] + 1.0 / MODEL_RATE_HZ
            segments.append(
                EmotionSegment(
                    round(float(times[begin]), 3),
                    round(float(end), 3),
                    EMOTIONS[emotion],
                    round(float(emotion_probs[begin:i, emotion].mean()), 4),
                )
            )
            begin = i
    return segments


def fill_scores(
    report: EngagementReport, windows: list[ScoredWindow], observations: list[Observation], duration: float
) -> None:
    """Clip-level scores, curve, characters and key moments from the scored windows."""
    scored = [(w, w.scores) for w in windows if w.scores is not None]
    total_steps = step_count(duration)
    steps = [max(0, min(MAX_STEPS, total_steps - int(round(w.start * MODEL_RATE_HZ)))) for w, _ in scored]
    clip_scores = combine_windows([s for _, s in scored], [w.observed_steps for w, _ in scored], steps)
    values, widths = clip_scores.values, clip_scores.logit_halfwidths
    report.engagement = Scored.in_logit_interval(values["engagement"], widths["engagement"])
    report.resonance = Scored.in_logit_interval(values["resonance"], widths["resonance"])
    report.shareability = Scored.in_logit_interval(values["shareability"], widths["shareability"])
    report.appeal = {g: Scored.in_logit_interval(values[f"appeal_{g}"], widths[f"appeal_{g}"]) for g in AUDIENCE_GROUPS}
    report.engagement_lead_logit = round(widths["engagement_lead"], 4)
    report.class_probabilities = {k: round(v, 4) for k, v in clip_scores.class_probabilities.items()}
    report.engagement_class = clip_scores.engagement_class

    # The clip's per-step curve: each scored window's curve in place; windows without faces stay at 0 (no
    # character on screen, nothing for the audience to read from faces).
    curve = np.zeros(total_steps, np.float32)
    for window, scores in scored:
        first = int(round(window.start * MODEL_RATE_HZ))
        part = scores.curve[: max(0, min(MAX_STEPS, total_steps - first))]
        curve[first : first + part.size] = part
    report.curve = _per_second(curve, clip_scores.curve_logit_halfwidth, duration)
    empty = [w.start for w in windows if w.scores is None]
    if empty:
        report.notes.append(
            "no faces in the 32-s window(s) starting at "
            + ", ".join(f"{t:.0f} s" for t in empty)
            + "; the curve is 0 there"
        )
    if any(w.tracks_left_out for w, _ in scored):
        report.notes.append(
            "more than 4 characters were tracked; each 32-s window scores the 4 with the most screen time in it"
        )
    report.characters = _characters(observations)
    candidates = [m for w, _ in scored for m in w.moments]
    total_observed = sum(w.observed_steps for w, _ in scored)
    weight_of = {id(m): m.weight * w.observed_steps / total_observed for w, _ in scored for m in w.moments}
    report.key_moments = sorted(
        sorted(candidates, key=lambda m: weight_of[id(m)], reverse=True)[:KEY_MOMENTS], key=lambda m: m.t_s
    )


def moment_candidates(
    scores: WindowScores,
    start: float,
    mask: np.ndarray,
    slots: list[int],
    observations: list[Observation],
    crops: list[np.ndarray] | None,
) -> list[KeyMoment]:
    """This window's most heavily weighted steps, each shown by its most expressive face (with a thumbnail when the
    face crops are given)."""
    moments: list[KeyMoment] = []
    for step in np.argsort(scores.moment_weights)[::-1]:
        if len(moments) == KEY_MOMENTS:
            break
        if not mask[:, step].any():
            continue
        t_step = start + step / MODEL_RATE_HZ
        in_step = [
            (i, o)
            for i, o in enumerate(observations)
            if o.track_id in slots and t_step - 0.5 / MODEL_RATE_HZ <= o.t_s < t_step + 1.5 / MODEL_RATE_HZ
        ]
        if not in_step:
            continue
        neutral = EMOTIONS.index("neutral")
        index, best = max(
            in_step, key=lambda item: (1 - item[1].emotion_probs[neutral]) * (item[1].box[3] - item[1].box[1])
        )
        if any(abs(m.t_s - best.t_s) < 1.0 for m in moments):  # one moment per second is enough
            continue
        moments.append(
            KeyMoment(
                t_s=round(best.t_s, 3),
                weight=round(float(scores.moment_weights[step]), 4),
                track_id=best.track_id,
                emotion=best.emotion,
                confidence=round(float(best.emotion_probs.max()), 4),
                thumbnail_png_b64=_png_b64(crops[index]) if crops is not None else "",
            )
        )
    return moments


def _png_b64(crop: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(crop).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
