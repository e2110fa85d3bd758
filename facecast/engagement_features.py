"""What the engagement model sees: one feature row per character per model step (torch-free, shared by training
and serving so the two can never drift apart).

The analysis pipeline samples frames adaptively, detects and tracks faces, and runs the expression encoder on each
face crop. Those observations are resampled onto a fixed time base of MODEL_RATE_HZ steps per second (the nearest
observation of a track within half a step, else the character counts as absent at that step), and each step becomes
the FRAME_FEATURE_DIM-long row built by `frame_features`. The engagement network takes windows of MAX_STEPS steps
for up to MAX_CHARACTERS characters, with a mask that says which (character, step) cells hold an observation.
"""

from __future__ import annotations

import numpy as np

from facecast.vocab import ACTION_PARAMS, AUDIENCE_GROUPS, EMOTIONS, STYLES

MODEL_RATE_HZ = 4  # steps per second: expression changes slower than this are what the audience reads
MAX_STEPS = 128  # one window: 32 s at 4 Hz, longer than every training clip (3–30 s)
MAX_CHARACTERS = 4  # tracks beyond this (by screen time) are left out of the engagement input

BOX_FEATURES: tuple[str, ...] = ("box_cx", "box_cy", "box_w", "box_h")
FEATURE_NAMES: tuple[str, ...] = (
    *(f"p_{e}" for e in EMOTIONS),
    *(f"p_{s}" for s in STYLES),
    *ACTION_PARAMS,
    *BOX_FEATURES,
    "detection_score",
)
FRAME_FEATURE_DIM = len(FEATURE_NAMES)
assert FRAME_FEATURE_DIM == 20

# The served engagement model's versions: 1 is the shipped default (synthetic audience), higher ones a studio's
# calibrated models (facecast.store.engagement_models says which serves). Every request names its version, so a
# calibrated version that was loaded but never activated is never used by accident (Triton's own default would be
# the newest version).
DEFAULT_ENGAGEMENT_VERSION = 1
DEFAULT_ENGAGEMENT_DESCRIPTION = "synthetic audience model v1"

# The order of the engagement model's split-conformal half-widths in logit space (`interval_logit_halfwidth`): one
# per scalar output and the curve, then `engagement_lead`, the half-width of the difference between two clips'
# engagement logits (facecast.clips.compare calls a lead clear beyond it).
INTERVAL_ORDER: tuple[str, ...] = (
    "engagement",
    "resonance",
    "shareability",
    *(f"appeal_{g}" for g in AUDIENCE_GROUPS),
    "curve",
    "engagement_lead",
)
_LOGIT_EPS = 1e-4  # outputs of exactly 0 or 1 would sit at an infinite logit


def to_logit(probability: float | np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probability, np.float64), _LOGIT_EPS, 1 - _LOGIT_EPS)
    return np.log(p / (1 - p))


def logit_interval(
    probability: float | np.ndarray, logit_halfwidth: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The interval (low, high) around a predicted probability whose conformal half-width was calibrated in logit
    space: σ(logit(p) ∓ w).

    Every engagement output is a logistic function of a logit, and the model's errors are roughly even on that scale
    rather than on the probability's: a clip predicted at 0.97 cannot be wrong by ±0.3, one at 0.5 can. So the
    interval is narrow near 0 and 1, wide in the middle, and never leaves [0, 1]."""
    z, w = to_logit(probability), np.asarray(logit_halfwidth, np.float64)
    return 1 / (1 + np.exp(-(z - w))), 1 / (1 + np.exp(-(z + w)))


def frame_features(
    emotion_probs: np.ndarray,
    style_probs: np.ndarray,
    action_params: np.ndarray,
    box_xyxy: np.ndarray,
    detection_score: float,
) -> np.ndarray:
    """One step's row: emotion probs | style probs | action params | box centre and size | detection score.

    box_xyxy is (x0, y0, x1, y1) normalised to [0, 1] of the frame; the model reads where the face is and how big
    it is on screen (a readable close-up lands differently from a face in the crowd)."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    row = np.concatenate(
        [
            np.asarray(emotion_probs, np.float32).reshape(len(EMOTIONS)),
            np.asarray(style_probs, np.float32).reshape(len(STYLES)),
            np.asarray(action_params, np.float32).reshape(len(ACTION_PARAMS)),
            np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, detection_score], np.float32),
        ]
    )
    return np.clip(row, 0.0, 1.0)


def step_count(duration_s: float) -> int:
    """Model steps covering a clip of this length (at least one)."""
    return max(1, int(np.ceil(duration_s * MODEL_RATE_HZ - 1e-9)))


def step_times(n_steps: int) -> np.ndarray:
    """Centre time in seconds of each model step."""
    return (np.arange(n_steps, dtype=np.float64) + 0.5) / MODEL_RATE_HZ


def resample_track(
    times_s: np.ndarray, rows: np.ndarray, window_start_s: float, n_steps: int = MAX_STEPS
) -> tuple[np.ndarray, np.ndarray]:
    """One track's observations (times, feature rows) onto the model's steps of one window.

    A step [start + k/R, start + (k+1)/R) takes the mean of the observations inside it; a step with none takes the
    nearest observation at most one step away (a detector that misses one sample should not make the character
    vanish), otherwise it stays masked. Returns features float32[n_steps, F] and mask float32[n_steps]."""
    features = np.zeros((n_steps, FRAME_FEATURE_DIM), np.float32)
    mask = np.zeros(n_steps, np.float32)
    times_s = np.asarray(times_s, np.float64)
    if times_s.size == 0:
        return features, mask
    rows = np.asarray(rows, np.float32).reshape(-1, FRAME_FEATURE_DIM)
    step = 1.0 / MODEL_RATE_HZ
    index = np.floor((times_s - window_start_s) / step + 1e-9).astype(np.int64)
    inside = (index >= 0) & (index < n_steps)
    if inside.any():
        sums = np.zeros_like(features)
        counts = np.zeros(n_steps, np.float32)
        np.add.at(sums, index[inside], rows[inside])
        np.add.at(counts, index[inside], 1.0)
        filled = counts > 0
        features[filled] = sums[filled] / counts[filled, None]
        mask[filled] = 1.0
    centres = window_start_s + step_times(n_steps)
    for k in np.flatnonzero(mask == 0):
        nearest = int(np.argmin(np.abs(times_s - centres[k])))
        if abs(times_s[nearest] - centres[k]) <= step:
            features[k], mask[k] = rows[nearest], 1.0
    return features, mask


def window_starts(duration_s: float) -> list[float]:
    """Start times of the non-overlapping MAX_STEPS windows that cover a clip (a clip ≤ 32 s is one window)."""
    window_s = MAX_STEPS / MODEL_RATE_HZ
    count = max(1, int(np.ceil(duration_s / window_s - 1e-9)))
    return [i * window_s for i in range(count)]


def build_window(
    tracks: dict[int, tuple[np.ndarray, np.ndarray]], window_start_s: float, window_steps: int = MAX_STEPS
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The engagement model's input for one window from tracks {track_id: (times, rows)}.

    Keeps the MAX_CHARACTERS tracks with the most observed steps in the window (ties: the earlier track), in order
    of first appearance. Steps past `window_steps` (the clip's end inside its last window) stay masked.
    Returns features float32[MAX_CHARACTERS, MAX_STEPS, F], mask float32[MAX_CHARACTERS, MAX_STEPS], and the
    track id in each character slot."""
    resampled = {}
    for track_id, (times, rows) in tracks.items():
        features, mask = resample_track(times, rows, window_start_s)
        mask[window_steps:] = 0.0
        features[window_steps:] = 0.0
        if mask.any():
            resampled[track_id] = (features, mask)
    ranked = sorted(resampled, key=lambda tid: (-resampled[tid][1].sum(), tid))[:MAX_CHARACTERS]
    chosen = sorted(ranked, key=lambda tid: (int(np.argmax(resampled[tid][1] > 0)), tid))
    features = np.zeros((MAX_CHARACTERS, MAX_STEPS, FRAME_FEATURE_DIM), np.float32)
    mask = np.zeros((MAX_CHARACTERS, MAX_STEPS), np.float32)
    for slot, track_id in enumerate(chosen):
        features[slot], mask[slot] = resampled[track_id]
    return features, mask, chosen


def lead_is_clear(
    best: tuple[float, float, float], second: tuple[float, float, float], lead_logit: float | None = None
) -> bool:
    """Whether the best cut's lead over the runner-up, each (value, low, high), lies outside the model's uncertainty.

    With the model's calibrated `engagement_lead` (the 90 % conformal half-width of the difference between two
    clips' engagement logits), the lead is clear when the logits differ by more than it. Without one (another score,
    or reports stored before it existed) the rule is the stricter one: the two 90 % intervals do not overlap."""
    if lead_logit is not None:
        return bool(to_logit(best[0]) - to_logit(second[0]) > lead_logit)
    return best[1] > second[2]
