"""Synthetic multi-character clips with a known engagement ground truth (issue 3, item 3).

A clip is a *script* (`ClipScript`, JSON round trip): 1–4 characters from training/data/synthetic.py standing in a
scene larger than the frame, each with an expression arc (keyframes: time, emotion, intensity) and a slow path;
a camera that cuts between shots (wide shots, groups, close-ups: each shot shows a subset of the characters) and
pans / zooms within a shot; and occluders (poles, panels) passing in front. Everything is decided by the seed.

From the script follow, without rendering:
- `character_states(script, t)`: what a viewer sees of each character at time t (expression as drawn, its label
  from `synthetic.emotion_of`, visible fraction, face box in the frame);
- `engagement_truth(script)`: the noise-free ORACLE, a documented function of those observations only
  (docs/engagement-ground-truth.md);
- `observed_targets(script)`: the LABELS = oracle + noise of known standard deviation (NOISE_SD), by seed.

Rendering reuses synthetic.py's painter (`draw_face`, `_background`, `_grade`, 2x supersampling):
`render_frames` draws full frames through the camera viewport; `character_crops` draws each character's 64-px
face crop directly (the same picture as cutting the square crop with 15 % margin out of the full frame), which is
the fast path the engagement model trains on; `write_clip` encodes frames with facecast.media.video_writer.write_video.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from facecast.engagement_features import MODEL_RATE_HZ, step_count, step_times
from facecast.media.images import FACE_CROP_MARGIN, border_colour, square_around
from facecast.vocab import AUDIENCE_GROUPS, EMOTIONS, STYLE_PARAM_BOUNDS, STYLES
from training.data.synthetic import (
    CUE_FIELDS,
    DEFAULT_CHARACTER_IDS,
    GEOMETRY_FIELDS,
    Expression,
    _background,
    _grade,
    character_for_id,
    draw_face,
    emotions_of,
    expression_for,
    face_box,
)

_SUPERSAMPLE = 2
CROP_MARGIN = FACE_CROP_MARGIN  # the analysis pipeline's crop (facecast.media.images)
_NEUTRAL = EMOTIONS.index("neutral")
_FIELDS = GEOMETRY_FIELDS + CUE_FIELDS
_STYLE_CLIPPED = {"mouth_open": "mouth", "eye_open": "eye", "brow_raise": "brow", "cheek_raise": "cheek"}


class ClipScriptError(ValueError):
    """A clip script that cannot be used (bad JSON, unknown style or emotion, impossible times)."""


# ======================================================================================================
# Scripts
# ======================================================================================================

@dataclass(frozen=True)
class Keyframe:
    """At `time` the character shows `emotion` at `intensity`; between keyframes the face eases from one to the
    next. Keyframes with the same `variant` (and emotion) are the same face, so equal neighbours are a hold."""

    time: float
    emotion: str
    intensity: float
    variant: int


@dataclass(frozen=True)
class Waypoint:
    """Where a character's face centre is at `time`, in scene units (the wide shot's frame height = 1)."""

    time: float
    x: float
    y: float


@dataclass(frozen=True)
class CharacterTrack:
    character_id: str
    style: str
    face_height: float          # head height in scene units (fraction of the wide shot's frame height)
    roll_degrees: float
    yaw: float
    body: bool
    depth: int                  # draw order: higher is in front
    look_seed: int              # fixes the character's look (light, line weight...) for the whole clip
    path: tuple[Waypoint, ...]
    arc: tuple[Keyframe, ...]


@dataclass(frozen=True)
class Camera:
    """Viewport centre (scene units) and zoom (1 = the wide shot: frame height = 1 scene unit)."""

    x: float
    y: float
    zoom: float


@dataclass(frozen=True)
class Shot:
    """From `start` to `end` the camera moves from `camera_from` to `camera_to` (a pan / zoom) and the scene
    shows only `characters` (indices into ClipScript.characters); a cut is the boundary between two shots."""

    start: float
    end: float
    kind: str                   # "wide", "group" or "closeup"
    characters: tuple[int, ...]
    camera_from: Camera
    camera_to: Camera


@dataclass(frozen=True)
class Occluder:
    """An object passing in front of the scene between `start` and `end`: a rounded bar `width` wide from scene
    y0 to y1, its centre moving from x_from to x_to."""

    start: float
    end: float
    kind: str                   # "pole" (thin) or "panel" (wide)
    colour: tuple[int, int, int]
    x_from: float
    x_to: float
    y0: float
    y1: float
    width: float


@dataclass(frozen=True)
class ClipScript:
    seed: int
    duration_s: float
    fps: float
    width: int
    height: int
    scene_seed: int             # background and lighting
    characters: tuple[CharacterTrack, ...]
    shots: tuple[Shot, ...]
    occluders: tuple[Occluder, ...]

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @property
    def styles(self) -> tuple[str, ...]:
        return tuple(c.style for c in self.characters)

    @property
    def mixed_style(self) -> bool:
        return len(set(self.styles)) > 1

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClipScript:
        try:
            characters = tuple(
                CharacterTrack(**{**c, "path": tuple(Waypoint(**w) for w in c["path"]),
                                  "arc": tuple(Keyframe(**k) for k in c["arc"])})
                for c in data["characters"])
            shots = tuple(Shot(**{**s, "characters": tuple(s["characters"]), "camera_from": Camera(**s["camera_from"]),
                                  "camera_to": Camera(**s["camera_to"])}) for s in data["shots"])
            occluders = tuple(Occluder(**{**o, "colour": tuple(o["colour"])}) for o in data["occluders"])
            script = cls(**{**data, "characters": characters, "shots": shots, "occluders": occluders})
        except (KeyError, TypeError) as error:
            raise ClipScriptError(f"not a clip script: {error}") from None
        _validate(script)
        return script


def _plain(value):
    """JSON-ready copy of nested dataclasses and tuples (dataclasses.asdict deep-copies every leaf: 10x slower)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


def _validate(script: ClipScript) -> None:
    if not 0 < script.duration_s <= 60:
        raise ClipScriptError(f"clip duration must be in (0, 60] s, got {script.duration_s}")
    if not 1 <= len(script.characters) <= 4:
        raise ClipScriptError(f"a clip has 1–4 characters, got {len(script.characters)}")
    for track in script.characters:
        if track.style not in STYLES:
            raise ClipScriptError(f"unknown style {track.style!r}; expected one of {STYLES}")
        for key in track.arc:
            if key.emotion not in EMOTIONS:
                raise ClipScriptError(f"unknown emotion {key.emotion!r}; expected one of {EMOTIONS}")
        if not track.arc or not track.path:
            raise ClipScriptError(f"character {track.character_id} needs at least one keyframe and one waypoint")
    if not script.shots:
        raise ClipScriptError("a clip needs at least one shot")


def _smoothstep(u):
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


# Hidden "direction" of a sampled clip (never seen by the ground truth, which only reads what is on screen):
# calm clips hold one mild expression, steady ones change every few seconds, lively ones are strong, varied and
# reactive, frantic ones switch expressions faster than a viewer can follow.
_DIRECTIONS = {
    #            gap between onsets   hold         intensity     emotions  face height   p(back to neutral)
    "calm": dict(gap=(7.0, 16.0), hold=(3.0, 8.0), peak=(0.3, 0.55), palette=(1, 1), face=(0.10, 0.22), rest=0.8,
                 react=0.0, occlude=0.45, cuts=0.25, closeup=0.05),
    "steady": dict(gap=(3.5, 6.0), hold=(1.5, 3.5), peak=(0.45, 0.8), palette=(2, 3), face=(0.14, 0.30), rest=0.5,
                   react=0.3, occlude=0.3, cuts=0.5, closeup=0.2),
    "lively": dict(gap=(1.9, 3.0), hold=(0.9, 1.8), peak=(0.7, 1.0), palette=(3, 5), face=(0.20, 0.38), rest=0.25,
                   react=0.85, occlude=0.15, cuts=0.6, closeup=0.35),
    "frantic": dict(gap=(0.45, 0.9), hold=(0.2, 0.45), peak=(0.6, 1.0), palette=(4, 6), face=(0.16, 0.34),
                    rest=0.2, react=0.3, occlude=0.2, cuts=0.6, closeup=0.2),
}
_DIRECTION_WEIGHTS = {"calm": 0.34, "steady": 0.22, "lively": 0.32, "frantic": 0.12}
_EXPRESSIVE = tuple(e for e in EMOTIONS if e != "neutral")


def _sample_arc(rng: np.random.Generator, duration: float, direction: dict, onsets: list[float] | None,
                lead: list[str] | None) -> tuple[tuple[Keyframe, ...], list[float], list[str]]:
    """Keyframes for one character: neutral stretches, ramps in / out, holds with drifting intensity. With
    `onsets` (another character's) the character reacts: its onsets follow those by 0.5–1.5 s."""
    palette_size = int(rng.integers(direction["palette"][0], direction["palette"][1] + 1))
    palette = list(rng.choice(_EXPRESSIVE, size=min(palette_size, 6), replace=False))
    keys = [Keyframe(0.0, "neutral", 0.0, 0)]
    t = float(rng.uniform(0.2, min(2.5, direction["gap"][0]))) if onsets is None else 0.0
    planned = [] if onsets is None else [o + float(rng.uniform(0.5, 1.5)) for o in onsets]
    my_onsets, my_emotions = [], []
    current = keys[0]
    while True:
        if planned:
            t = planned.pop(0)
            if t < current.time + 0.3:
                continue
        if t >= duration - 0.3:
            break
        ramp = float(rng.uniform(0.25, 0.9))
        hold = float(rng.uniform(*direction["hold"]))
        if lead and len(my_onsets) < len(lead) and rng.random() < 0.6:
            emotion = lead[len(my_onsets)]  # mirror the other character (shared joy, contagious fear)
        else:
            choices = [e for e in palette if e != current.emotion] or palette
            emotion = choices[int(rng.integers(len(choices)))]
        peak = float(rng.uniform(*direction["peak"]))
        keys.append(dataclasses.replace(current, time=round(t, 3)))  # hold what was shown until the ramp
        # a character makes its own face for each emotion (variant = the emotion's index + 1) and holds it
        variant = EMOTIONS.index(emotion) + 1
        keys.append(Keyframe(round(t + ramp, 3), emotion, round(peak, 3), variant))
        settle = float(np.clip(peak * rng.uniform(0.75, 1.1), 0.25, 1.0))
        current = Keyframe(round(t + ramp + hold, 3), emotion, round(settle, 3), variant)
        keys.append(current)
        my_onsets.append(t)
        my_emotions.append(emotion)
        if rng.random() < direction["rest"]:  # ease back to a neutral face
            back = float(rng.uniform(0.3, 1.0))
            current = Keyframe(round(current.time + back, 3), "neutral", 0.0, 0)
            keys.append(current)
        if onsets is None:
            t = max(current.time + 0.2, t + float(rng.uniform(*direction["gap"])))
        elif not planned:
            break
    keys = [k for k in keys if k.time <= duration + 2.0]
    return tuple(keys), my_onsets, my_emotions


def _sample_shots(rng: np.random.Generator, duration: float, aspect: float, tracks: list[dict],
                  direction: dict) -> tuple[Shot, ...]:
    n = len(tracks)
    shots = []
    t = 0.0
    cut_clip = rng.random() < direction["cuts"]
    while t < duration - 1e-6:
        length = float(rng.uniform(2.5, 9.0)) if cut_clip else duration
        end = min(duration, t + length)
        if duration - end < 1.5:
            end = duration
        roll = rng.random()
        if shots and roll < direction["closeup"] or (not shots and roll < direction["closeup"] / 3):
            kind, members = "closeup", (int(rng.integers(n)),)
        elif n > 2 and shots and roll < direction["closeup"] + 0.3:
            size = int(rng.integers(2, n))
            kind, members = "group", tuple(sorted(int(i) for i in rng.choice(n, size=size, replace=False)))
        elif n == 2 and shots and roll < direction["closeup"] + 0.25:
            kind, members = "closeup", (int(rng.integers(n)),)
        else:
            kind, members = "wide", tuple(range(n))
        mid = [(tr["x"], tr["y"], tr["face"]) for i, tr in enumerate(tracks) if i in members]
        if kind == "closeup":
            x, y, face = mid[0]
            zoom = float(rng.uniform(0.38, 0.62)) / face
            centre = (x + float(rng.normal(0, 0.05)) / zoom, y + face * 0.15 + float(rng.normal(0, 0.03)) / zoom)
        elif kind == "group":
            xs = [m[0] for m in mid]
            faces = max(m[2] for m in mid)
            span = max(xs) - min(xs) + 2.2 * faces
            zoom = float(np.clip(aspect / span, 1.0, 2.0))
            centre = ((max(xs) + min(xs)) / 2, float(np.mean([m[1] for m in mid])) + 0.1 / zoom)
        else:
            zoom = float(rng.uniform(0.95, 1.15))
            centre = (aspect / 2 + float(rng.normal(0, 0.04)), 0.5 + float(rng.normal(0, 0.02)))
        zoom = float(np.clip(zoom, 0.9, 4.0))
        moving = rng.random() < 0.55
        pan = float(rng.uniform(-0.12, 0.12)) * aspect / zoom if moving else 0.0
        zoom_to = zoom * float(rng.uniform(0.85, 1.25)) if moving and rng.random() < 0.6 else zoom
        start_cam = Camera(round(centre[0] - pan / 2, 4), round(centre[1], 4), round(zoom, 4))
        end_cam = Camera(round(centre[0] + pan / 2, 4), round(centre[1], 4), round(float(np.clip(zoom_to, 0.9, 4.5)), 4))
        shots.append(Shot(round(t, 3), round(end, 3), kind, members, start_cam, end_cam))
        t = end
    return tuple(shots)


def sample_clip_script(seed: int, *, character_ids=None, duration_s: float | None = None,
                       n_characters: int | None = None, mixed_styles: bool | None = None,
                       width: int = 640, height: int = 360, fps: float = 12.0) -> ClipScript:
    """A random clip script, fully determined by `seed` (and the optional fixed choices).

    `character_ids`: the pool to draw characters from (default synthetic.DEFAULT_CHARACTER_IDS), which is how
    splits keep their characters apart. 1–4 characters (weights 0.36 / 0.34 / 0.18 / 0.12), 3–30 s; a scene with
    several characters mixes styles with probability 0.35 unless `mixed_styles` says."""
    rng = np.random.default_rng([seed, 0xC11B5])
    pool = tuple(character_ids) if character_ids else DEFAULT_CHARACTER_IDS
    n = n_characters or int(rng.choice([1, 2, 3, 4], p=[0.36, 0.34, 0.18, 0.12]))
    if not 1 <= n <= 4:
        raise ClipScriptError(f"a clip has 1–4 characters, got {n}")
    if n > len(pool):
        raise ClipScriptError(f"{n} characters asked for but the pool holds {len(pool)}")
    duration = float(duration_s) if duration_s is not None else round(3.0 + 27.0 * float(rng.random()) ** 1.15, 2)
    if not 3.0 <= duration <= 30.0:
        raise ClipScriptError(f"clip duration must be 3–30 s, got {duration}")
    names = list(_DIRECTION_WEIGHTS)
    direction = _DIRECTIONS[names[int(rng.choice(len(names), p=list(_DIRECTION_WEIGHTS.values())))]]
    ids = [pool[int(i)] for i in rng.choice(len(pool), size=n, replace=False)]
    mixed = (rng.random() < 0.35) if mixed_styles is None else bool(mixed_styles)
    mixed = mixed and n > 1
    if mixed:
        styles = [STYLES[int(i)] for i in rng.choice(4, size=n, replace=n > 4)]
        while len(set(styles)) < 2:
            styles[-1] = STYLES[int(rng.integers(4))]
    else:
        styles = [STYLES[int(rng.integers(4))]] * n
    aspect = width / height
    # stand the characters side by side across the wide shot, a little jittered
    slots = (np.arange(n) + 0.5) / n
    layout = []
    for i in range(n):
        face = float(rng.uniform(*direction["face"])) * (1.0 if n <= 2 else 0.8)
        x = aspect * (0.12 + 0.76 * slots[i]) + float(rng.normal(0, 0.04))
        y = float(rng.uniform(0.38, 0.55))
        layout.append(dict(x=x, y=y, face=face))
    tracks = []
    lead_onsets, lead_emotions = None, None
    for i in range(n):
        reacts = i > 0 and lead_onsets and rng.random() < direction["react"]
        arc, onsets, emotions = _sample_arc(rng, duration, direction, lead_onsets if reacts else None,
                                            lead_emotions if reacts else None)
        if i == 0:
            lead_onsets, lead_emotions = onsets, emotions
        x, y = layout[i]["x"], layout[i]["y"]
        drift = (float(rng.normal(0, 0.04)), float(rng.normal(0, 0.015)))
        path = [Waypoint(0.0, round(x, 4), round(y, 4)), Waypoint(round(duration, 3), round(x + drift[0], 4),
                                                                  round(y + drift[1], 4))]
        tracks.append(dict(character_id=ids[i], style=styles[i], face_height=round(layout[i]["face"], 4),
                           roll_degrees=round(float(np.clip(rng.normal(0, 5), -12, 12)), 2),
                           yaw=round(float(np.clip(rng.normal(0, 0.2), -0.45, 0.45)), 3),
                           body=bool(styles[i] != "cartoon" and rng.random() < 0.6), depth=i,
                           look_seed=int(rng.integers(1 << 31)), path=path, arc=arc))
    occluders = []
    if n >= 2 and rng.random() < direction["occlude"] * 0.5:
        # one character walks in front of another and back to its place
        front, back = (int(i) for i in rng.choice(n, size=2, replace=False))
        t0 = float(rng.uniform(0.1, 0.6)) * duration
        walk = float(rng.uniform(1.0, 3.0))
        fx, fy = layout[front]["x"], layout[front]["y"]
        bx = layout[back]["x"]
        tracks[front]["path"] = [Waypoint(0.0, round(fx, 4), round(fy, 4)), Waypoint(round(t0, 3), round(fx, 4), round(fy, 4)),
                                 Waypoint(round(t0 + walk, 3), round(bx, 4), round(fy + 0.03, 4)),
                                 Waypoint(round(t0 + 2 * walk, 3), round(fx, 4), round(fy, 4))]
        tracks[front]["depth"] = n
    elif rng.random() < direction["occlude"]:
        for _ in range(int(rng.integers(1, 3))):
            target = layout[int(rng.integers(n))]
            t0 = float(rng.uniform(0.0, 0.8)) * duration
            span = float(rng.uniform(1.0, 4.0))
            kind = "pole" if rng.random() < 0.5 else "panel"
            width_ = target["face"] * (float(rng.uniform(0.3, 0.6)) if kind == "pole" else float(rng.uniform(0.9, 1.8)))
            sweep = float(rng.uniform(0.4, 0.9)) * (1 if rng.random() < 0.5 else -1)
            colour = tuple(int(v) for v in rng.integers(20, 236, 3))
            occluders.append(Occluder(round(t0, 3), round(t0 + span, 3), kind, colour,
                                      round(target["x"] - sweep, 4), round(target["x"] + sweep, 4),
                                      round(target["y"] - 1.5 * target["face"], 4), 1.6, round(width_, 4)))
    shots = _sample_shots(rng, duration, aspect, layout, direction)
    characters = tuple(CharacterTrack(**{**tr, "path": tuple(tr["path"])}) for tr in tracks)
    script = ClipScript(seed, duration, float(fps), int(width), int(height), int(rng.integers(1 << 31)),
                        characters, shots, tuple(occluders))
    _validate(script)
    return script


# ======================================================================================================
# What the viewer sees at any moment
# ======================================================================================================

@dataclass(frozen=True)
class CharacterState:
    character_index: int
    character_id: str
    style: str
    expression: Expression          # as drawn (action parameters clipped to the style's bounds)
    emotion: str                    # synthetic.emotion_of of the drawn expression
    intensity: float
    visible_fraction: float         # 0 = off screen, not in the shot, or fully occluded
    box: tuple[float, float, float, float] | None  # normalised xyxy, clipped to the frame; None when not visible


@dataclass(frozen=True)
class _Geometry:
    """Per character (C) and time (T): emotion index, intensity, screen placement and visibility."""

    emotion: np.ndarray             # C x T int
    intensity: np.ndarray           # C x T
    values: np.ndarray              # C x T x len(_FIELDS): the drawn expression
    centre: np.ndarray              # C x T x 2, frame-normalised face centre
    face_height: np.ndarray         # C x T, frame fraction
    box: np.ndarray                 # C x T x 4, frame-normalised, unclipped
    present: np.ndarray             # C x T bool: in the current shot
    visible: np.ndarray             # C x T visible fraction


@lru_cache(maxsize=64)
def _keyframe_table(script: ClipScript) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Per character: keyframe times and the expression parameters at each keyframe (style-clipped)."""
    tables = []
    neutral = np.array([getattr(Expression(), f) for f in _FIELDS])
    for index, track in enumerate(script.characters):
        faces: dict[tuple[str, int], tuple[float, np.ndarray]] = {}
        times, rows = [], []
        for key in track.arc:
            if (key.emotion, key.variant) not in faces:
                rng = np.random.default_rng([script.seed, index, key.variant, 0xFACE])
                expression = expression_for(key.emotion, key.intensity, rng)
                faces[key.emotion, key.variant] = (key.intensity, np.array([getattr(expression, f) for f in _FIELDS]))
            first_intensity, face = faces[key.emotion, key.variant]
            if key.intensity != first_intensity and first_intensity > 0:
                # the same face, stronger or weaker: its offset from neutral scaled (one expression_for per face)
                face = neutral + (face - neutral) * (key.intensity / first_intensity)
            times.append(key.time)
            rows.append(face)
        values = np.array(rows)
        values[:, len(GEOMETRY_FIELDS):] = np.clip(values[:, len(GEOMETRY_FIELDS):], 0.0, 1.0)
        signed = [_FIELDS.index(f) for f in ("mouth_curve", "brow_tilt", "mouth_asym")]
        unsigned = [i for i in range(len(GEOMETRY_FIELDS)) if i not in signed]
        values[:, signed] = np.clip(values[:, signed], -1.0, 1.0)
        values[:, unsigned] = np.clip(values[:, unsigned], 0.0, 1.0)
        for field, param in _STYLE_CLIPPED.items():  # synthetic.expression_in_style, on the whole table
            column = _FIELDS.index(field)
            values[:, column] = np.clip(values[:, column], *STYLE_PARAM_BOUNDS[track.style][param])
        tables.append((np.array(times), values))
    return tuple(tables)


def _interpolate(times: np.ndarray, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
    i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
    j = np.minimum(i + 1, len(times) - 1)
    gap = np.maximum(times[j] - times[i], 1e-9)
    u = _smoothstep((t - times[i]) / gap)[:, None]
    return rows[i] + u * (rows[j] - rows[i])


def _cameras(script: ClipScript, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    starts = np.array([s.start for s in script.shots])
    shot = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(script.shots) - 1)
    cam = np.zeros((len(t), 3))
    for k, s in enumerate(script.shots):
        sel = shot == k
        if sel.any():
            u = _smoothstep((t[sel] - s.start) / max(s.end - s.start, 1e-9))[:, None]
            a = np.array([s.camera_from.x, s.camera_from.y, s.camera_from.zoom])
            b = np.array([s.camera_to.x, s.camera_to.y, s.camera_to.zoom])
            cam[sel] = a + u * (b - a)
    return cam[:, 0], cam[:, 1], cam[:, 2], shot


# unit-disc sample points for visible fractions (a sunflower pattern: even cover, no grid aliasing)
_DISC = np.stack([np.sqrt((np.arange(64) + 0.5) / 64) * np.cos(np.arange(64) * 2.39996),
                  np.sqrt((np.arange(64) + 0.5) / 64) * np.sin(np.arange(64) * 2.39996)], axis=1)


def _geometry(script: ClipScript, t: np.ndarray) -> _Geometry:
    t = np.asarray(t, dtype=float)
    n_c, n_t = len(script.characters), len(t)
    aspect = script.aspect
    cx, cy, zoom, shot = _cameras(script, t)
    members = np.array([[i in s.characters for i in range(n_c)] for s in script.shots])
    present = members[shot].T  # C x T
    tables = _keyframe_table(script)
    values = np.stack([_interpolate(*tables[i], t) for i in range(n_c)])  # C x T x F
    emotion, intensity = emotions_of(values[:, :, :len(GEOMETRY_FIELDS)].reshape(n_c * n_t, -1))
    emotion, intensity = emotion.reshape(n_c, n_t), intensity.reshape(n_c, n_t)
    centre = np.zeros((n_c, n_t, 2))
    height = np.zeros((n_c, n_t))
    box = np.zeros((n_c, n_t, 4))
    for i, track in enumerate(script.characters):
        wt = np.array([w.time for w in track.path])
        wx = np.interp(t, wt, [w.x for w in track.path])
        wy = np.interp(t, wt, [w.y for w in track.path])
        centre[i, :, 0] = (wx - cx) * zoom / aspect + 0.5
        centre[i, :, 1] = (wy - cy) * zoom + 0.5
        height[i] = track.face_height * zoom
        unit = face_box(character_for_id(track.character_id), track.style, (0.0, 0.0), 1.0, track.roll_degrees)
        box[i, :, 0] = centre[i, :, 0] + unit[0] * height[i] / aspect
        box[i, :, 2] = centre[i, :, 0] + unit[2] * height[i] / aspect
        box[i, :, 1] = centre[i, :, 1] + unit[1] * height[i]
        box[i, :, 3] = centre[i, :, 1] + unit[3] * height[i]
    # visible fraction: sample points over the face ellipse; a point counts if it is in the frame and no
    # occluder, nor a character in front (head ellipse, body below), covers it
    mid = (box[..., :2] + box[..., 2:]) / 2
    half = (box[..., 2:] - box[..., :2]) / 2
    points = mid[:, :, None, :] + _DISC[None, None] * half[:, :, None, :]  # C x T x P x 2
    seen = ((points >= 0) & (points <= 1)).all(axis=3)
    for occ in script.occluders:
        active = (t >= occ.start) & (t <= occ.end)
        if not active.any():
            continue
        u = np.clip((t - occ.start) / max(occ.end - occ.start, 1e-9), 0, 1)
        ox = (occ.x_from + u * (occ.x_to - occ.x_from) - cx) * zoom / aspect + 0.5
        half_w = occ.width / 2 * zoom / aspect
        oy0, oy1 = (occ.y0 - cy) * zoom + 0.5, (occ.y1 - cy) * zoom + 0.5
        covered = ((np.abs(points[..., 0] - ox[None, :, None]) <= half_w[None, :, None])
                   & (points[..., 1] >= oy0[None, :, None]) & (points[..., 1] <= oy1[None, :, None])
                   & active[None, :, None])
        seen &= ~covered
    for i, front in enumerate(script.characters):
        for j, back in enumerate(script.characters):
            if front.depth <= back.depth:
                continue
            fm, fh = mid[i][:, None, :], half[i][:, None, :] * 1.12  # hair and outline around the head box
            rel = (points[j] - fm) / np.maximum(fh, 1e-9)
            covered = (rel ** 2).sum(axis=2) <= 1.0
            if front.body:  # shoulders: about 3.4 face half-widths wide below the chin
                below = points[j][..., 1] >= box[i][:, None, 3] + 0.15 * height[i][:, None]
                wide = np.abs(points[j][..., 0] - fm[..., 0]) <= 1.7 * half[i][:, None, 0] * 1.0
                covered |= below & wide
            seen[j] &= ~(covered & present[i][:, None])
    visible = seen.mean(axis=2) * present
    return _Geometry(emotion, intensity, values, centre, height, box, present, visible)


#: The drawn expression's parameters, in the order of the last axis of `step_geometry(...).values`.
EXPRESSION_FIELDS: tuple[str, ...] = tuple(_FIELDS)


def step_geometry(script: ClipScript, times: np.ndarray) -> _Geometry:
    """Per character and time: the drawn emotion, intensity and expression, the face box and its visible fraction
    (what the ground truth reads; training.data.ideal_clips builds ideal perception from it)."""
    return _geometry(script, np.asarray(times, dtype=float))


def character_states(script: ClipScript, t: float) -> list[CharacterState]:
    """What a viewer sees of each character at time `t` (seconds)."""
    geo = _geometry(script, np.array([float(t)]))
    states = []
    for i, track in enumerate(script.characters):
        visible = float(geo.visible[i, 0])
        box = None
        if visible > 0:
            b = np.clip(geo.box[i, 0], 0.0, 1.0)
            box = tuple(float(v) for v in b)
        expression = Expression(**dict(zip(_FIELDS, (float(v) for v in geo.values[i, 0]))))
        states.append(CharacterState(i, track.character_id, track.style, expression, EMOTIONS[int(geo.emotion[i, 0])],
                                     float(geo.intensity[i, 0]), visible, box))
    return states


# ======================================================================================================
# Ground truth: a documented function of what is on screen (docs/engagement-ground-truth.md)
# ======================================================================================================

#: Style affinity per audience group (rows AUDIENCE_GROUPS, columns STYLES), in [-1, 1].
STYLE_AFFINITY = np.array([
    # realistic cartoon anime stylized_3d
    [-0.6, 0.9, 0.2, 0.8],     # children
    [-0.2, 0.1, 0.9, 0.5],     # teens
    [0.4, -0.1, 0.6, 0.3],     # young_adults
    [0.8, -0.3, -0.4, 0.2],    # adults
])
#: Emotion preference per audience group (rows AUDIENCE_GROUPS, columns EMOTIONS), in [-1, 1].
EMOTION_PREFERENCE = np.array([
    # happiness sadness anger surprise fear disgust neutral
    [0.9, -0.3, -0.5, 0.8, -0.8, -0.9, 0.0],   # children
    [0.3, 0.0, 0.3, 0.6, 0.5, 0.2, 0.0],       # teens
    [0.4, 0.3, 0.1, 0.4, 0.3, -0.2, 0.0],      # young_adults
    [0.5, 0.5, -0.2, 0.2, -0.1, -0.5, 0.0],    # adults
])

SIZE_UNREADABLE, SIZE_READABLE = 0.03, 0.25    # face height (frame fraction): unreadable .. fully readable
SHOWN_CLARITY = 0.2                            # a face this clear counts as "shown" (labels, changes)
EXPRESSIVE_SIGNAL = 0.25                       # intensity x clarity above which a face is "expressive"
PACE_BEST, PACE_WIDTH = 4.0, 0.5               # best changes per 10 s per character; log1p-space width
REACTION_WINDOW = (0.4, 2.0)                   # s after another character's change that counts as a reaction

# logit weights: bias, intensity, clarity, variety, pace preference, interplay, audience fit, (extra)
ENGAGEMENT_WEIGHTS = dict(bias=-4.9, intensity=3.2, clarity=1.2, variety=1.6, pace=3.0, interplay=1.2, fit=0.8)
RESONANCE_WEIGHTS = dict(bias=-4.0, sustained=4.0, clarity=1.0, variety=0.8, pace=0.8, interplay=1.0, fit=0.6,
                         depth=0.8)
SHAREABILITY_WEIGHTS = dict(bias=-4.4, peak=2.6, interplay=1.4, bright=1.0, pace=1.4, clarity=0.8, fit=0.6,
                            length=-0.04)
APPEAL_FIT_WEIGHT = 2.0                        # appeal_g logit = engagement logit + this * (fit_g - mean fit)
CURVE_WEIGHTS = dict(signal=2.5, together=0.8, novelty=0.8, smooth_s=0.75)
# Tiered response: audiences sort clips into "lost them", "held them", "hooked them"; a clip whose quality score q
# (the linear logit above) clears a bar jumps a tier. engagement logit = TIER_SCALE * (q - TIER_CENTRE)
#   + TIER_JUMP * (sigmoid((q - bar_1) / TIER_SOFTNESS) + sigmoid((q - bar_2) / TIER_SOFTNESS) - 1).
# The bars are the tertiles of q over 1000 sampled clips (seeds 0..999; `python -m training.data.build_clips
# --tier-bars` prints them), so the three classes are balanced.
TIER_BARS = (0.16, 2.29)
TIER_CENTRE = (TIER_BARS[0] + TIER_BARS[1]) / 2
TIER_SCALE, TIER_JUMP, TIER_SOFTNESS = 0.5, 2.5, 0.2


def _tiered(q):
    q = np.asarray(q, dtype=float)
    steps = sum(1.0 / (1.0 + np.exp(-(q - bar) / TIER_SOFTNESS)) for bar in TIER_BARS)
    return TIER_SCALE * (q - TIER_CENTRE) + TIER_JUMP * (steps - 1.0)


#: Engagement probability thresholds (the engagement at the two bars): low < [0] <= medium < [1] <= high.
CLASS_THRESHOLDS = tuple(round(float(1.0 / (1.0 + np.exp(-_tiered(bar)))), 4) for bar in TIER_BARS)
#: Standard deviation of the label noise, in logit space, per target (the curve's noise is smooth over time
#: with this marginal sd).
NOISE_SD = dict(engagement=0.6, resonance=0.35, shareability=0.35, appeal=0.6, curve=0.3)


@dataclass(frozen=True)
class EngagementTruth:
    engagement: float
    resonance: float
    shareability: float
    appeal: np.ndarray              # float32[4], AUDIENCE_GROUPS order
    engagement_class: int           # 0 low, 1 medium, 2 high
    curve: np.ndarray               # float32[n_steps] at MODEL_RATE_HZ
    components: dict = dataclasses.field(default_factory=dict, compare=False)  # the clip-level quantities


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def _logit(p):
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def engagement_class(engagement: float) -> int:
    return int(np.searchsorted(CLASS_THRESHOLDS, engagement, side="right"))


def _changes(emotion: np.ndarray, shown: np.ndarray) -> list[int]:
    """Steps at which the shown emotion changes to a new one that persists for 2 steps (0.5 s)."""
    steps, last = [], None
    for s in range(len(emotion)):
        if not shown[s]:
            continue
        e = int(emotion[s])
        if last is None:
            last = e
        elif e != last and s + 1 < len(emotion) and (not shown[s + 1] or int(emotion[s + 1]) == e):
            steps.append(s)
            last = e
    return steps


def _truth_logits(script: ClipScript) -> tuple[float, float, float, np.ndarray, np.ndarray, dict]:
    n_steps = step_count(script.duration_s)
    t = step_times(n_steps)
    geo = _geometry(script, t)
    duration = script.duration_s
    size = np.clip((geo.face_height - SIZE_UNREADABLE) / (SIZE_READABLE - SIZE_UNREADABLE), 0, 1) ** 0.5
    clarity = geo.visible * size                                    # C x T
    expressive = np.where(geo.emotion == _NEUTRAL, 0.0, geo.intensity)
    signal = expressive * clarity                                   # C x T
    strongest = signal.max(axis=0)                                  # T
    together = ((signal >= EXPRESSIVE_SIGNAL).sum(axis=0) >= 2).astype(float)
    any_face = clarity.max(axis=0)
    # variety: entropy of the non-neutral emotions shown, weighted by how strongly and clearly they were shown
    shown_weight = np.zeros(len(EMOTIONS))
    np.add.at(shown_weight, geo.emotion.ravel(), signal.ravel())
    emotional = shown_weight[:_NEUTRAL]
    total = emotional.sum()
    mix = emotional / total if total > 1e-6 else np.zeros(_NEUTRAL)
    variety = float(-(mix[mix > 0] * np.log(mix[mix > 0])).sum() / np.log(_NEUTRAL)) if total > 1e-6 else 0.0
    # pace: changes of the shown expression per 10 s per character on screen, preferred near PACE_BEST
    shown = clarity >= SHOWN_CLARITY
    change_steps = [_changes(geo.emotion[i], shown[i]) for i in range(len(script.characters))]
    on_screen = max(1, int((shown.mean(axis=1) > 0.1).sum()))
    pace = sum(len(c) for c in change_steps) / duration * 10 / on_screen
    pace_pref = float(np.exp(-0.5 * ((np.log1p(pace) - np.log1p(PACE_BEST)) / PACE_WIDTH) ** 2))
    # interplay: expressive characters together on screen, and reactions (a change soon after another's)
    reactions = 0
    for i, own in enumerate(change_steps):
        others = [s for j, c in enumerate(change_steps) if j != i for s in c]
        for s in own:
            if any(REACTION_WINDOW[0] * MODEL_RATE_HZ <= s - o <= REACTION_WINDOW[1] * MODEL_RATE_HZ for o in others):
                reactions += 1
    reaction_rate = reactions / duration * 10
    interplay = 0.6 * float(together.mean()) + 0.4 * min(1.0, reaction_rate / 2.0)
    intensity = float(strongest.mean())
    clarity_mean = float(any_face.mean())
    # audience fit: style affinity by screen presence, emotion preference by emotional weight shown
    style_weight = np.zeros(len(STYLES))
    for i, track in enumerate(script.characters):
        style_weight[STYLES.index(track.style)] += clarity[i].sum()
    style_mix = style_weight / style_weight.sum() if style_weight.sum() > 1e-6 else np.full(4, 0.25)
    fit_groups = 0.5 * STYLE_AFFINITY @ style_mix + 0.5 * EMOTION_PREFERENCE[:, :_NEUTRAL] @ mix
    fit = float(fit_groups.mean())
    # sustained intensity: the strongest signal's minimum over a sliding 2-s window (holds, not flicker)
    window = 2 * MODEL_RATE_HZ
    padded = np.pad(strongest, (window // 2, window - window // 2 - 1), mode="edge")
    sustained = float(np.lib.stride_tricks.sliding_window_view(padded, window).min(axis=1).mean())
    peak = float(np.quantile(strongest, 0.95))
    depth = float(mix[[EMOTIONS.index("sadness"), EMOTIONS.index("fear"), EMOTIONS.index("happiness")]].sum())
    bright = float(mix[[EMOTIONS.index("happiness"), EMOTIONS.index("surprise")]].sum())
    w = ENGAGEMENT_WEIGHTS
    quality = (w["bias"] + w["intensity"] * intensity + w["clarity"] * clarity_mean + w["variety"] * variety
               + w["pace"] * pace_pref + w["interplay"] * interplay + w["fit"] * fit)
    z_eng = float(_tiered(quality))
    w = RESONANCE_WEIGHTS
    z_res = (w["bias"] + w["sustained"] * sustained + w["clarity"] * clarity_mean + w["variety"] * variety
             + w["pace"] * pace_pref + w["interplay"] * interplay + w["fit"] * fit + w["depth"] * depth)
    w = SHAREABILITY_WEIGHTS
    z_share = (w["bias"] + w["peak"] * peak + w["interplay"] * interplay + w["bright"] * bright
               + w["pace"] * pace_pref + w["clarity"] * clarity_mean + w["fit"] * fit
               + w["length"] * (duration - 15.0))
    z_appeal = z_eng + APPEAL_FIT_WEIGHT * (fit_groups - fit)
    # the curve: the clip's engagement logit, moved by the moment's strongest readable expression, by expressive
    # characters together, and by a recent change (novelty decays over 2 s); smoothed over ~0.75 s
    novelty = np.zeros(n_steps)
    for steps in change_steps:
        for s in steps:
            novelty[s:] += np.exp(-(np.arange(n_steps - s)) / (2.0 * MODEL_RATE_HZ))
    novelty = np.minimum(novelty, 1.5)
    c = CURVE_WEIGHTS
    moment = (z_eng + c["signal"] * (strongest - intensity) + c["together"] * (together - together.mean())
              + c["novelty"] * (novelty - novelty.mean()))
    z_curve = _smooth(moment, c["smooth_s"] * MODEL_RATE_HZ)
    components = dict(quality=quality, intensity=intensity, clarity=clarity_mean, variety=variety, pace=pace, pace_preference=pace_pref,
                      interplay=interplay, reactions_per_10s=reaction_rate, fit=fit, sustained=sustained, peak=peak,
                      depth=depth, bright=bright)
    return z_eng, z_res, z_share, z_appeal, z_curve, components


def _gaussian_kernel(sigma_steps: float) -> np.ndarray:
    radius = max(1, int(math.ceil(3 * sigma_steps)))
    x = np.arange(-radius, radius + 1)
    return np.exp(-0.5 * (x / sigma_steps) ** 2)


def _smooth(values: np.ndarray, sigma_steps: float) -> np.ndarray:
    kernel = _gaussian_kernel(sigma_steps)
    kernel /= kernel.sum()
    radius = len(kernel) // 2
    return np.convolve(np.pad(values, radius, mode="edge"), kernel, mode="valid")


def _truth_from_logits(z_eng, z_res, z_share, z_appeal, z_curve, components) -> EngagementTruth:
    engagement = float(_sigmoid(z_eng))
    return EngagementTruth(engagement, float(_sigmoid(z_res)), float(_sigmoid(z_share)),
                           _sigmoid(z_appeal).astype(np.float32), engagement_class(engagement),
                           _sigmoid(z_curve).astype(np.float32), components)


def engagement_truth(script: ClipScript) -> EngagementTruth:
    """The noise-free oracle: the best any model can know from what the clip shows."""
    return _truth_from_logits(*_truth_logits(script))


def observed_targets(script: ClipScript) -> EngagementTruth:
    """The labels: the oracle's logits plus Gaussian noise of sd NOISE_SD (deterministic by script.seed); the
    class follows from the noisy engagement."""
    return _observed_from_logits(script.seed, _truth_logits(script))


def _observed_from_logits(seed: int, logits: tuple) -> EngagementTruth:
    z_eng, z_res, z_share, z_appeal, z_curve, components = logits
    rng = np.random.default_rng([seed, 0x0B5E])
    z_eng += rng.normal(0, NOISE_SD["engagement"])
    z_res += rng.normal(0, NOISE_SD["resonance"])
    z_share += rng.normal(0, NOISE_SD["shareability"])
    z_appeal = z_appeal + rng.normal(0, NOISE_SD["appeal"], len(AUDIENCE_GROUPS))
    # smooth noise with the documented marginal sd: white noise through a unit-energy Gaussian kernel
    kernel = _gaussian_kernel(CURVE_WEIGHTS["smooth_s"] * MODEL_RATE_HZ)
    kernel /= np.sqrt((kernel ** 2).sum())
    white = rng.normal(0, NOISE_SD["curve"], len(z_curve) + len(kernel) - 1)
    z_curve = z_curve + np.convolve(white, kernel, mode="valid")
    return _truth_from_logits(z_eng, z_res, z_share, z_appeal, z_curve, components)


# ======================================================================================================
# Rendering
# ======================================================================================================

@dataclass(frozen=True)
class RenderedFrame:
    t: float
    image: np.ndarray                                        # uint8 [H, W, 3]
    faces: list[tuple[int, tuple[float, float, float, float], float]]  # (character index, box px, visible fraction)


_SCENE_MARGIN = 0.8     # scene units of background around the wide shot
_SCENE_PX = 200         # background pixels per scene unit (backgrounds are smooth: upscaling them is invisible)


@lru_cache(maxsize=16)
def _scene_background(scene_seed: int, aspect: float) -> Image.Image:
    rng = np.random.default_rng([scene_seed, 0xB6])
    width = int((aspect + 2 * _SCENE_MARGIN) * _SCENE_PX)
    height = int((1 + 2 * _SCENE_MARGIN) * _SCENE_PX)
    return _background(width, height, rng)


def _grade_seed(script: ClipScript) -> int:
    return int(np.random.default_rng([script.scene_seed, 0x6AD]).integers(1 << 62))


def _draw_view(script: ClipScript, geo: _Geometry, k: int, t: float, rect: tuple[float, float, float, float],
               out: int | tuple[int, int], width: int, height: int) -> Image.Image:
    """Draw the part `rect` (frame pixels x0, y0, x1, y1 of a width x height frame) of the picture at time index
    k of `geo` into an image of `out` pixels (before supersampling is undone). Outside the frame is black."""
    ss = _SUPERSAMPLE
    out_w, out_h = (out, out) if isinstance(out, int) else out
    cw, ch = out_w * ss, out_h * ss
    x0, y0, x1, y1 = rect
    per_px = cw / (x1 - x0)                 # canvas pixels per frame pixel
    aspect = script.aspect
    cx, cy, zoom, _shot = (v[0] for v in _cameras(script, np.array([t])))
    # canvas -> frame px -> scene units -> background px (one affine map)
    background = _scene_background(script.scene_seed, aspect)
    scene_per_frame_px = 1.0 / (height * zoom)
    bx0 = (cx + (x0 - width / 2) * scene_per_frame_px + _SCENE_MARGIN) * _SCENE_PX
    by0 = (cy + (y0 - height / 2) * scene_per_frame_px + _SCENE_MARGIN) * _SCENE_PX
    step = scene_per_frame_px / per_px * _SCENE_PX
    canvas = background.transform((cw, ch), Image.Transform.AFFINE, (step, 0, bx0, 0, step, by0),
                                  resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
    order = sorted(range(len(script.characters)), key=lambda i: script.characters[i].depth)
    for i in order:
        if not geo.present[i, k]:
            continue
        track = script.characters[i]
        fx, fy = geo.centre[i, k, 0] * width, geo.centre[i, k, 1] * height
        face_px = geo.face_height[i, k] * height
        centre = ((fx - x0) * per_px, (fy - y0) * per_px)
        # skip faces that cannot reach the canvas: head with hair and ears about 1.4 face heights wide and tall,
        # shoulders about 1.5 face heights wide down to 2 face heights below the centre
        half_w = face_px * per_px * (0.8 if track.body else 0.7)
        below = face_px * per_px * (2.0 if track.body else 0.7)
        if (centre[0] + half_w < 0 or centre[0] - half_w > cw or centre[1] + below < 0
                or centre[1] - 0.75 * face_px * per_px > ch):
            continue
        expression = Expression(**dict(zip(_FIELDS, (float(v) for v in geo.values[i, k]))))
        draw_face(canvas, character_for_id(track.character_id), expression, track.style, centre, face_px * per_px,
                  np.random.default_rng(track.look_seed), roll_degrees=track.roll_degrees, yaw=track.yaw,
                  body=track.body)
    if script.occluders:
        pen = ImageDraw.Draw(canvas)
        for occ in script.occluders:
            if not occ.start <= t <= occ.end:
                continue
            u = (t - occ.start) / max(occ.end - occ.start, 1e-9)
            ox = occ.x_from + u * (occ.x_to - occ.x_from)
            to_canvas = lambda sx, sy: (((sx - cx) * zoom * height + width / 2 - x0) * per_px,
                                        ((sy - cy) * zoom * height + height / 2 - y0) * per_px)
            ax, ay = to_canvas(ox - occ.width / 2, occ.y0)
            bx, by = to_canvas(ox + occ.width / 2, occ.y1)
            if bx < 0 or ax > cw or by < 0 or ay > ch:
                continue
            radius = max(1, int((bx - ax) * (0.5 if occ.kind == "pole" else 0.12)))
            pen.rounded_rectangle([ax, ay, bx, by], radius=radius, fill=occ.colour)
            shade = tuple(int(v * 0.75) for v in occ.colour)
            pen.rectangle([ax + (bx - ax) * 0.7, ay + radius, bx - (bx - ax) * 0.08, by], fill=shade)
    # outside the frame (crops at the border): black, as a crop padded beyond the image
    fx0, fy0 = (0 - x0) * per_px, (0 - y0) * per_px
    fx1, fy1 = (width - x0) * per_px, (height - y0) * per_px
    if fx0 > 0 or fy0 > 0 or fx1 < cw or fy1 < ch:
        pen = ImageDraw.Draw(canvas)
        for box in ((0, 0, cw, fy0), (0, fy1, cw, ch), (0, 0, fx0, ch), (fx1, 0, cw, ch)):
            if box[2] > box[0] and box[3] > box[1]:
                pen.rectangle([box[0], box[1], box[2] - 1e-6, box[3] - 1e-6], fill=(0, 0, 0))
    return _grade(canvas.reduce(ss), np.random.default_rng(_grade_seed(script)))


def render_frames(script: ClipScript, width: int | None = None, height: int | None = None,
                  times: np.ndarray | None = None) -> Iterator[RenderedFrame]:
    """Full frames at script.fps (or at the given times, in seconds), at the script's size unless given, with the
    faces drawn in each."""
    width, height = width or script.width, height or script.height
    if times is None:
        n_frames = max(1, int(round(script.duration_s * script.fps)))
        times = np.arange(n_frames) / script.fps
    times = np.asarray(times, np.float64)
    n_frames = len(times)
    chunk = 64
    for start in range(0, n_frames, chunk):
        ts = times[start:start + chunk]
        geo = _geometry(script, ts)
        for k, t in enumerate(ts):
            image = _draw_view(script, geo, k, float(t), (0, 0, width, height), (width, height), width, height)
            faces = []
            for i in range(len(script.characters)):
                if geo.visible[i, k] > 0:
                    b = np.clip(geo.box[i, k], 0, 1) * (width, height, width, height)
                    faces.append((i, tuple(float(v) for v in b), float(geo.visible[i, k])))
            yield RenderedFrame(float(t), np.asarray(image), faces)


def crop_rect(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """The square crop (frame pixels) the analysis pipeline cuts around a normalised face box
    (facecast.media.images.square_around: the box's long side plus CROP_MARGIN of it on each side)."""
    return square_around((box[0] * width, box[1] * height, box[2] * width, box[3] * height), CROP_MARGIN)


def _pad_outside_frame(crop: np.ndarray, rect: tuple[float, float, float, float], width: int,
                       height: int) -> np.ndarray:
    """Where the crop square leaves the frame, paint the border colour of the part inside it, as
    facecast.media.images.face_crop does when it cuts a face at the edge of a real frame."""
    size = crop.shape[0]
    side = rect[2] - rect[0]
    ix0, iy0 = (max(0.0, rect[0]) - rect[0]) / side * size, (max(0.0, rect[1]) - rect[1]) / side * size
    ix1, iy1 = (min(width, rect[2]) - rect[0]) / side * size, (min(height, rect[3]) - rect[1]) / side * size
    x0, y0 = int(round(ix0)), int(round(iy0))
    x1, y1 = max(x0 + 1, int(round(ix1))), max(y0 + 1, int(round(iy1)))
    if (x0, y0, x1, y1) == (0, 0, size, size):
        return crop
    padded = np.empty_like(crop)
    padded[:] = border_colour(crop[y0:y1, x0:x1])
    padded[y0:y1, x0:x1] = crop[y0:y1, x0:x1]
    return padded


def character_crops(script: ClipScript, size: int = 64, rate_hz: float = MODEL_RATE_HZ
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each character's face crop at each model step, drawn directly (no full frame).

    Returns crops uint8[C, S, size, size, 3], boxes float32[C, S, 4] (normalised xyxy, clipped to the frame) and
    visible bool[C, S], S = ceil(duration_s * rate_hz) steps at their centre times. A crop is what cutting the
    square around the (clipped) box with CROP_MARGIN from the full frame and resizing it to `size` would give;
    cells of invisible characters are zeros."""
    n_steps = max(1, int(math.ceil(script.duration_s * rate_hz - 1e-9)))
    times = (np.arange(n_steps) + 0.5) / rate_hz
    geo = _geometry(script, times)
    n_c = len(script.characters)
    crops = np.zeros((n_c, n_steps, size, size, 3), dtype=np.uint8)
    boxes = np.zeros((n_c, n_steps, 4), dtype=np.float32)
    visible = geo.visible > 0
    for i in range(n_c):
        for k in range(n_steps):
            if not visible[i, k]:
                continue
            box = np.clip(geo.box[i, k], 0.0, 1.0)
            boxes[i, k] = box
            rect = crop_rect(box, script.width, script.height)
            crop = np.asarray(_draw_view(script, geo, k, float(times[k]), rect, size, script.width, script.height))
            crops[i, k] = _pad_outside_frame(crop, rect, script.width, script.height)
    return crops, boxes, visible


def write_clip(script: ClipScript, path: str | Path, width: int | None = None, height: int | None = None) -> Path:
    """Render the clip and encode it (container from the suffix) with facecast.media.video_writer.write_video."""
    from facecast.media.video_writer import write_video

    frames = (frame.image for frame in render_frames(script, width, height))
    return write_video(path, frames, script.fps)
