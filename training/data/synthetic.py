"""Synthetic animated characters: labelled face stills and full frames for training the face networks.

Why synthetic: we own no labelled stylized faces, yet the expression encoder has to recognise faces that artists
draw (it is evaluated on licensed emoji and on held-out synthetic characters). So this generator favours *variety
and artist conventions* over realism: many face shapes, colours, hair, accessories, four drawing styles, and the
symbols artists use to sell an emotion (tears, blush, sweat drops, red/green/blue faces, "^ ^" and "><" eyes...).

Design, in three layers:

1. **Expression → label.** An `Expression` is a handful of continuous face *geometry* parameters (mouth open /
   curve / width, eye open / squeeze, brow raise / tilt, cheek raise, nose wrinkle, mouth asymmetry / wave) plus
   artist *cues* (teeth, tears, blush, sweat, red / green / blue face, anger mark, heart eyes, wink, hearts, hands
   on the cheeks, steam, a swearing bar, vomit — the conventions of emoji sets). The label follows from the
   geometry alone (`emotion_of`): each emotion is a cone of directions away from the neutral face, spanned by a
   few prototypes ("closed smile", "laugh", "content ^ ^", "grin" for happiness...). The emotion is the cone
   nearest to the parameters (weighted least squares with non-negative weights) and the intensity is how far
   along the cone the face is; a face too close to neutral is "neutral". `expression_for` walks from neutral
   towards a random mix of an emotion's prototypes, adds natural noise and checks the round trip, so sampled
   faces carry the label they were asked for. Cues are conventions drawn with some probability; they never decide
   the label (a face without any cue still shows its emotion), but they are correlated with it the way they are
   in real artwork (including the cross-overs: tears of joy, the sweat smile, the flushed surprise).

2. **Character × style → drawing.** A `Character` is an identity (face shape, skin, hair, eyes, nose, ears,
   accessories...) independent of style, so one character can be drawn in all four styles and whole characters
   can be held out of training. The painter draws every shape in *face coordinates* (face half-width = 1, y down),
   mapped to pixels by one affine transform (scale, roll, translation) plus a small yaw shift of interior features,
   so faces render at any size and pose without resampling images. The four styles differ the way artists draw:
   realistic (skin tones, soft shading, almond eyes with iris, nose, lips, thin or no outlines), cartoon (flat
   colours, bold outlines, dot or oval eyes; emoji-like round yellow faces — and emoji cats — without hair are
   common), anime (tall eyes with highlights, tiny nose and mouth, pointed chin, spiky bangs in saturated colours,
   thin lines) and stylized_3d (big round head, radial shading with a specular highlight, no outlines, large
   glossy eyes — or Noto-like glossy dark ovals on emoji faces). Like artists, the painter exaggerates slight
   expressions a little (`_visual`), so that a 0.35-intensity face still reads at 64 px.

3. **Scene.** `render_face` draws one face on a random background (white like emoji sheets, solid, gradient,
   noise, shapes, dark scenes) at a random scale (face 55–100 % of the crop), roll (±15°), yaw, light direction
   and grading, sometimes cut by the border; `render_frame` places several faces in a larger scene and returns
   their boxes; `draw_face` is the reusable piece both are built on (any size, any position). Everything is drawn
   at 2× and box-filtered down (anti-aliasing), and every random choice comes from the numpy Generator passed
   in, so the same seed gives the same bytes.

`sample_still(seed)` and `build_stills(...)` (plus the CLI `python -m training.data.synthetic`) produce the
training set; labels: emotion, intensity, style, character, the four action parameters (clipped to the style's
bounds, seed 003 Table 5) and source="synthetic". About 2–3 ms per 64-px still on one core.
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import itertools
import math
import sys
import time
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageChops, ImageDraw

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES, STYLE_PARAM_BOUNDS

from training.data.manifest import write_manifest

Colour = tuple[int, int, int]


def _clamp(value: float, low: float, high: float) -> float:
    """Scalar clip (np.clip is slow on scalars, and this runs per shape)."""
    return float(min(max(value, low), high))


# ======================================================================================================
# 1. Expressions and their labels
# ======================================================================================================

#: Geometry parameters: these, and only these, decide the emotion label.
GEOMETRY_FIELDS: tuple[str, ...] = (
    "mouth_open", "mouth_curve", "mouth_width", "eye_open", "eye_squeeze", "brow_raise", "brow_tilt",
    "cheek_raise", "nose_wrinkle", "mouth_asym", "mouth_wave",
)
#: Artist cues: drawn conventions correlated with an emotion, 0 = absent, up to 1 = strong.
CUE_FIELDS: tuple[str, ...] = (
    "teeth", "tears", "blush", "sweat", "red_tint", "green_tint", "pale_tint", "anger_mark",
    "heart_eyes", "wink", "hearts", "hands", "steam", "symbols", "vomit",
)

# Parameters that range over [-1, 1]; all others are in [0, 1].
_SIGNED_FIELDS = {"mouth_curve", "brow_tilt", "mouth_asym"}


@dataclass(frozen=True)
class Expression:
    """A facial expression as continuous parameters (see GEOMETRY_FIELDS and CUE_FIELDS)."""

    mouth_open: float = 0.05    # 0 closed .. 1 wide open
    mouth_curve: float = 0.0    # -1 frown .. +1 smile
    eye_open: float = 0.55      # 0 shut .. 1 wide (0.55 = relaxed)
    brow_raise: float = 0.5     # 0 lowered .. 1 raised
    brow_tilt: float = 0.0      # -1 inner ends down (anger) .. +1 inner ends up (sadness, fear)
    cheek_raise: float = 0.2    # 0 .. 1 (the smile muscle: pushes the lower lids up)
    mouth_width: float = 0.45   # 0 narrow "o" / pout .. 1 stretched
    eye_squeeze: float = 0.0    # 0 .. 1 lids pressed together (squint, "><")
    nose_wrinkle: float = 0.0   # 0 .. 1 (disgust)
    mouth_asym: float = 0.0     # -1 .. 1 one mouth corner raised (sneer); the sign picks the side
    mouth_wave: float = 0.0     # 0 .. 1 wavy mouth line (nausea, distress)
    # artist cues
    teeth: float = 0.0
    tears: float = 0.0
    blush: float = 0.0
    sweat: float = 0.0
    red_tint: float = 0.0
    green_tint: float = 0.0
    pale_tint: float = 0.0
    anger_mark: float = 0.0     # the "💢" vein mark
    heart_eyes: float = 0.0     # eyes drawn as hearts or stars (delight)
    wink: float = 0.0           # one eye shut
    hearts: float = 0.0         # little hearts floating around the face
    hands: float = 0.0          # hands pressed to the cheeks (the scream)
    steam: float = 0.0          # puffs of steam from the nose (fuming)
    symbols: float = 0.0        # a "#%!&" bar over the mouth (swearing)
    vomit: float = 0.0          # green vomit from the mouth


NEUTRAL = Expression()

# Prototype faces at full intensity, a few per emotion (fields not named keep their neutral value). An emotion
# is the cone spanned by its prototypes' offsets from NEUTRAL; mixing prototypes of one emotion stays in its cone.
PROTOTYPES: dict[str, tuple[dict[str, float], ...]] = {
    "happiness": (
        dict(mouth_open=0.08, mouth_curve=0.95, mouth_width=0.75, eye_open=0.40, brow_raise=0.6, cheek_raise=0.85),
        dict(mouth_open=0.75, mouth_curve=0.85, mouth_width=0.85, eye_open=0.25, eye_squeeze=0.2, brow_raise=0.65,
             cheek_raise=1.0),
        dict(mouth_open=0.05, mouth_curve=0.8, mouth_width=0.65, eye_open=0.02, brow_raise=0.6, cheek_raise=0.9),
        dict(mouth_open=0.6, mouth_curve=0.9, mouth_width=0.85, eye_open=0.6, brow_raise=0.65, cheek_raise=0.6),
    ),
    "sadness": (
        dict(mouth_open=0.05, mouth_curve=-0.85, mouth_width=0.45, eye_open=0.32, brow_raise=0.42, brow_tilt=0.9,
             cheek_raise=0.1),
        dict(mouth_open=0.55, mouth_curve=-0.8, mouth_width=0.7, eye_open=0.12, eye_squeeze=0.45, brow_raise=0.4,
             brow_tilt=0.95, cheek_raise=0.3, mouth_wave=0.25),
        dict(mouth_open=0.05, mouth_curve=-0.6, mouth_width=0.4, eye_open=0.03, brow_raise=0.4, brow_tilt=0.85,
             cheek_raise=0.1),
    ),
    "anger": (
        dict(mouth_open=0.05, mouth_curve=-0.65, mouth_width=0.5, eye_open=0.5, eye_squeeze=0.25, brow_raise=0.05,
             brow_tilt=-0.95, cheek_raise=0.3, nose_wrinkle=0.1),
        dict(mouth_open=0.65, mouth_curve=-0.55, mouth_width=0.8, eye_open=0.6, eye_squeeze=0.15, brow_raise=0.05,
             brow_tilt=-1.0, cheek_raise=0.4, nose_wrinkle=0.1),
    ),
    "surprise": (
        dict(mouth_open=0.8, mouth_curve=0.0, mouth_width=0.2, eye_open=1.0, brow_raise=1.0, brow_tilt=0.1,
             cheek_raise=0.1),
    ),
    "fear": (
        dict(mouth_open=0.55, mouth_curve=-0.45, mouth_width=0.8, eye_open=1.0, brow_raise=0.85, brow_tilt=0.95,
             cheek_raise=0.1, mouth_wave=0.3),
        dict(mouth_open=0.28, mouth_curve=-0.4, mouth_width=1.0, eye_open=0.9, brow_raise=0.75, brow_tilt=0.85,
             cheek_raise=0.2, mouth_wave=0.2),
        dict(mouth_open=1.0, mouth_curve=-0.25, mouth_width=0.3, eye_open=1.0, brow_raise=0.9, brow_tilt=0.9,
             cheek_raise=0.1),
    ),
    "disgust": (
        dict(mouth_open=0.18, mouth_curve=-0.5, mouth_width=0.55, eye_open=0.3, eye_squeeze=0.55, brow_raise=0.25,
             brow_tilt=-0.25, cheek_raise=0.55, nose_wrinkle=1.0, mouth_asym=0.85),
        dict(mouth_open=0.05, mouth_curve=-0.5, mouth_width=0.5, eye_open=0.1, eye_squeeze=0.95, brow_raise=0.3,
             brow_tilt=-0.1, cheek_raise=0.6, nose_wrinkle=0.7, mouth_asym=0.2, mouth_wave=0.9),
    ),
}

# How much each geometry parameter counts in the distance between faces (visual salience at 64 px).
_FIELD_WEIGHTS = dict(mouth_open=1.0, mouth_curve=1.2, mouth_width=0.6, eye_open=1.0, eye_squeeze=0.6,
                      brow_raise=0.8, brow_tilt=1.0, cheek_raise=0.5, nose_wrinkle=0.6, mouth_asym=0.5,
                      mouth_wave=0.5)
#: Below this intensity a face reads as neutral.
NEUTRAL_MAX_INTENSITY = 0.2
# Natural variation added by expression_for (standard deviation, in parameter units).
_NOISE_SD = 0.07

_WEIGHTS = np.array([_FIELD_WEIGHTS[f] for f in GEOMETRY_FIELDS])


#: Below these values a mouth / an eye is drawn shut, so lower values look (and count) the same.
MOUTH_SHUT_BELOW = 0.15
EYE_SHUT_BELOW = 0.10
_MOUTH_OPEN, _EYE_OPEN, _MOUTH_ASYM = (GEOMETRY_FIELDS.index(f) for f in ("mouth_open", "eye_open", "mouth_asym"))


def _geometry_vector(expression: Expression) -> np.ndarray:
    """The weighted geometry of a face as it looks: a shut mouth / eye counts the same however shut, and
    |mouth_asym| counts because which corner rises does not change the emotion."""
    values = [getattr(expression, f) for f in GEOMETRY_FIELDS]
    values[_MOUTH_OPEN] = max(values[_MOUTH_OPEN], MOUTH_SHUT_BELOW)
    values[_EYE_OPEN] = max(values[_EYE_OPEN], EYE_SHUT_BELOW)
    values[_MOUTH_ASYM] = abs(values[_MOUTH_ASYM])
    return np.asarray(values) * _WEIGHTS


def _build_cones() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Every non-empty subset of each emotion's prototype directions, as padded stacks for one vectorised solve.

    Non-negative least squares over a handful of directions is solved exactly by trying every subset (an
    exhaustive active set): the unconstrained fit on a subset is kept if its weights are all non-negative.
    Returns (emotion of each subset, bases S x K x D, pseudo-inverses S x D x K, full-intensity length of the
    subset's emotion S), K = the most prototypes of any emotion; padding rows are zero."""
    neutral = _geometry_vector(NEUTRAL)
    owners, bases, pinvs, lengths = [], [], [], []
    dims, most = len(GEOMETRY_FIELDS), max(len(p) for p in PROTOTYPES.values())
    for emotion, prototypes in PROTOTYPES.items():
        directions = np.stack([_geometry_vector(dataclasses.replace(NEUTRAL, **p)) - neutral for p in prototypes])
        full_length = float(np.linalg.norm(directions, axis=1).mean())
        for k in range(1, len(directions) + 1):
            for subset in itertools.combinations(range(len(directions)), k):
                basis = np.zeros((most, dims))
                pinv = np.zeros((dims, most))
                basis[:k] = directions[list(subset)]
                pinv[:, :k] = np.linalg.pinv(directions[list(subset)])
                owners.append(emotion)
                bases.append(basis)
                pinvs.append(pinv)
                lengths.append(full_length)
    return owners, np.stack(bases), np.stack(pinvs), np.array(lengths)


_NEUTRAL_VECTOR = _geometry_vector(NEUTRAL)
_NEUTRAL_VALUES = dataclasses.asdict(NEUTRAL)
_CONE_OWNERS, _CONE_BASES, _CONE_PINVS, _CONE_LENGTHS = _build_cones()


@lru_cache(maxsize=4096)  # the planner labels an expression and the painter asks again
def emotion_of(expression: Expression) -> tuple[str, float]:
    """The label of a face: (emotion, intensity in [0, 1]), following from the geometry parameters only.

    The emotion is the prototype cone nearest to the face (least squares, non-negative weights). The intensity
    is the length of the face's offset from neutral within that cone, relative to the emotion's prototypes
    (1 = as far from neutral as they are). (A length, not the sum of the weights: an emotion's prototypes point
    in similar directions, so the weights are not unique but the fitted offset is.) A face with intensity below
    NEUTRAL_MAX_INTENSITY is "neutral", its intensity then that small remaining expressiveness."""
    offset = _geometry_vector(expression) - _NEUTRAL_VECTOR
    weights = np.einsum("d,sdk->sk", offset, _CONE_PINVS)
    fitted = np.einsum("sk,skd->sd", weights, _CONE_BASES)
    residuals = ((offset - fitted) ** 2).sum(axis=1)
    residuals[(weights < -1e-9).any(axis=1)] = np.inf
    best = int(np.argmin(residuals))  # ties go to the earlier emotion in PROTOTYPES order
    intensity = float(np.linalg.norm(fitted[best]) / _CONE_LENGTHS[best])
    if intensity < NEUTRAL_MAX_INTENSITY:
        return "neutral", intensity
    return _CONE_OWNERS[best], min(intensity, 1.0)


def emotions_of(geometry: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`emotion_of` for many faces at once (clips label every character at every step; one call per clip).

    `geometry`: N x len(GEOMETRY_FIELDS) raw parameter values in GEOMETRY_FIELDS order. Returns (emotion index
    into facecast.vocab.EMOTIONS, intensity in [0, 1]) per row, exactly as emotion_of would label each face."""
    values = np.array(geometry, dtype=float, ndmin=2)
    values[:, _MOUTH_OPEN] = np.maximum(values[:, _MOUTH_OPEN], MOUTH_SHUT_BELOW)
    values[:, _EYE_OPEN] = np.maximum(values[:, _EYE_OPEN], EYE_SHUT_BELOW)
    values[:, _MOUTH_ASYM] = np.abs(values[:, _MOUTH_ASYM])
    offset = values * _WEIGHTS - _NEUTRAL_VECTOR
    weights = np.matmul(offset, _CONE_PINVS)  # S x N x K
    fitted = np.matmul(weights, _CONE_BASES)  # S x N x D
    residuals = ((offset - fitted) ** 2).sum(axis=2)
    residuals[(weights < -1e-9).any(axis=2)] = np.inf
    best = np.argmin(residuals, axis=0)
    rows = np.arange(len(values))
    intensity = np.linalg.norm(fitted[best, rows], axis=1) / _CONE_LENGTHS[best]
    owner = np.array([EMOTIONS.index(e) for e in _CONE_OWNERS])[best]
    neutral = intensity < NEUTRAL_MAX_INTENSITY
    return np.where(neutral, EMOTIONS.index("neutral"), owner), np.where(neutral, intensity, np.minimum(intensity, 1.0))


def _clip_expression(values: dict[str, float]) -> dict[str, float]:
    return {k: min(max(float(v), -1.0 if k in _SIGNED_FIELDS else 0.0), 1.0) for k, v in values.items()}


# Probability that an artist adds each cue to a face showing the emotion at full intensity (x 0.5 at intensity 0,
# x 1.2 at intensity 1). Cross-emotion cues are deliberate: tears of joy, the sweat-smile, the flushed surprise.
_CUE_PROBABILITY: dict[str, dict[str, float]] = {
    "happiness": dict(teeth=0.65, blush=0.3, tears=0.1, sweat=0.07, heart_eyes=0.1, wink=0.07, hearts=0.05),
    "sadness": dict(tears=0.5, sweat=0.12, pale_tint=0.06, teeth=0.1),
    "anger": dict(red_tint=0.4, anger_mark=0.2, teeth=0.45, steam=0.1, symbols=0.06),
    "surprise": dict(blush=0.1, sweat=0.07, teeth=0.05, pale_tint=0.05),
    "fear": dict(pale_tint=0.7, sweat=0.45, tears=0.1, teeth=0.4, hands=0.25),
    "disgust": dict(green_tint=0.5, sweat=0.08, teeth=0.25, vomit=0.25),
    "neutral": dict(sweat=0.03, blush=0.03),
}


def expression_for(emotion: str, intensity: float, rng: np.random.Generator) -> Expression:
    """Parameters of a face showing `emotion` at `intensity` in [0, 1], with natural variation.

    Walks from NEUTRAL towards a random mix of the emotion's prototypes, adds noise, and checks that
    `emotion_of` gives the emotion back (for intensity >= ~0.3; below NEUTRAL_MAX_INTENSITY a face is neutral
    by definition); if the noise pushed it across a border the noise is halved and the draw repeated."""
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    intensity = _clamp(intensity, 0.0, 1.0)
    neutral = _NEUTRAL_VALUES
    if emotion == "neutral":
        target = dict(neutral)
    else:
        prototypes = PROTOTYPES[emotion]
        mix = rng.dirichlet(np.full(len(prototypes), 0.6))
        target = {f: neutral[f] + intensity * sum(w * (p.get(f, neutral[f]) - neutral[f])
                                                   for w, p in zip(mix, prototypes))
                  for f in GEOMETRY_FIELDS}
    if emotion != "neutral" and rng.random() < 0.5:
        target["mouth_asym"] = -target["mouth_asym"]  # which mouth corner a sneer raises is free
    # a calm face varies less than an expressive one, so that neutral stays clearly apart from weak emotions
    noise = rng.normal(0.0, _NOISE_SD * (0.6 if emotion == "neutral" else 1.0), len(GEOMETRY_FIELDS))
    cues = _sample_cues(emotion, intensity, target, rng)
    check = emotion == "neutral" or intensity >= 0.3  # weaker faces may legitimately read as neutral
    for scale in (1.0, 0.5, 0.25, 0.0):
        geometry = _clip_expression({f: target[f] + scale * n for f, n in zip(GEOMETRY_FIELDS, noise)})
        expression = Expression(**geometry, **cues)
        if not check or emotion_of(expression)[0] == emotion:
            break
    return expression


def _sample_cues(emotion: str, intensity: float, geometry: dict[str, float], rng: np.random.Generator) -> dict:
    """Which artist cues this face gets (see _CUE_PROBABILITY), each with a strength in about [0.3, 1]."""
    cues = {c: 0.0 for c in CUE_FIELDS}
    draws = rng.random(len(CUE_FIELDS))
    strengths = rng.uniform(0.5, 1.0, len(CUE_FIELDS))
    for i, cue in enumerate(CUE_FIELDS):
        p = _CUE_PROBABILITY[emotion].get(cue, 0.0) * (0.5 + 0.7 * intensity)
        if cue == "teeth" and geometry["mouth_open"] < 0.2:
            p = 0.0  # teeth only show through an open mouth
        if draws[i] < p:
            cues[cue] = float(strengths[i] * (0.6 + 0.4 * intensity))
    return cues


def expression_in_style(expression: Expression, style: str) -> Expression:
    """The expression as drawn in `style`: the four action parameters clipped to the style's bounds."""
    bounds = STYLE_PARAM_BOUNDS[style]

    def clip(value: float, name: str) -> float:
        low, high = bounds[name]
        return float(min(max(value, low), high))

    return dataclasses.replace(
        expression,
        mouth_open=clip(expression.mouth_open, "mouth"),
        eye_open=clip(expression.eye_open, "eye"),
        brow_raise=clip(expression.brow_raise, "brow"),
        cheek_raise=clip(expression.cheek_raise, "cheek"),
    )


def action_params(expression: Expression, style: str) -> np.ndarray:
    """float32 [4]: mouth, eye, brow, cheek (facecast.vocab.ACTION_PARAMS), clipped to the style's bounds."""
    drawn = expression_in_style(expression, style)
    return np.array([drawn.mouth_open, drawn.eye_open, drawn.brow_raise, drawn.cheek_raise], dtype=np.float32)


# ======================================================================================================
# 2. Characters
# ======================================================================================================

HUMAN_SKINS: tuple[Colour, ...] = (
    (255, 228, 206), (246, 207, 180), (236, 188, 156), (224, 172, 132), (205, 146, 104), (176, 118, 80),
    (141, 92, 62), (108, 70, 48), (84, 56, 40), (250, 215, 185),
)
# Emoji-like faces: the yellows and oranges of Twemoji / Noto / OpenMoji and friends.
EMOJI_SKINS: tuple[Colour, ...] = (
    (255, 204, 77), (252, 194, 27), (255, 214, 90), (250, 184, 40), (255, 221, 103), (246, 176, 56),
    (255, 196, 60), (240, 200, 70),
)
# Non-human skins and furs (no strong red or green: those are the anger and disgust conventions).
FANTASY_SKINS: tuple[Colour, ...] = (
    (120, 170, 235), (170, 130, 220), (250, 170, 200), (180, 180, 192), (240, 160, 90), (110, 200, 200),
    (240, 240, 232), (176, 128, 88), (140, 110, 90), (255, 240, 150), (200, 170, 240), (150, 200, 250),
)
NATURAL_HAIR: tuple[Colour, ...] = (
    (30, 24, 22), (60, 40, 28), (95, 62, 38), (140, 96, 56), (190, 150, 90), (230, 200, 130), (160, 70, 40),
    (120, 120, 125), (235, 235, 230), (80, 50, 30),
)
FANTASY_HAIR: tuple[Colour, ...] = (
    (240, 110, 170), (90, 140, 240), (150, 90, 220), (80, 200, 170), (250, 150, 60), (230, 60, 70),
    (250, 220, 80), (60, 60, 140), (200, 220, 240), (120, 210, 90),
)
IRIS_COLOURS: tuple[Colour, ...] = (
    (70, 45, 30), (110, 70, 40), (60, 110, 170), (70, 140, 90), (120, 120, 130), (40, 30, 30), (150, 90, 200),
    (200, 60, 80), (60, 170, 200), (180, 130, 40),
)
ACCENT_COLOURS: tuple[Colour, ...] = (
    (220, 60, 60), (60, 110, 220), (250, 200, 40), (60, 170, 90), (160, 80, 200), (250, 130, 40), (40, 40, 50),
    (240, 240, 240), (240, 120, 170), (40, 150, 170),
)

HAIR_STYLES = ("none", "short", "long", "bob", "spiky", "curly", "bun", "ponytail", "twintails")
FRINGES = ("none", "straight", "swept", "parted", "spiky")


@dataclass(frozen=True)
class Character:
    """An identity, independent of style: the same character can be drawn in every style."""

    character_id: str
    kind: str                       # "human", "fantasy" (non-human skin / fur) or "emoji" (round yellow face)
    skin: Colour                    # skin or fur colour in the stylised styles
    human_skin: Colour              # skin tone in the realistic style
    head_height: float              # half-height / half-width of the head (1 = round)
    jaw_taper: float                # 0 round jaw .. 1 narrow jaw
    chin_point: float               # 0 round chin .. 1 pointed
    hair_style: str                 # one of HAIR_STYLES
    fringe: str                     # one of FRINGES
    hair_colour: Colour
    hair_seed: int                  # fixes the strand pattern of the fringe
    eye_size: float                 # multiplier around 1
    eye_spacing: float              # multiplier around 1
    eye_roundness: float            # 0 almond .. 1 round
    iris_colour: Colour
    lashes: bool
    toon_eyes: str                  # how the cartoon style draws the eyes: "dots" (emoji ovals) or "whites"
    brow_weight: float              # brow thickness multiplier
    nose: str                       # "none", "button", "pointy", "round", "line"
    nose_size: float
    ears: str                       # "none", "human", "pointy", "cat", "bear"
    whiskers: bool                  # cat whiskers
    horns: bool                     # little devil horns (the imp faces)
    mouth_size: float               # multiplier around 1
    lip_colour: Colour
    glasses: str                    # "none", "round", "square"
    glasses_colour: Colour
    hat: str                        # "none", "cap", "beanie", "bow", "headband"
    hat_colour: Colour
    earrings: bool
    freckles: bool
    facial_hair: str                # "none", "moustache", "beard"
    clothes_colour: Colour
    outline_colour: Colour          # line colour in the cartoon and anime styles


def _pick(rng: np.random.Generator, options, weights=None):
    """One of `options`, uniformly or with the given relative weights."""
    if weights is None:
        return options[int(rng.integers(len(options)))]
    u = rng.random() * sum(weights)
    for option, weight in zip(options, weights):
        u -= weight
        if u < 0:
            return option
    return options[-1]


def _jitter(colour: Colour, rng: np.random.Generator, amount: float = 12.0) -> Colour:
    noise = rng.normal(0, amount, 3)
    return tuple(int(min(max(c + n, 0), 255)) for c, n in zip(colour, noise))


def sample_character(rng: np.random.Generator, character_id: str) -> Character:
    """A random character (identity); all of it comes from `rng`."""
    kind = _pick(rng, ("human", "fantasy", "emoji"), (0.45, 0.2, 0.35))
    human_skin = _jitter(_pick(rng, HUMAN_SKINS), rng, 8)
    if kind == "emoji":
        skin = _jitter(_pick(rng, EMOJI_SKINS), rng, 6)
    elif kind == "fantasy":
        skin = _jitter(_pick(rng, FANTASY_SKINS), rng, 10)
    else:
        skin = human_skin
    emoji = kind == "emoji"
    hair_style = "none" if emoji and rng.random() < 0.85 else _pick(
        rng, HAIR_STYLES, (0.06, 0.22, 0.16, 0.12, 0.14, 0.08, 0.07, 0.08, 0.07))
    fringe = "none" if hair_style == "none" else _pick(rng, FRINGES, (0.1, 0.25, 0.3, 0.2, 0.15))
    fantasy_hair = rng.random() < (0.45 if kind != "human" else 0.25)
    hair_colour = _jitter(_pick(rng, FANTASY_HAIR if fantasy_hair else NATURAL_HAIR), rng, 10)
    if emoji:  # emoji come as plain faces and as cats (the smiling / crying / pouting cat faces)
        ears = "cat" if rng.random() < 0.2 else "none"
    else:
        ears = _pick(rng, ("none", "human", "pointy", "cat", "bear"),
                     (0.1, 0.45, 0.1, 0.25, 0.1) if kind == "fantasy" else (0.2, 0.7, 0.06, 0.02, 0.02))
    glasses = _pick(rng, ("none", "round", "square"), (0.86, 0.07, 0.07))
    hat = _pick(rng, ("none", "cap", "beanie", "bow", "headband"), (0.8, 0.05, 0.05, 0.05, 0.05))
    return Character(
        character_id=character_id,
        kind=kind,
        skin=skin,
        human_skin=human_skin,
        head_height=1.0 if emoji else float(rng.uniform(1.0, 1.3)),
        jaw_taper=float(rng.uniform(0.0, 0.15)) if emoji else float(rng.uniform(0.0, 0.8)),
        chin_point=0.0 if emoji else float(rng.uniform(0.0, 0.7)),
        hair_style=hair_style,
        fringe=fringe,
        hair_colour=hair_colour,
        hair_seed=int(rng.integers(1 << 30)),
        eye_size=float(rng.uniform(0.85, 1.2)),
        eye_spacing=float(rng.uniform(0.9, 1.1)),
        eye_roundness=float(rng.uniform(0.0, 1.0)),
        iris_colour=_jitter(_pick(rng, IRIS_COLOURS), rng, 10),
        lashes=bool(rng.random() < 0.5),
        toon_eyes="dots" if (emoji and rng.random() < 0.8) or rng.random() < 0.35 else "whites",
        brow_weight=float(rng.uniform(0.75, 1.35)),
        nose="none" if emoji and rng.random() < 0.85 else _pick(rng, ("none", "button", "pointy", "round", "line")),
        nose_size=float(rng.uniform(0.8, 1.25)),
        ears=ears,
        whiskers=bool(ears == "cat" and rng.random() < 0.8),
        horns=bool(kind != "human" and ears != "cat" and rng.random() < 0.12),
        mouth_size=float(rng.uniform(0.85, 1.15)),
        lip_colour=_jitter((200, 100, 100) if rng.random() < 0.6 else (170, 90, 80), rng, 15),
        glasses=glasses,
        glasses_colour=_pick(rng, ((30, 30, 35), (90, 60, 40), (180, 40, 40), (40, 70, 160), (200, 200, 210))),
        hat=hat,
        hat_colour=_jitter(_pick(rng, ACCENT_COLOURS), rng, 10),
        earrings=bool(not emoji and rng.random() < 0.12),
        freckles=bool(not emoji and rng.random() < 0.12),
        facial_hair="none" if emoji or rng.random() < 0.85 else _pick(rng, ("moustache", "beard")),
        clothes_colour=_jitter(_pick(rng, ACCENT_COLOURS), rng, 20),
        outline_colour=_pick(rng, ((25, 20, 20), (40, 30, 30), (60, 40, 30), (20, 20, 40))),
    )


#: Number of characters in the default pool; ids "c00000" .. "c01499".
CHARACTER_POOL_SIZE = 1500
DEFAULT_CHARACTER_IDS: tuple[str, ...] = tuple(f"c{n:05d}" for n in range(CHARACTER_POOL_SIZE))


@lru_cache(maxsize=4096)
def character_for_id(character_id: str) -> Character:
    """The character behind an id: always the same one (seeded by a stable hash of the id)."""
    return sample_character(np.random.default_rng(zlib.crc32(character_id.encode("utf-8"))), character_id)


# ======================================================================================================
# 3. Drawing: face coordinates → pixels
# ======================================================================================================

def _mix(a: Colour, b: Colour, t: float) -> Colour:
    t = min(max(t, 0.0), 1.0)
    return (int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t), int(a[2] + (b[2] - a[2]) * t))


def _scale_colour(c: Colour, f: float) -> Colour:
    return (min(255, int(c[0] * f)), min(255, int(c[1] * f)), min(255, int(c[2] * f)))


def _rgba(c: Colour, alpha: float) -> tuple[int, int, int, int]:
    return (c[0], c[1], c[2], int(_clamp(alpha, 0, 1) * 255))


@lru_cache(maxsize=8192)
def _saturate(c: Colour, saturation: float, value: float = 1.0, hue_shift: float = 0.0) -> Colour:
    h, s, v = colorsys.rgb_to_hsv(c[0] / 255, c[1] / 255, c[2] / 255)
    r, g, b = colorsys.hsv_to_rgb((h + hue_shift) % 1.0, min(1.0, s * saturation), min(1.0, v * value))
    return (int(r * 255), int(g * 255), int(b * 255))


@lru_cache(maxsize=None)
def _grid(start: float, stop: float, n: int) -> np.ndarray:
    """np.linspace, cached: the painter asks for the same few sample grids thousands of times."""
    grid = np.linspace(start, stop, n)
    grid.flags.writeable = False
    return grid


_UNIT_CIRCLE = {n: np.stack([np.cos(np.linspace(0, 2 * np.pi, n, endpoint=False)),
                             np.sin(np.linspace(0, 2 * np.pi, n, endpoint=False))], axis=1) for n in (12, 20, 32, 48)}


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float = 0.0, n: int = 20) -> np.ndarray:
    pts = _UNIT_CIRCLE[n] * (rx, ry)
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        pts = pts @ np.array([[c, s], [-s, c]])
    return pts + (cx, cy)


def _drop_points(cx: float, cy: float, r: float) -> np.ndarray:
    """A tear / sweat drop: a round bottom of radius r centred at (cx, cy) with a point on top."""
    a = _grid(-np.pi / 2 + 0.8, 1.5 * np.pi - 0.8, 14)
    arc = np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)
    return np.concatenate([arc, [[cx, cy - 2.1 * r]]])


@dataclass(frozen=True)
class _Pose:
    """Where a face goes in an image: centre and face half-width in pixels, roll (radians), yaw (-1..1)."""

    cx: float
    cy: float
    scale: float
    roll: float
    yaw: float


class _Pen:
    """Draws shapes given in face coordinates (face half-width = 1, y down) onto a PIL image.

    `depth` says how far a shape sits in front of the face plane: yaw slides interior features (depth 1) sideways
    while the head outline (depth 0) stays, which reads as a slight head turn at these sizes."""

    def __init__(self, image: Image.Image, pose: _Pose):
        self.image = image
        self.draw = ImageDraw.Draw(image, "RGBA")
        c, s = math.cos(pose.roll), math.sin(pose.roll)
        self.roll = pose.roll
        self.matrix = np.array([[c, s], [-s, c]]) * pose.scale
        self.offset = np.array([pose.cx, pose.cy])
        self.scale = pose.scale
        self.yaw = pose.yaw
        self._affine: dict[float, tuple[np.ndarray, np.ndarray]] = {}

    def px(self, pts: np.ndarray, depth: float = 1.0) -> np.ndarray:
        """Face coordinates -> pixels. Yaw squeezes x a little and slides it by 0.22 * yaw * depth; together with
        roll, scale and translation that is one affine map per depth, cached."""
        affine = self._affine.get(depth)
        if affine is None:
            squeeze = np.array([[1 - 0.12 * abs(self.yaw) * depth, 0.0], [0.0, 1.0]])
            shift = np.array([0.22 * self.yaw * depth, 0.0])
            affine = self._affine[depth] = (squeeze @ self.matrix, shift @ self.matrix + self.offset)
        return np.asarray(pts, dtype=float) @ affine[0] + affine[1]

    def width(self, w: float) -> int:
        # at least 2 canvas pixels: lines must survive the 2x downsampling
        return max(2, int(round(w * self.scale)))

    def polygon(self, pts, fill, outline=None, width: float = 0.0, depth: float = 1.0) -> None:
        xy = self.px(pts, depth).ravel().tolist()
        if outline is not None and width > 0:
            self.draw.polygon(xy, fill=fill)
            self.draw.line(xy + xy[:4], fill=outline, width=self.width(width), joint="curve")
        else:
            self.draw.polygon(xy, fill=fill)

    def line(self, pts, colour, width: float, depth: float = 1.0) -> None:
        self.draw.line(self.px(pts, depth).ravel().tolist(), fill=colour, width=self.width(width), joint="curve")

    def ellipse(self, cx, cy, rx, ry, fill, outline=None, width=0.0, angle=0.0, depth=1.0, n=20) -> None:
        self.polygon(_ellipse_points(cx, cy, rx, ry, angle, n), fill, outline, width, depth)

    def mask(self, pts, depth: float = 0.0, value: float = 1.0) -> Image.Image:
        """An L mask of the polygon (255 * value inside, 0 outside), the size of the image."""
        mask = Image.new("L", self.image.size, 0)
        ImageDraw.Draw(mask).polygon(self.px(pts, depth).ravel().tolist(), fill=int(255 * _clamp(value, 0, 1)))
        return mask

    def gradient(self, kind: str, cx: float, cy: float, radius: float, angle: float = 0.0) -> Image.Image:
        """An L image the size of the image. 'radial': 0 at (cx, cy) rising to 255 at `radius` (face units).
        'linear': 0 on the line through (cx, cy), rising to 255 at `radius` along direction `angle` (0 = down).

        Sampled at a quarter of the resolution and scaled up: gradients are smooth and this is 10x cheaper."""
        quarter = 4
        width, height = self.image.size
        small = (max(1, -(-width // quarter)), max(1, -(-height // quarter)))
        centre = self.px(np.array([[cx, cy]]), 0.0)[0]
        base = _radial_ramp() if kind == "radial" else _linear_ramp()
        n = base.size[0]
        k = (n / (2 * _RAMP_SPAN)) / (radius * self.scale)  # ramp pixels per image pixel
        c, s = math.cos(self.roll + angle), math.sin(self.roll + angle)
        a, b, d, e = c * k, s * k, -s * k, c * k
        data = (a * quarter, b * quarter, n / 2 - a * centre[0] - b * centre[1],
                d * quarter, e * quarter, n / 2 - d * centre[0] - e * centre[1])
        ramp = base.transform(small, Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR, fillcolor=255)
        return ramp.resize((small[0] * quarter, small[1] * quarter), Image.Resampling.BILINEAR).crop(
            (0, 0, width, height))


# The ramps span +-_RAMP_SPAN radii so that faces never reach their edge.
_RAMP_SPAN = 4.0


@lru_cache(maxsize=1)
def _radial_ramp() -> Image.Image:
    n = 256
    y, x = (np.mgrid[0:n, 0:n] + 0.5 - n / 2) / (n / 2) * _RAMP_SPAN
    return Image.fromarray((np.clip(np.sqrt(x * x + y * y), 0, 1) * 255).astype(np.uint8), "L")


@lru_cache(maxsize=1)
def _linear_ramp() -> Image.Image:
    n = 256
    y = (np.arange(n) + 0.5 - n / 2) / (n / 2) * _RAMP_SPAN
    return Image.fromarray(np.repeat((np.clip(y, 0, 1) * 255)[:, None], n, axis=1).astype(np.uint8), "L")


# ------------------------------------------------------------------------------------------------------
# Style layouts: where the features sit and how big they are, per style (face units)
# ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Look:
    style: str
    emoji: bool                 # draw as an emoji-like blob (round, no hair, no ears)
    skin: Colour
    outline: Colour | None      # face outline colour (None: no outline)
    line_width: float           # outline width (face units)
    feature_colour: Colour      # eyes / brows / mouth line colour
    head_top: float
    head_bottom: float
    jaw: float
    chin: float
    eye_kind: str               # "almond", "dots", "whites", "anime", "glossy"
    eye_x: float
    eye_y: float
    eye_w: float
    eye_h: float
    brow_gap: float
    brow_width: float
    draw_brows: bool
    nose_y: float
    mouth_y: float
    mouth_w: float
    hair_colour: Colour
    shading: str                # "flat", "soft", "radial", "cel"
    light_angle: float          # where the light comes from (radians, 0 = from the right, -pi/2 = from above)
    white_mouth: bool = False   # an open mouth drawn white inside (OpenMoji)
    flat_eyes: bool = False     # neutral faces drawn with "— —" eyes (expressionless emoji)
    no_mouth: bool = False      # neutral faces drawn without a mouth (face without mouth emoji)


def _look_top_bottom(character: Character, style: str) -> tuple[float, float]:
    """Head half-heights above and below the face centre in `style` (face units), without random choices."""
    if style == "realistic":
        return character.head_height * 1.15, character.head_height * 1.25
    if style == "cartoon":
        if character.kind == "emoji":
            return 1.0, 1.0
        h = min(character.head_height, 1.15)
        return h, h * 1.02
    if style == "anime":
        return 1.1, 1.28
    return 0.98, 1.03


def _look_for(character: Character, style: str, expression: Expression, neutral: bool,
              rng: np.random.Generator, variation: LookVariation | None = None) -> _Look:
    """How this character is drawn in this style this time (`neutral`: the face reads as neutral)."""
    # A fixed number of draws, whatever the expression: with the same rng state, a character keeps its look
    # (light, outline, shading...) while its expression changes, e.g. from frame to frame of a clip.
    u = rng.random(13)
    look = _base_look(character, style, expression, u)
    if variation is not None:
        look = _varied_look(look, character, expression, u, variation)
    if style == "cartoon" and look.outline is not None and u[12] < 0.25:
        look = dataclasses.replace(look, white_mouth=True)
    if style != "realistic" and neutral:
        # the expressionless and mouthless emoji conventions, only ever for faces that read as neutral
        flat, mouthless = u[10] < 0.15, u[11] < 0.08
        look = dataclasses.replace(look, flat_eyes=bool(flat), no_mouth=bool(mouthless and not flat))
    return look


# ------------------------------------------------------------------------------------------------------
# Look variation: stills drawn off their style's one layout (issue 14 item 3)
# ------------------------------------------------------------------------------------------------------
# Why: each style above is ONE layout (its eye kind, eye and mouth sizes, where the features sit), so an encoder
# trained on three styles reads expressions through those three layouts and fails on a fourth it never saw: held
# out of training, realistic faces (small almond eyes, a small low mouth) were read right 45 % of the time against
# 91 % when trained on (docs/results-expression.md). In short probes (throwaway scripts, so no numbers here),
# wider framing and random-convolution colour augmentation, feature-statistics mixing (MixStyle) and a style
# adversary on the expression vector did not move that; drawing the trained styles with other proportions and
# borrowed eyes did. A varied still keeps everything else of its style (skin, outline, shading, hair) and its
# expression and label. The ranges were set knowing all four styles (realistic almond eyes are ~0.45x as tall as
# the others'), so a held-out style is not quite unseen by its designer; the results page says so. Eyes 0.37x-1.3x
# as tall and 0.67x-1.3x as wide; mouths 0.5x-1.4x as wide; eyes, nose and mouth moved by up to an eighth of the
# face's width; the head 0.9x-1.3x as big around the same features; line widths 0.45x-1.35x.
LOOK_VARIATION_SALT = 0x100C
P_PLAIN_LOOK = 0.1       # a varied set keeps some stills in their style's own layout
P_BORROWED_EYES = 0.35   # eyes (kind, size, place) drawn as another style draws them


@dataclass(frozen=True)
class LookVariation:
    """How one still departs from its style's layout; every factor multiplies (shifts add to) the style's value."""

    eyes_from: str | None   # another style whose eyes replace this style's (before the factors), or None
    eye_width: float
    eye_height: float
    eye_spacing: float
    eye_shift: float        # down (+) or up, face units
    mouth_width: float
    mouth_shift: float
    nose_shift: float
    brow_gap: float
    brow_width: float
    line_width: float
    head_size: float        # head and hair around features of the same size: a larger head, as realistic draws

    @staticmethod
    def sample(style: str, rng: np.random.Generator) -> LookVariation | None:
        """A random variation of `style` (None: the style's own layout); a fixed number of draws."""
        u = rng.random(14)
        if u[0] < P_PLAIN_LOOK:
            return None
        others = [other for other in STYLES if other != style]
        eyes_from = others[int(u[2] * len(others))] if u[1] < P_BORROWED_EYES else None

        def log_uniform(value: float, low: float, high: float) -> float:
            return float(math.exp(low + (high - low) * value))

        return LookVariation(
            eyes_from=eyes_from,
            eye_width=log_uniform(u[3], -0.4, 0.25), eye_height=log_uniform(u[4], -1.0, 0.25),
            eye_spacing=float(0.85 + 0.27 * u[5]), eye_shift=float(-0.12 + 0.27 * u[6]),
            mouth_width=log_uniform(u[7], -0.7, 0.35), mouth_shift=float(-0.08 + 0.33 * u[8]),
            nose_shift=float(-0.05 + 0.2 * u[9]), brow_gap=log_uniform(u[10], -0.3, 0.3),
            brow_width=log_uniform(u[11], -0.5, 0.3), line_width=log_uniform(u[12], -0.8, 0.3),
            head_size=log_uniform(u[13], -0.1, 0.25),
        )


def _varied_look(look: _Look, character: Character, expression: Expression, u: np.ndarray,
                 variation: LookVariation) -> _Look:
    if variation.eyes_from is not None:
        donor = _base_look(character, variation.eyes_from, expression, u)
        look = dataclasses.replace(look, eye_kind=donor.eye_kind, eye_w=donor.eye_w, eye_h=donor.eye_h,
                                   eye_x=donor.eye_x, eye_y=donor.eye_y, brow_gap=donor.brow_gap)
    v = variation
    return dataclasses.replace(
        look, head_top=look.head_top * v.head_size, head_bottom=look.head_bottom * v.head_size,
        eye_w=look.eye_w * v.eye_width, eye_h=look.eye_h * v.eye_height, eye_x=look.eye_x * v.eye_spacing,
        eye_y=look.eye_y + v.eye_shift, mouth_w=look.mouth_w * v.mouth_width, mouth_y=look.mouth_y + v.mouth_shift,
        nose_y=look.nose_y + v.nose_shift, brow_gap=look.brow_gap * v.brow_gap,
        brow_width=look.brow_width * v.brow_width, line_width=look.line_width * v.line_width)


def _base_look(character: Character, style: str, expression: Expression, u: np.ndarray) -> _Look:
    """The style's layout for this character; u: ten uniform draws that make the random choices."""
    ch = character
    # light mostly from above (angles in (-pi, 0) point up), now and then from below
    light = float(-math.pi * u[1]) if u[0] < 0.85 else float(math.pi * u[1])
    size, spacing = ch.eye_size, ch.eye_spacing
    head_top, head_bottom = _look_top_bottom(ch, style)
    # Artists draw brows mostly when they carry the expression: always when tilted (anger, sadness, fear), mostly
    # when only raised (surprise: many emoji leave them out), and now and then on a calm face.
    if expression.brow_tilt < -0.15:
        brows_matter = True  # anger is carried by the brows: always drawn
    elif expression.brow_tilt > 0.15:
        # worried brows (sadness, fear): emoji often leave them out (frowning, pensive, fearful OpenMoji)
        brows_matter = not (ch.kind == "emoji" and style in ("cartoon", "stylized_3d") and u[2] < 0.3)
    elif abs(expression.brow_raise - 0.5) > 0.12:
        brows_matter = u[2] < 0.75
    else:
        brows_matter = False
    common = dict(style=style, head_top=head_top, head_bottom=head_bottom, light_angle=light)
    if style == "realistic":
        return _Look(
            **common, emoji=False, skin=ch.human_skin,
            outline=_scale_colour(ch.human_skin, 0.55) if u[3] < 0.6 else None,
            line_width=0.015 + 0.015 * float(u[4]), feature_colour=(45, 30, 25),
            jaw=ch.jaw_taper, chin=ch.chin_point * 0.6,
            eye_kind="almond", eye_x=0.37 * spacing, eye_y=-0.02, eye_w=0.21 * size, eye_h=0.1 * size,
            brow_gap=0.15, brow_width=0.07 * ch.brow_weight, draw_brows=True,
            nose_y=0.38, mouth_y=0.68, mouth_w=0.3 * ch.mouth_size,
            hair_colour=_saturate(ch.hair_colour, 0.6), shading="soft")
    if style == "cartoon":
        emoji = ch.kind == "emoji"
        eye_kind = ch.toon_eyes
        if eye_kind == "dots" and expression.eye_open > 0.8 and u[5] < 0.4:
            eye_kind = "whites"  # emoji convention: wide-open eyes get whites (astonished, fearful)
        dots = eye_kind == "dots"
        return _Look(
            **common, emoji=emoji, skin=ch.skin,
            outline=ch.outline_colour if u[3] < (0.55 if emoji else 0.9) else None,  # Twemoji / Noto: none
            line_width=0.04 + 0.03 * float(u[4]),
            feature_colour=((60, 40, 25), (30, 25, 25), (90, 55, 30))[int(u[6] * 3)] if emoji else ch.outline_colour,
            jaw=0.0 if emoji else ch.jaw_taper * 0.6, chin=0.0 if emoji else ch.chin_point * 0.4,
            eye_kind=eye_kind, eye_x=0.33 * spacing, eye_y=-0.17 if emoji else -0.1,
            eye_w=(0.085 if dots else 0.17) * size, eye_h=(0.15 if dots else 0.19) * size,
            brow_gap=0.17 if dots else 0.13, brow_width=0.075 * ch.brow_weight,
            draw_brows=brows_matter or u[7] < 0.4,
            nose_y=0.18, mouth_y=0.45, mouth_w=0.42 * ch.mouth_size,
            hair_colour=_saturate(ch.hair_colour, 1.15), shading="flat" if u[8] < 0.75 else "cel")
    if style == "anime":
        return _Look(
            **common, emoji=False, skin=ch.skin if ch.kind != "human" else _mix(ch.human_skin, (255, 235, 225), 0.45),
            outline=_scale_colour(ch.skin, 0.45) if u[3] < 0.85 else None,
            line_width=0.02 + 0.015 * float(u[4]), feature_colour=(40, 30, 35),
            jaw=max(ch.jaw_taper, 0.5), chin=max(ch.chin_point, 0.65),
            eye_kind="anime", eye_x=0.4 * spacing, eye_y=0.12, eye_w=0.2 * size, eye_h=0.26 * size,
            brow_gap=0.2, brow_width=0.045 * ch.brow_weight, draw_brows=brows_matter or u[7] < 0.75,
            nose_y=0.45, mouth_y=0.72, mouth_w=0.15 * ch.mouth_size,
            hair_colour=_saturate(ch.hair_colour, 1.5, 1.1), shading="cel" if u[8] < 0.5 else "flat")
    if style == "stylized_3d":
        emoji = ch.kind == "emoji"
        # Noto-like emoji have glossy dark oval eyes; Pixar-like characters big white eyes with an iris
        dots = emoji and u[9] < 0.7 and not (expression.eye_open > 0.8 and u[5] < 0.5)
        return _Look(
            **common, emoji=emoji, skin=ch.skin, outline=None, line_width=0.0, feature_colour=(60, 40, 30),
            jaw=ch.jaw_taper * 0.2, chin=0.0,
            eye_kind="dots" if dots else "glossy", eye_x=(0.34 if dots else 0.4) * spacing,
            eye_y=-0.12 if dots else -0.02, eye_w=(0.095 if dots else 0.2) * size,
            eye_h=(0.16 if dots else 0.22) * size,
            brow_gap=0.15 if dots else 0.12, brow_width=0.065 * ch.brow_weight,
            draw_brows=brows_matter or u[7] < 0.6,
            nose_y=0.3, mouth_y=0.5 if dots else 0.55, mouth_w=0.36 * ch.mouth_size,
            hair_colour=_saturate(ch.hair_colour, 1.1), shading="radial")
    raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")


def _head_outline(look: _Look, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x, y = np.cos(t), np.sin(t)
    lower = y > 0
    ly = np.where(lower, y, 0.0)
    x = x * (1 - look.jaw * 0.28 * ly ** 2 - look.chin * 0.4 * ly ** 4)
    y = np.where(lower, y * look.head_bottom, y * look.head_top)
    return np.stack([x, y], axis=1)


# ------------------------------------------------------------------------------------------------------
# Features
# ------------------------------------------------------------------------------------------------------

_EYE_X = _grid(-1, 1, 15)


def _eye_lids(ex: Expression, look: _Look, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Upper and lower lid curves of one eye (face coords) and how open it is (0 shut .. ~1.8 wide).

    side = -1 for the eye on the image's left. The lids are one model for all styles: eye_open lifts the upper
    lid, cheek_raise and eye_squeeze push the lower lid up into a crescent, brow_tilt slants the upper lid
    (a lowered inner end glares, a lowered outer end droops)."""
    openness = _clamp(ex.eye_open / 0.55, 0.0, 1.8)
    if look.eye_kind == "dots" and openness > 0.6:
        # emoji draw open eyes as ovals of one size (fearful, astonished and sad faces alike): only shutting shows
        openness = 0.9 + 0.15 * (openness - 1.0)
    roundness = 0.5 if look.eye_kind in ("dots", "whites", "glossy") else 0.75 - 0.25 * (look.eye_kind == "anime")
    base = (1 - _EYE_X ** 2) ** roundness
    inner = -side * _EYE_X  # 1 at the inner corner
    upper = -look.eye_h * openness * base
    upper = upper + max(-ex.brow_tilt, 0.0) * 0.5 * look.eye_h * min(openness, 1) * (inner + 1) / 2 * base
    upper = upper + max(ex.brow_tilt, 0.0) * 0.3 * look.eye_h * min(openness, 1) * (1 - inner) / 2 * base
    push = max(ex.cheek_raise - 0.35, 0.0) / 0.65 * 0.8 + 0.6 * ex.eye_squeeze
    lower = look.eye_h * min(openness, 1.0) * base * (1 - min(push, 1.0) * 0.9)
    if look.eye_kind in ("almond", "anime"):
        lower = lower * 0.7 + 0.3 * look.eye_h * base * (1 - min(push, 1.0))
    lower = np.maximum(lower, upper)
    cx = side * look.eye_x
    xs = cx + _EYE_X * look.eye_w
    return xs, look.eye_y + upper, look.eye_y + lower, openness


def _closed_eye_glyph(ex: Expression, look: _Look, side: int, rng_choice: float) -> np.ndarray:
    """Line of a shut eye: "^" when smiling, ">" "<" when squeezed, a lid arc otherwise."""
    cx, cy, w, h = side * look.eye_x, look.eye_y, look.eye_w * 1.05, max(look.eye_h, 0.12)
    x = _grid(-1, 1, 9)
    if ex.eye_squeeze > 0.45 or (ex.nose_wrinkle > 0.6 and ex.eye_open < 0.2):
        # chevron pointing to the nose: ">" on the left eye, "<" on the right one
        apex = -side
        return np.array([[cx - apex * w * 0.8, cy - h * 0.55], [cx + apex * w * 0.8, cy], [cx - apex * w * 0.8,
                                                                                           cy + h * 0.55]])
    if ex.mouth_curve > 0.25 or ex.cheek_raise > 0.6:
        return np.stack([cx + x * w, cy + 0.15 * h - 0.6 * h * (1 - x ** 2)], axis=1)  # "^" happy arc
    if abs(ex.mouth_curve) < 0.15 and rng_choice < 0.5:
        return np.stack([cx + x * w, cy + 0 * x], axis=1)  # "—" expressionless
    return np.stack([cx + x * w, cy + 0.45 * h * (1 - x ** 2) - 0.15 * h], axis=1)  # "◡" relaxed / sad lid


def _draw_eyes(pen: _Pen, ch: Character, ex: Expression, look: _Look, draws: np.ndarray) -> None:
    """Both eyes in the style's kind (almond, emoji dots, cartoon whites, anime, glossy), or shut-eye glyphs.

    draws: five uniform numbers for gaze (x, y), the shut-eye glyph, the winking side and the highlight."""
    gaze_x, gaze_y, glyph_choice, wink_draw, shine_draw = draws
    gaze = (0.3 * (gaze_x - 0.5), 0.2 * (gaze_y - 0.5))
    wink_side = (1 if wink_draw < 0.5 else -1) if ex.wink > 0 else 0
    line_colour = look.feature_colour
    iris = ch.iris_colour if look.style != "anime" else _saturate(ch.iris_colour, 1.6, 1.15)
    for side in (-1, 1):
        xs, upper, lower, openness = _eye_lids(ex, look, side)
        height = float((lower - upper).max())
        cx = side * look.eye_x
        # squeezed lids read as shut ("><") before they actually meet
        closed = height < 0.28 * look.eye_h or (ex.eye_squeeze > 0.45 and openness < 0.75)
        if closed or side == wink_side or look.flat_eyes:
            if look.flat_eyes:
                glyph = np.array([[cx - look.eye_w * 1.2, look.eye_y], [cx + look.eye_w * 1.2, look.eye_y]])
            elif side == wink_side and not closed:
                glyph = _closed_eye_glyph(dataclasses.replace(ex, eye_squeeze=0.0, mouth_curve=1.0), look, side, 0)
            else:
                glyph = _closed_eye_glyph(ex, look, side, glyph_choice)
            width = {"almond": 0.03, "dots": 0.06, "whites": 0.055, "anime": 0.05, "glossy": 0.05}[look.eye_kind]
            pen.line(glyph, line_colour, width)
            if look.eye_kind == "almond" or (ch.lashes and look.eye_kind == "anime"):
                end = glyph[0] if side < 0 else glyph[-1]
                pen.line(np.array([end, end + (side * 0.06, -0.02)]), line_colour, width * 0.8)
            continue
        outline_pts = np.concatenate([np.stack([xs, upper], 1), np.stack([xs[::-1], lower[::-1]], 1)])
        iris_cx = cx + gaze[0] * look.eye_w
        if look.eye_kind == "dots":
            # emoji eyes: a dark oval; glossy in 3D, sometimes with a small highlight in cartoons
            pen.polygon(outline_pts, line_colour)
            if look.style == "stylized_3d" or (ch.lashes and shine_draw < 0.3):
                top = float(upper.min())
                pen.ellipse(cx - 0.02, top + 0.045, 0.03, 0.035, (255, 255, 255, 220), n=12)
            continue
        sclera = (250, 250, 250) if look.eye_kind != "almond" else (240, 236, 232)
        pen.polygon(outline_pts, sclera)
        iris_r = {"almond": 0.085, "whites": 0.09, "anime": 0.16, "glossy": 0.14}[look.eye_kind] * ch.eye_size
        if look.eye_kind == "whites":
            iris_r *= 1.0 - 0.35 * max(openness - 1.0, 0)  # wide-open cartoon eyes: small pupils
        iris_cy = look.eye_y + gaze[1] * look.eye_h + (0.2 * look.eye_h if look.eye_kind == "anime" else 0)
        circle = _ellipse_points(iris_cx, iris_cy, iris_r * (0.85 if look.eye_kind == "anime" else 1),
                                 iris_r * (1.2 if look.eye_kind == "anime" else 1), n=20)
        # clip the iris to the lids: both shapes are vertically convex, so clamping y does it
        lid_up = np.interp(circle[:, 0], xs, upper)
        lid_lo = np.interp(circle[:, 0], xs, lower)
        inside = (circle[:, 0] > xs[0]) & (circle[:, 0] < xs[-1])
        clipped = np.stack([np.clip(circle[:, 0], xs[0], xs[-1]), np.clip(circle[:, 1], lid_up, lid_lo)], 1)
        if inside.any():
            iris_colour = (25, 20, 20) if look.eye_kind == "whites" else iris
            pen.polygon(clipped, iris_colour)
            if look.eye_kind == "anime":
                # darker upper half of the iris (the lid's shadow), the anime convention
                top = clipped.copy()
                top[:, 1] = np.minimum(top[:, 1], iris_cy - 0.1 * iris_r)
                pen.polygon(top, _scale_colour(iris, 0.55))
            if look.eye_kind != "whites":
                pupil_r = iris_r * 0.45
                pupil = _ellipse_points(iris_cx, iris_cy, pupil_r, pupil_r * (1.2 if look.eye_kind == "anime" else 1))
                pupil[:, 1] = np.clip(pupil[:, 1], np.interp(pupil[:, 0], xs, upper), np.interp(pupil[:, 0], xs, lower))
                pen.polygon(pupil, (15, 12, 12))
            if look.eye_kind in ("anime", "glossy", "whites") and height > 0.4 * look.eye_h:
                hx, hy = iris_cx - 0.35 * iris_r, max(iris_cy - 0.45 * iris_r, float(upper.min()) + 0.03)
                pen.ellipse(hx, hy, iris_r * 0.3, iris_r * 0.3, (255, 255, 255, 235), n=12)
                if look.eye_kind != "whites":
                    pen.ellipse(iris_cx + 0.4 * iris_r, iris_cy + 0.4 * iris_r, iris_r * 0.14, iris_r * 0.14,
                                (255, 255, 255, 200), n=12)
        if look.eye_kind == "almond":
            pen.line(np.stack([xs, upper], 1), line_colour, 0.025)  # lash line
            pen.line(np.stack([xs, upper - 0.06], 1)[3:-2], _scale_colour(look.skin, 0.8), 0.012)  # crease
        elif look.eye_kind == "anime":
            lash = np.stack([xs, upper], 1)
            wing = side * 0.06
            thick = np.concatenate([lash, (lash + (0, -0.045))[::-1]])
            thick[len(xs) - 1 if side > 0 else 0] += (wing, -0.02)
            pen.polygon(thick, line_colour)
            pen.line(np.stack([xs, lower], 1)[4:-4], line_colour, 0.015)
        elif look.eye_kind == "whites":
            pen.line(np.concatenate([outline_pts, outline_pts[:1]]), line_colour, 0.035)
        else:  # glossy: lid shadow line and lashes
            pen.line(np.stack([xs, upper], 1), _scale_colour(look.skin, 0.45), 0.03)
        if ch.lashes and look.eye_kind in ("almond", "glossy", "anime"):
            outer = len(xs) - 1 if side > 0 else 0
            start = np.array([xs[outer], upper[outer]])
            pen.line(np.array([start, start + (side * 0.07, -0.05)]), line_colour, 0.02)


def _draw_brows(pen: _Pen, ch: Character, ex: Expression, look: _Look) -> None:
    if not look.draw_brows:
        return
    # the hair colour, darkened: blond brows on pale skin would vanish at 64 px
    colour = look.feature_colour if look.style == "cartoon" else _mix(_scale_colour(look.hair_colour, 0.6),
                                                                        (40, 28, 22), 0.6)
    if look.emoji:
        colour = look.feature_colour
    length = look.eye_w * (1.5 if look.eye_kind != "dots" else 2.3)
    # how far the brows travel: enough that a 0.35-intensity expression still shows at 64 px
    raise_k = 0.36 if look.style in ("cartoon", "stylized_3d") else 0.3
    tilt_inner = {"realistic": 0.14, "cartoon": 0.17, "anime": 0.15, "stylized_3d": 0.16}[look.style]
    for side in (-1, 1):
        cx = side * look.eye_x
        cy = look.eye_y - look.eye_h - look.brow_gap - (ex.brow_raise - 0.5) * raise_k
        inner = np.array([cx - side * 0.5 * length, cy - ex.brow_tilt * tilt_inner])
        outer = np.array([cx + side * 0.5 * length, cy + ex.brow_tilt * tilt_inner * 0.4])
        t = _grid(0, 1, 6)[:, None]
        pts = inner + (outer - inner) * t
        arch = 0.04 + 0.03 * (ex.brow_raise > 0.7)
        pts[:, 1] -= arch * np.sin(np.pi * t[:, 0])
        if look.style in ("realistic", "anime"):
            # tapered brow: thick at the inner end
            w = look.brow_width * (1.1 - 0.6 * t[:, 0])
            pen.polygon(np.concatenate([pts + np.stack([0 * w, -w / 2], 1), (pts + np.stack([0 * w, w / 2], 1))[::-1]]),
                        colour)
        else:
            pen.line(pts, colour, look.brow_width)


def _mouth_curves(ex: Expression, look: _Look, n: int = 17):
    """Upper and lower edge of the mouth opening (face coords). Both equal for a closed mouth."""
    width = look.mouth_w * (0.35 + 1.2 * ex.mouth_width)  # narrow "o" .. stretched
    gap = _clamp((ex.mouth_open - MOUTH_SHUT_BELOW) / 0.7, 0.0, 1.0)  # below MOUTH_SHUT_BELOW the lips touch
    u = _grid(-1, 1, n)
    curve_k = {"realistic": 0.19, "cartoon": 0.25, "anime": 0.18, "stylized_3d": 0.21}[look.style]
    curve_k *= 0.8 + 0.6 * ex.mouth_width
    base = -ex.mouth_curve * curve_k * u ** 2 + ex.mouth_curve * curve_k * 0.35
    base = base + ex.mouth_asym * 0.13 * u - abs(ex.mouth_asym) * 0.04
    base = base + ex.mouth_wave * 0.06 * np.sin(u * np.pi * 2.5) * (1 - u ** 2) ** 0.3
    p = 0.5 + 0.35 * ex.mouth_width
    bulge = (1 - u ** 2) ** p
    # narrow mouths open into tall "O"s, wide ones into letterboxes
    tall = (0.24 + 0.35 * (1 - ex.mouth_width)) * {"realistic": 0.85, "anime": 0.7}.get(look.style, 1.0)
    opened = min(1.0, gap * 5)
    upper = base - gap * tall * 0.3 * bulge - opened * max(ex.mouth_curve, 0) * curve_k * 0.9 * bulge
    lower = base + gap * tall * bulge + opened * max(-ex.mouth_curve, 0) * curve_k * 0.9 * bulge
    # a sneer lifts the upper lip on the raised side
    upper = upper - abs(ex.mouth_asym) * gap * 0.05 * np.clip(np.sign(ex.mouth_asym) * u, 0, 1)
    x = u * width
    return x, look.mouth_y + upper, look.mouth_y + lower, gap


def _draw_mouth(pen: _Pen, ch: Character, ex: Expression, look: _Look, draw: float) -> None:
    """Lips (realistic) or a line, and when open: the dark opening, teeth, tongue. draw: picks the cartoon tone."""
    x, upper, lower, gap = _mouth_curves(ex, look)
    dark = (90, 30, 30) if look.style != "cartoon" else ((100, 40, 30), (70, 30, 30), (60, 40, 30))[int(draw * 3)]
    line_colour = look.feature_colour if look.style in ("cartoon", "anime") else _mix(ch.lip_colour, (60, 20, 20), 0.45)
    line_w = {"realistic": 0.03, "cartoon": 0.06, "anime": 0.03, "stylized_3d": 0.055}[look.style]
    if look.style == "realistic":
        # lips around the opening
        lip_t = 0.05 * ch.mouth_size
        lip_upper = np.concatenate([np.stack([x, upper], 1),
                                    np.stack([x, upper - lip_t * (1 - (x / x[-1]) ** 2) ** 0.5 - 0.01], 1)[::-1]])
        lip_lower = np.concatenate([np.stack([x, lower], 1),
                                    np.stack([x, lower + lip_t * 1.3 * (1 - (x / x[-1]) ** 2) ** 0.5 + 0.01], 1)[::-1]])
        pen.polygon(lip_upper, _mix(ch.lip_colour, look.skin, 0.35))
        pen.polygon(lip_lower, _mix(ch.lip_colour, look.skin, 0.2))
    if gap > 0.02 and look.white_mouth:
        opening = np.concatenate([np.stack([x, upper], 1), np.stack([x[::-1], lower[::-1]], 1)])
        pen.polygon(opening, (250, 250, 250), line_colour, line_w * 0.8)
    elif gap > 0.02:
        opening = np.concatenate([np.stack([x, upper], 1), np.stack([x[::-1], lower[::-1]], 1)])
        pen.polygon(opening, dark)
        if ex.teeth > 0:
            teeth_h = 0.07 + 0.08 * ex.teeth
            both_rows = ex.teeth > 0.8 or (ex.mouth_curve < -0.2 and ex.mouth_width > 0.7)
            if both_rows:  # a grimace / bared teeth: the whole opening is teeth with a line between rows
                pen.polygon(opening, (250, 250, 245))
                mid = (upper + lower) / 2
                pen.line(np.stack([x, mid], 1)[1:-1], (150, 140, 140), 0.015)
            else:
                band_low = np.minimum(lower, upper + teeth_h)
                pen.polygon(np.concatenate([np.stack([x, upper], 1), np.stack([x[::-1], band_low[::-1]], 1)]),
                            (250, 250, 245))
        if gap > 0.3 and ex.mouth_curve > -0.3 and not (ex.teeth > 0.8):
            # tongue in the bottom of the opening
            tongue_top = np.maximum(upper, lower - 0.35 * (lower - upper).max())
            inner = slice(3, len(x) - 3)
            pen.polygon(np.concatenate([np.stack([x[inner], tongue_top[inner]], 1),
                                        np.stack([x[inner][::-1], lower[inner][::-1]], 1)]), (225, 100, 110))
        if look.style in ("cartoon", "anime", "stylized_3d"):
            pen.line(np.concatenate([opening, opening[:1]]), line_colour if look.style != "stylized_3d"
                     else _scale_colour(look.skin, 0.5), line_w * (0.7 if look.style != "cartoon" else 0.8))
    else:
        pen.line(np.stack([x, upper], 1), line_colour, line_w)


def _draw_nose(pen: _Pen, ch: Character, look: _Look) -> None:
    """Realistic: a shadowed bridge and nostrils; anime: a tick; cartoon: the character's nose type (none on
    emoji); 3D: a soft blob. Noses rise out of the face plane, so they move most with yaw (depth 1.3)."""
    shadow = _scale_colour(look.skin, 0.72)
    s = ch.nose_size
    y = look.nose_y
    if look.style == "realistic":
        pen.line(np.array([[0.06, y - 0.28], [0.1, y - 0.05], [0.13, y]]) * (s, 1), shadow, 0.02)
        pen.line(np.array([[-0.14, y - 0.02], [-0.08, y + 0.05], [0.0, y + 0.06], [0.08, y + 0.05], [0.14, y - 0.02]])
                 * (s, 1), shadow, 0.025)
        pen.ellipse(-0.07 * s, y + 0.02, 0.035, 0.018, _scale_colour(look.skin, 0.5))
        pen.ellipse(0.07 * s, y + 0.02, 0.035, 0.018, _scale_colour(look.skin, 0.5))
    elif look.style == "anime":
        if ch.nose == "none":
            return
        pen.line(np.array([[0.0, y - 0.04], [0.025, y]]), _scale_colour(look.skin, 0.6), 0.018, depth=1.3)
    elif look.style == "cartoon":
        if ch.nose == "none" or look.emoji:
            return
        outline = look.outline or look.feature_colour
        if ch.nose == "round":
            pen.ellipse(0, y, 0.1 * s, 0.08 * s, _scale_colour(look.skin, 0.85), outline, 0.035, depth=1.3)
        elif ch.nose in ("button", "pointy"):
            pen.line(np.array([[-0.04, y - 0.06], [0.05, y + 0.02], [-0.03, y + 0.05]]) * s, outline, 0.035, 1.3)
        else:
            pen.line(np.array([[0.0, y - 0.08], [0.0, y + 0.03]]) * s, outline, 0.03, 1.3)
    else:  # stylized_3d: a soft rounded blob
        if ch.nose == "none" and look.emoji:
            return
        pen.ellipse(0, y, 0.1 * s, 0.075 * s, _scale_colour(look.skin, 0.88), depth=1.3)
        pen.ellipse(-0.02, y - 0.025, 0.04 * s, 0.025 * s, _rgba((255, 255, 255), 0.35), depth=1.3)


def _draw_wrinkles(pen: _Pen, ex: Expression, look: _Look) -> None:
    """Disgust wrinkles the bridge of the nose: short lines between the eyes (drawn even on noseless faces)."""
    if ex.nose_wrinkle <= 0.15:
        return
    colour = _rgba(_scale_colour(look.skin, 0.5) if look.style != "cartoon" else look.feature_colour,
                   min(1.0, 0.2 + ex.nose_wrinkle))
    top = look.eye_y + (0.0 if look.style != "cartoon" else 0.05)
    for dy in (0.0, 0.06):
        pen.line(np.array([[-0.08, top + dy], [0.0, top + dy + 0.025], [0.08, top + dy]]), colour,
                 0.02 if look.style != "cartoon" else 0.03)


def _draw_ears(pen: _Pen, ch: Character, look: _Look) -> None:
    """Human / elf ears at the sides, cat / bear ears on top (realistic draws every ear type as human)."""
    if ch.ears == "none" or (look.emoji and ch.ears != "cat"):
        return
    skin = look.skin
    outline, w = look.outline, look.line_width
    ear_y = look.eye_y + 0.15
    for side in (-1, 1):
        if ch.ears in ("human", "pointy") or look.style == "realistic":
            if ch.ears == "pointy" and look.style != "realistic":
                pts = np.array([[side * 0.92, ear_y - 0.12], [side * 1.35, ear_y - 0.35], [side * 0.95, ear_y + 0.15]])
            else:
                pts = _ellipse_points(side * 0.98, ear_y, 0.13, 0.2, n=12)
            pen.polygon(pts, skin, outline, w, depth=0)
            pen.ellipse(side * 1.0, ear_y, 0.05, 0.1, _scale_colour(skin, 0.8), depth=0, n=12)
        elif ch.ears == "cat":
            pts = np.array([[side * 0.35, -look.head_top * 0.85], [side * 0.8, -look.head_top * 1.35],
                            [side * 0.9, -look.head_top * 0.5]])
            pen.polygon(pts, skin, outline, w, depth=0)
            pen.polygon(pts * 0.85 + (side * 0.1, -0.02), _mix(skin, (250, 170, 190), 0.5), depth=0)
        else:  # bear
            pen.ellipse(side * 0.75, -look.head_top * 0.8, 0.28, 0.28, skin, outline, w, depth=0)
            pen.ellipse(side * 0.75, -look.head_top * 0.8, 0.15, 0.15, _scale_colour(skin, 0.8), depth=0)


def _hair_shapes(ch: Character, look: _Look) -> tuple[np.ndarray | None, np.ndarray | None, list[np.ndarray]]:
    """Hair behind the head, the hair cap over the forehead, and side locks in front (face coords)."""
    if ch.hair_style == "none" or look.emoji:
        return None, None, []
    strands = np.random.default_rng(ch.hair_seed)  # the same fringe every time this character is drawn
    top, bottom, style = look.head_top, look.head_bottom, ch.hair_style
    back = None
    if style in ("long", "bob", "curly", "twintails") or (style == "spiky" and look.style == "anime"):
        length = {"long": 1.5, "bob": 0.6, "curly": 0.6, "twintails": 0.3, "spiky": 0.5}[style]
        w = 1.16 if style != "curly" else 1.35
        t = _grid(np.pi, 2 * np.pi, 16)
        arc = np.stack([np.cos(t) * w, np.sin(t) * top * 1.12], 1)
        back = np.concatenate([[[-w * 0.95, length * bottom]], arc, [[w * 0.95, length * bottom]]])
        if style == "curly":
            back = _ellipse_points(0, -0.15, 1.35, top * 1.2, n=32)
            back = back * (1 + 0.06 * np.sin(np.linspace(0, 2 * np.pi * 9, 32, endpoint=False)))[:, None]
    # the cap: outer contour over the head, back along the hairline / fringe
    spiky = style == "spiky"
    volume = float(strands.uniform(1.05, 1.14))
    t = _grid(np.pi + 0.12, 2 * np.pi - 0.12, 21)
    r_out = volume + (strands.uniform(0.12, 0.3, 21) * (np.arange(21) % 2) if spiky else 0.0)
    outer = np.stack([np.cos(t) * r_out, np.sin(t) * top * r_out], 1)
    side_y = look.eye_y - (0.05 if look.style in ("anime", "cartoon") else 0.15)
    fringe_y = {"realistic": -0.5, "cartoon": -0.42, "anime": -0.3, "stylized_3d": -0.45}[look.style] * top
    xs = _grid(0.86, -0.86, 13)
    notches = np.where(np.arange(13) % 2 == 1, -1.0, 0.0)
    fringe = "spiky" if look.style == "anime" and ch.fringe != "none" else ch.fringe
    if fringe == "straight":
        edge = fringe_y + 0.04 * (1 - xs ** 2) + 0.04 * notches
    elif fringe == "swept":
        side = 1 if ch.hair_seed % 2 else -1
        edge = fringe_y - 0.28 + 0.36 * ((xs * side + 1) / 2) ** 1.3 + 0.05 * notches
    elif fringe == "parted":
        part = float(strands.uniform(-0.3, 0.3))
        edge = fringe_y + 0.05 - 0.45 * np.clip(1 - np.abs(xs - part), 0, 1) ** 2
    elif fringe == "spiky":
        edge = fringe_y + 0.1 + notches * strands.uniform(0.12, 0.3, 13)
    else:  # hair combed back: a high hairline
        edge = fringe_y - 0.3 - 0.12 * (1 - xs ** 2)
    cap = np.concatenate([[[-1.05, side_y]], outer, [[1.05, side_y], [0.95, side_y]], np.stack([xs, edge], 1),
                          [[-0.95, side_y]]])
    locks = []
    if look.style in ("anime", "cartoon") and style in ("long", "bob", "twintails", "spiky"):
        end = (0.95 if style == "long" else 0.55) * bottom
        for side in (-1, 1):  # side locks framing the face
            locks.append(np.array([[side * 1.06, side_y - 0.2], [side * 0.84, side_y - 0.2], [side * 0.8, end * 0.7],
                                   [side * 0.9, end], [side * 1.08, end * 0.8]]))
    return back, cap, locks


def _draw_hat(pen: _Pen, ch: Character, look: _Look) -> None:
    """Cap, beanie, bow or headband, over the hair."""
    if ch.hat == "none":
        return
    top, colour, outline, w = look.head_top, ch.hat_colour, look.outline, look.line_width
    t = _grid(np.pi, 2 * np.pi, 17)
    if ch.hat in ("cap", "beanie"):
        dome = np.stack([np.cos(t) * 1.06, np.sin(t) * top * 1.1 - 0.35 * top], 1)
        pen.polygon(dome, colour, outline, w, depth=0)
        if ch.hat == "cap":
            pen.polygon(np.array([[-0.2, -0.42 * top], [1.45, -0.35 * top], [1.3, -0.25 * top], [-0.2, -0.3 * top]]),
                        _scale_colour(colour, 0.8), outline, w, depth=0.5)
        else:
            pen.polygon(np.array([[-1.08, -0.5 * top], [1.08, -0.5 * top], [1.08, -0.3 * top], [-1.08, -0.3 * top]]),
                        _scale_colour(colour, 0.85), outline, w, depth=0)
    elif ch.hat == "bow":
        cx, cy = 0.55, -0.85 * top
        pen.polygon(np.array([[cx, cy], [cx - 0.35, cy - 0.2], [cx - 0.35, cy + 0.2]]), colour, outline, w, 0)
        pen.polygon(np.array([[cx, cy], [cx + 0.35, cy - 0.2], [cx + 0.35, cy + 0.2]]), colour, outline, w, 0)
        pen.ellipse(cx, cy, 0.08, 0.08, _scale_colour(colour, 0.8), depth=0)
    else:  # headband
        band = np.stack([np.cos(t) * 1.02, np.sin(t) * top * 1.0 + 0.05], 1)
        pen.line(band[2:-2], colour, 0.09, depth=0)


def _draw_cues(pen: _Pen, ex: Expression, look: _Look, rng: np.random.Generator) -> None:
    """Artist conventions: tears, sweat drops, blush, the anger mark."""
    tear_fill, tear_line = (110, 190, 250), (40, 120, 210)
    outline_w = 0.025 if look.outline is not None or look.style == "anime" else 0.0
    if ex.blush > 0:
        pink = (250, 110, 130)
        for side in (-1, 1):
            cx, cy = side * (look.eye_x + 0.12), look.eye_y + look.eye_h + 0.17
            alpha = 0.35 + 0.4 * ex.blush if look.style != "realistic" else 0.2 + 0.25 * ex.blush
            pen.ellipse(cx, cy, 0.2, 0.1, _rgba(pink, alpha))
            if look.style == "anime":
                for k in (-1, 0, 1):
                    pen.line(np.array([[cx + k * 0.07 + 0.03, cy - 0.05], [cx + k * 0.07 - 0.03, cy + 0.05]]),
                             _rgba((220, 60, 90), 0.8), 0.015)
    if ex.tears > 0:
        streams = ex.tears > 0.85 and look.style != "realistic"
        sides = (-1, 1) if ex.tears > 0.7 else ((-1,) if rng.random() < 0.5 else (1,))
        for side in sides:
            x0 = side * (look.eye_x + look.eye_w * 0.35)
            y0 = look.eye_y + look.eye_h * 0.6
            if streams:
                pts = np.array([[x0 - 0.07, y0], [x0 + 0.07, y0], [x0 + 0.1, look.head_bottom * 0.9],
                                [x0 - 0.1, look.head_bottom * 0.9]])
                pen.polygon(pts, _rgba(tear_fill, 0.9), tear_line if outline_w else None, outline_w)
            else:
                r = 0.06 + 0.05 * ex.tears
                pen.polygon(_drop_points(x0 + side * 0.03, y0 + 0.22, r), _rgba(tear_fill, 0.95),
                            tear_line if outline_w else None, outline_w)
    if ex.sweat > 0:
        side = 1 if rng.random() < 0.7 else -1
        r = 0.09 + 0.08 * ex.sweat
        if look.style == "anime":  # the big anime sweat drop beside the head
            pen.polygon(_drop_points(side * 0.92, -0.45, r * 1.4), _rgba((170, 215, 250), 0.95), tear_line, 0.025, 0)
        else:
            pen.polygon(_drop_points(side * 0.62, -0.55 * look.head_top, r), _rgba(tear_fill, 0.95),
                        tear_line if outline_w else None, outline_w, 0.5)
    if ex.anger_mark > 0 and look.style != "realistic":
        # the "💢" vein mark: four bent strokes around a centre
        cx, cy, r = 0.55, -0.62 * look.head_top, 0.1 + 0.05 * ex.anger_mark
        red = (220, 40, 40)
        for k in range(4):
            a = k * np.pi / 2 + np.pi / 4
            c, s = math.cos(a), math.sin(a)
            stroke = np.array([[0.35, 1.0], [0.35, 0.35], [1.0, 0.35]]) * r
            stroke = stroke @ np.array([[c, s], [-s, c]]) + (cx, cy)
            pen.line(stroke, red, 0.045, depth=0.5)


def _heart_points(cx: float, cy: float, size: float) -> np.ndarray:
    t = _grid(0, 2 * np.pi, 24)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([cx + x / 17 * size, cy + (y + 2) / 17 * size], axis=1)


def _star_points(cx: float, cy: float, size: float) -> np.ndarray:
    a = _grid(-np.pi / 2, 1.5 * np.pi, 11)[:10]
    r = np.where(np.arange(10) % 2 == 0, size, size * 0.45)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def _draw_glyph_eyes(pen: _Pen, ex: Expression, look: _Look, draw: float) -> bool:
    """Heart or star eyes (delight). Returns True when drawn instead of ordinary eyes."""
    if ex.heart_eyes <= 0 or look.style == "realistic":
        return False
    star = draw < 0.3
    size = max(look.eye_w, look.eye_h) * (1.5 if look.eye_kind == "dots" else 1.1) + 0.04
    fill = (250, 200, 40) if star else (235, 45, 70)
    line = _scale_colour(fill, 0.6) if look.outline is not None else None
    for side in (-1, 1):
        cx = side * look.eye_x
        pts = _star_points(cx, look.eye_y, size) if star else _heart_points(cx, look.eye_y, size)
        pen.polygon(pts, fill, line, 0.03)
    return True


def _draw_props(pen: _Pen, ch: Character, ex: Expression, look: _Look, rng: np.random.Generator) -> None:
    """Emoji props over the face: hands on the cheeks, steam, a swearing bar, vomit, floating hearts."""
    outline = look.outline
    line_w = 0.03
    if look.style == "realistic":  # the cartoon props stay out of realistic drawings, except hands
        ex = dataclasses.replace(ex, vomit=0.0, symbols=0.0, steam=0.0, hearts=0.0)
    if ex.vomit > 0:  # a green gush from the mouth, spreading over the chin
        w, y = look.mouth_w * 0.8, look.mouth_y
        bottom = look.head_bottom
        pts = np.array([[-w, y - 0.08], [w, y - 0.08], [w * 1.2, y + 0.15], [w * 1.9, bottom * 0.95],
                        [w * 1.5, bottom * 1.12], [w * 0.5, bottom * 1.05], [-w * 0.3, bottom * 1.15],
                        [-w * 1.4, bottom * 1.1], [-w * 1.9, bottom * 0.95], [-w * 1.2, y + 0.15]])
        pen.polygon(pts, (125, 180, 50), (70, 115, 30), 0.03)
        for bx, by in ((-0.12, 0.25), (0.15, 0.4), (-0.05, 0.55)):
            pen.ellipse(bx, y + by, 0.05, 0.04, (90, 140, 35), depth=1.0, n=12)
    if ex.symbols > 0:
        w, h = look.mouth_w * 1.1, 0.17
        y = look.mouth_y
        pen.polygon(np.array([[-w, y - h], [w, y - h], [w, y + h], [-w, y + h]]), (20, 20, 20))
        for k, x in enumerate(np.linspace(-w * 0.7, w * 0.7, 4)):  # "#%!&" as white scribbles
            if k % 2 == 0:
                pen.line(np.array([[x - 0.05, y], [x + 0.05, y]]), (255, 255, 255), 0.025)
                pen.line(np.array([[x, y - 0.09], [x, y + 0.09]]), (255, 255, 255), 0.025)
            else:
                pen.line(np.array([[x - 0.04, y + 0.08], [x + 0.04, y - 0.08]]), (255, 255, 255), 0.025)
    if ex.steam > 0:
        for side in (-1, 1):
            cx, cy = side * 0.62, look.head_bottom * 0.85
            for dx, dy, r in ((0.0, 0.0, 0.16), (side * 0.15, 0.08, 0.13), (side * 0.27, 0.0, 0.1)):
                pen.ellipse(cx + dx, cy + dy, r, r * 0.85, (235, 240, 245), (170, 180, 190), 0.025, depth=0.5)
    if ex.hands > 0:  # the scream: palms pressed to both cheeks, fingers up the sides of the face
        hand = _scale_colour(ch.skin if look.style != "realistic" else ch.human_skin, 0.9)
        outline = outline if outline is not None else _scale_colour(hand, 0.7)  # fingers must stay apart
        for side in (-1, 1):
            cx, cy = side * 0.9, 0.45
            pen.ellipse(cx, cy, 0.28, 0.4, hand, outline, line_w, angle=-side * 0.25, depth=0)
            for k in range(4):
                fx = cx - side * (0.02 + 0.08 * k)
                pen.ellipse(fx, cy - 0.42 + 0.04 * abs(k - 1.5), 0.07, 0.24, hand, outline, line_w,
                            angle=-side * 0.15, depth=0)
    if ex.hearts > 0:
        for hx, hy, size in ((0.95, -0.8, 0.2), (-1.05, 0.2, 0.16), (0.9, 0.75, 0.14))[: 1 + int(ex.hearts * 2.5)]:
            pen.polygon(_heart_points(hx, hy, size), (235, 45, 70), None, 0.0, depth=0)


def _draw_whiskers(pen: _Pen, ch: Character, look: _Look) -> None:
    """Cat whiskers (the emoji cat faces)."""
    if ch.whiskers and look.style != "realistic":
        colour = look.feature_colour if look.outline is None else look.outline
        for side in (-1, 1):
            for k, dy in enumerate((-0.06, 0.04, 0.14)):
                start = np.array([side * 0.55, look.mouth_y - 0.12 + dy * 0.5])
                end = np.array([side * 1.12, look.mouth_y - 0.2 + dy * 1.3])
                pen.line(np.stack([start, end]), colour, 0.02)


def _draw_horns(pen: _Pen, ch: Character, look: _Look) -> None:
    """Little devil horns (the imp faces), drawn behind the head so they grow out of it."""
    if not ch.horns:
        return
    colour = _scale_colour(look.skin, 0.7) if look.style != "realistic" else (120, 40, 40)
    for side in (-1, 1):
        pts = np.array([[side * 0.3, -look.head_top * 0.88], [side * 0.68, -look.head_top * 0.7],
                        [side * 0.72, -look.head_top * 1.25]])
        pen.polygon(pts, colour, look.outline, look.line_width, depth=0)


# The palettes artists use for a red (rage), green (nausea) and blue (fear, "the blood drains") face.
_TINTS = {
    "red_tint": ((225, 45, 40), (215, 60, 55), (240, 95, 40)),
    "green_tint": ((125, 185, 70), (105, 165, 60), (170, 210, 110)),
    "pale_tint": ((165, 210, 245), (90, 130, 235), (130, 175, 240)),
}


def _draw_face_tints(pen: _Pen, head: np.ndarray, ex: Expression, look: _Look, rng: np.random.Generator) -> None:
    """Red (anger), green (disgust) and blue (fear) faces: the whole face, or fading in from the top or bottom.

    Fear is always a band fading down from the forehead (Twemoji / Noto fearful faces); realistic faces only
    flush or pale a little."""
    subtle = look.style == "realistic"
    for cue, palette in _TINTS.items():
        amount = getattr(ex, cue)
        if amount <= 0:
            continue
        colour = palette[int(rng.integers(len(palette)))]
        pale = cue == "pale_tint"
        strength = (0.6 + 0.4 * amount) * (0.5 if subtle else 1.0)
        if pale or rng.random() < 0.4:
            from_top = pale or rng.random() < 0.5
            # the band reaches `reach` into the face: solid at the edge, fading out over its inner half
            reach = float(rng.uniform(0.8, 1.3)) if pale else 1.8
            soft = reach * (float(rng.uniform(0.08, 0.5)) if pale else 1.0)  # Twemoji: a hard-edged band
            if from_top:
                ramp = pen.gradient("linear", 0.0, -look.head_top + reach, soft, angle=math.pi)
            else:
                ramp = pen.gradient("linear", 0.0, look.head_bottom - reach, soft, angle=0.0)
            pen.image.paste(colour, (0, 0), ImageChops.multiply(pen.mask(head, value=strength), ramp))
        else:
            pen.polygon(head, _rgba(colour, strength * 0.95), depth=0)


def _draw_shading(pen: _Pen, head: np.ndarray, look: _Look) -> None:
    """Light on the face: soft (realistic), cel (a hard crescent of shadow) or radial with a specular (3D)."""
    lx, ly = math.cos(look.light_angle), math.sin(look.light_angle)
    if look.shading == "flat":
        return
    if look.shading == "radial":
        ramp = pen.gradient("radial", 0.35 * lx, 0.35 * ly, 1.9)
        shade = _saturate(look.skin, 1.25, 0.75, hue_shift=-0.025)  # warm, not grey: Noto / Pixar shading
        pen.image.paste(shade, (0, 0), ImageChops.multiply(pen.mask(head, value=0.6), ramp))
        pen.ellipse(0.5 * lx, 0.55 * ly, 0.3, 0.17, _rgba((255, 255, 255), 0.3), angle=look.light_angle, depth=0)
        pen.ellipse(0.52 * lx, 0.57 * ly, 0.13, 0.07, _rgba((255, 255, 255), 0.45), angle=look.light_angle, depth=0)
    elif look.shading == "soft":
        ramp = pen.gradient("radial", 0.35 * lx, 0.35 * ly, 1.8)
        pen.image.paste(_scale_colour(look.skin, 0.7), (0, 0), ImageChops.multiply(pen.mask(head, value=0.3), ramp))
    else:  # cel: the head shifted towards the light leaves a crescent of shadow on the far side
        crescent = ImageChops.subtract(pen.mask(head), pen.mask(head + (0.22 * lx, 0.22 * ly)))
        pen.image.paste(_scale_colour(look.skin, 0.85), (0, 0), crescent)


def _draw_body(pen: _Pen, ch: Character, look: _Look) -> None:
    """Neck and shoulders below the head (cut off by the image border)."""
    neck_w = 0.35
    neck_top = look.head_bottom * 0.6
    pen.polygon(np.array([[-neck_w, neck_top], [neck_w, neck_top], [neck_w, look.head_bottom + 0.5],
                          [-neck_w, look.head_bottom + 0.5]]), _scale_colour(look.skin, 0.85), depth=0)
    y0 = look.head_bottom + 0.35
    shoulders = np.array([[-0.5, y0], [0.5, y0], [1.5, y0 + 0.35], [1.7, y0 + 2.0], [-1.7, y0 + 2.0],
                          [-1.5, y0 + 0.35]])
    pen.polygon(shoulders, ch.clothes_colour, look.outline, look.line_width, depth=0)


def _visual(value: float, gamma: float = 0.7) -> float:
    """Artists draw even a slight expression clearly: small offsets are exaggerated (sign kept, |v| ** gamma)."""
    return math.copysign(abs(value) ** gamma, value)


def _as_drawn(ex: Expression) -> Expression:
    """The expression the painter draws: the signed shape parameters passed through _visual."""
    return dataclasses.replace(
        ex,
        mouth_curve=_visual(ex.mouth_curve),
        brow_tilt=_visual(ex.brow_tilt),
        brow_raise=0.5 + _visual(2 * (ex.brow_raise - 0.5)) / 2,
        mouth_asym=_visual(ex.mouth_asym),
    )


def _paint_face(image: Image.Image, pose: _Pose, character: Character, expression: Expression, style: str,
                rng: np.random.Generator, body: bool, variation: LookVariation | None = None) -> np.ndarray:
    """Draw one face; returns the head outline in pixels (N × 2) for the face box."""
    in_style = expression_in_style(expression, style)
    ex = _as_drawn(in_style)
    # The look, eyes and mouth take a fixed number of draws from their own generator, and the cues (whose draws
    # depend on the expression) from another: the same rng state keeps a character's look while its
    # expression changes (clips redraw a face every frame), and `rng` itself always advances the same.
    face_rng, cue_rng = (np.random.default_rng(int(k)) for k in rng.integers(1 << 62, size=2))
    look = _look_for(character, style, ex, emotion_of(in_style)[0] == "neutral", face_rng, variation)
    eye_draws, mouth_draw = face_rng.random(6), float(face_rng.random())
    pen = _Pen(image, pose)
    ch = character
    outline, line_w = look.outline, look.line_width
    if body:
        _draw_body(pen, ch, look)
    hair_back, hair_cap, hair_locks = _hair_shapes(ch, look)
    hair = look.hair_colour
    if hair_back is not None:
        pen.polygon(hair_back, _scale_colour(hair, 0.8), outline, line_w, depth=0)
    if ch.hair_style == "bun" and hair_cap is not None:
        pen.ellipse(0, -look.head_top * 1.15, 0.4, 0.32, hair, outline, line_w, depth=0)
    if ch.hair_style == "ponytail" and hair_cap is not None:
        side = 1 if ch.hair_seed % 2 else -1
        pen.ellipse(side * 0.95, -look.head_top * 0.55, 0.3, 0.55, _scale_colour(hair, 0.85), outline, line_w,
                    angle=side * 0.9, depth=0)
    if ch.hair_style == "twintails" and hair_cap is not None:
        for side in (-1, 1):
            pen.ellipse(side * 1.25, 0.15, 0.25, 0.65, _scale_colour(hair, 0.9), outline, line_w, angle=side * 0.25,
                        depth=0)
    _draw_ears(pen, ch, look)
    _draw_horns(pen, ch, look)
    head = _head_outline(look)
    pen.polygon(head, look.skin, outline, line_w, depth=0)
    _draw_shading(pen, head, look)
    _draw_face_tints(pen, head, ex, look, cue_rng)
    if ch.freckles and look.style != "stylized_3d":
        for fx, fy in ((-0.5, 0.25), (-0.4, 0.3), (-0.55, 0.33), (0.5, 0.25), (0.4, 0.3), (0.55, 0.33)):
            pen.ellipse(fx, look.eye_y + fy, 0.018, 0.018, _scale_colour(look.skin, 0.7), n=12)
    if look.style == "stylized_3d" and ex.cheek_raise > 0.45:
        for side in (-1, 1):  # raised cheeks catch the light
            pen.ellipse(side * 0.5, look.eye_y + look.eye_h + 0.15, 0.2, 0.12,
                        _rgba((255, 255, 255), 0.2 * (ex.cheek_raise - 0.3)))
    if look.style == "realistic" and ex.cheek_raise > 0.5:
        for side in (-1, 1):  # smile lines from the nose to the mouth corners
            pen.line(np.array([[side * 0.2, look.nose_y + 0.02], [side * 0.32, look.mouth_y - 0.08],
                               [side * 0.33, look.mouth_y + 0.05]]),
                     _rgba(_scale_colour(look.skin, 0.65), ex.cheek_raise - 0.3), 0.02)
    _draw_nose(pen, ch, look)
    if ch.facial_hair != "none" and look.style in ("realistic", "cartoon", "stylized_3d") and not look.emoji:
        beard_colour = _scale_colour(hair, 0.9)
        if ch.facial_hair == "beard":
            t = _grid(0.45, np.pi - 0.45, 15)
            jaw = np.stack([np.cos(t) * 1.0, np.sin(t) * look.head_bottom * 1.02], 1)
            jaw[:, 0] *= 1 - look.jaw * 0.28 * np.clip(jaw[:, 1] / look.head_bottom, 0, 1) ** 2
            inner = np.stack([np.cos(t[::-1]) * 0.5, look.mouth_y + 0.02 + np.sin(t[::-1]) * 0.3], 1)
            pen.polygon(np.concatenate([jaw, inner]), _rgba(beard_colour, 0.9), depth=0.5)
        pen.polygon(np.array([[-0.3, look.mouth_y - 0.05], [0, look.mouth_y - 0.13], [0.3, look.mouth_y - 0.05],
                              [0.2, look.mouth_y - 0.02], [-0.2, look.mouth_y - 0.02]]), beard_colour)
    if not look.no_mouth:
        _draw_mouth(pen, ch, ex, look, mouth_draw)
    _draw_whiskers(pen, ch, look)
    _draw_wrinkles(pen, ex, look)
    if not _draw_glyph_eyes(pen, ex, look, eye_draws[5]):
        _draw_eyes(pen, ch, ex, look, eye_draws[:5])
    if hair_cap is not None:
        pen.polygon(hair_cap, hair, outline, line_w, depth=0)
        for lock in hair_locks:
            pen.polygon(lock, hair, outline, line_w, depth=0)
        if look.style in ("anime", "stylized_3d", "realistic"):  # a sheen on the hair
            t = _grid(np.pi + 0.6, 2 * np.pi - 0.9, 8)
            pen.line(np.stack([np.cos(t) * 0.85, np.sin(t) * look.head_top * 0.9], 1),
                     _rgba((255, 255, 255), 0.3), 0.06, depth=0)
    _draw_hat(pen, ch, look)
    _draw_brows(pen, ch, ex, look)  # after the hair: artists keep the brows visible through a fringe
    if ch.glasses != "none" and not (look.eye_kind == "dots"):
        for side in (-1, 1):
            cx = side * look.eye_x
            rx, ry = look.eye_w * 1.35, max(look.eye_h * 1.5, 0.17)
            if ch.glasses == "round":
                pts = _ellipse_points(cx, look.eye_y, rx, ry, n=20)
            else:
                pts = np.array([[cx - rx, look.eye_y - ry], [cx + rx, look.eye_y - ry], [cx + rx, look.eye_y + ry],
                                [cx - rx, look.eye_y + ry]])
            pen.line(np.concatenate([pts, pts[:1]]), ch.glasses_colour, 0.035)
        pen.line(np.array([[-look.eye_x + look.eye_w * 1.35, look.eye_y], [look.eye_x - look.eye_w * 1.35,
                                                                          look.eye_y]]), ch.glasses_colour, 0.03)
    if ch.earrings and ch.ears in ("human", "pointy") and not look.emoji:
        for side in (-1, 1):
            pen.ellipse(side * 1.0, look.eye_y + 0.4, 0.05, 0.05, (240, 200, 60), depth=0, n=12)
    _draw_cues(pen, ex, look, cue_rng)
    _draw_props(pen, ch, ex, look, cue_rng)
    return pen.px(head, 0.0)


# ======================================================================================================
# 4. Scenes: backgrounds, lighting, stills and frames
# ======================================================================================================

def _random_colour(rng: np.random.Generator, dark: bool = False) -> Colour:
    h, s = float(rng.random()), float(rng.uniform(0.0, 0.8))
    v = float(rng.uniform(0.05, 0.35)) if dark else float(rng.uniform(0.35, 1.0))
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return (int(r * 255), int(g * 255), int(b * 255))


def _background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A scene background: white (like emoji sheets), solid, gradient, noise, shapes or a dark scene."""
    kind = _pick(rng, ("white", "solid", "gradient", "noise", "shapes", "dark"), (0.25, 0.17, 0.2, 0.1, 0.17, 0.11))
    if kind == "white":
        return Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(235, 256, 3)))
    dark = kind == "dark"
    if kind == "solid":
        return Image.new("RGB", (width, height), _random_colour(rng))
    if kind in ("gradient", "dark"):
        corners = np.array([_random_colour(rng, dark) for _ in range(4)], dtype=np.uint8).reshape(2, 2, 3)
        image = Image.fromarray(corners, "RGB").resize((width, height), Image.Resampling.BILINEAR)
        if dark and rng.random() < 0.6:
            _scatter_shapes(image, rng, dark=True, count=int(rng.integers(2, 6)))
        return image
    if kind == "noise":
        cells = int(rng.integers(3, 12))
        grid = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
        base = np.array(_random_colour(rng), dtype=np.float32)
        grid = (grid * 0.5 + base * 0.5).astype(np.uint8)
        return Image.fromarray(grid, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    image = Image.new("RGB", (width, height), _random_colour(rng))
    _scatter_shapes(image, rng, dark=False, count=int(rng.integers(3, 9)))
    return image


def _scatter_shapes(image: Image.Image, rng: np.random.Generator, dark: bool, count: int) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    for _ in range(count):
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.1, 0.6) * w, y0 + rng.uniform(0.1, 0.6) * h
        colour = _random_colour(rng, dark)
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour)


def _grade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Global lighting and palette: brightness, contrast, colour cast, sometimes a little sensor noise."""
    if rng.random() < 0.35:
        return image
    gain = (rng.uniform(0.8, 1.12) * (1 + rng.normal(0, 0.04, 3))).astype(np.float32)
    contrast = np.float32(rng.uniform(0.85, 1.15))
    pixels = np.asarray(image, dtype=np.float32) * (contrast * gain) + (128 * (1 - contrast)) * gain
    if rng.random() < 0.2:
        pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(rng.uniform(2, 7))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


_SUPERSAMPLE = 2


def render_face(character: Character, expression: Expression, style: str, size: int = 64,
                rng: np.random.Generator | None = None, variation: LookVariation | None = None) -> Image.Image:
    """One RGB square still of `character` showing `expression` in `style` (drawn off its layout by `variation`).

    The face (head outline) fills 55–100 % of the crop at a random scale, on a random background, with random
    light, palette, roll (±15°), yaw and sometimes a partial crop at the border; all drawn from `rng` (a fixed
    default when None), so the same arguments and rng state give identical bytes."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    rng = rng if rng is not None else np.random.default_rng(0)
    canvas = size * _SUPERSAMPLE
    image = _background(canvas, canvas, rng)
    # head height as a fraction of the crop: emoji sheets fill ~90 %, so lean towards large faces
    fill = float(rng.uniform(0.8, 1.0)) if rng.random() < 0.45 else float(rng.uniform(0.55, 0.85))
    slack = canvas * (1 - fill) / 2
    cx, cy = canvas / 2 + rng.uniform(-slack, slack), canvas / 2 + rng.uniform(-slack, slack)
    if rng.random() < 0.08:  # occasionally the face is cut by the border
        cx += (1 if rng.random() < 0.5 else -1) * rng.uniform(0.06, 0.16) * canvas
    body = style != "cartoon" and character.kind != "emoji" and rng.random() < 0.5
    draw_face(image, character, expression, style, (cx, cy), fill * canvas, rng,
              roll_degrees=_clamp(rng.normal(0, 7), -15, 15), yaw=_clamp(rng.normal(0, 0.25), -0.5, 0.5), body=body,
              variation=variation)
    return _grade(image.reduce(_SUPERSAMPLE), rng)


# ------------------------------------------------------------------------------------------------------
# Stills
# ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StillPlan:
    """Everything `sample_still` decides from a seed before drawing (exposed for tests and for clip builders)."""

    seed: int
    character: Character
    style: str
    expression: Expression      # as drawn (action parameters already clipped to the style's bounds)
    labels: dict
    variation: LookVariation | None = None  # drawn off the style's layout (vary_look=True)


def plan_still(seed: int, style: str | None = None, emotion: str | None = None,
               character_id: str | None = None, vary_look: bool = False) -> StillPlan:
    """The character, style, expression and labels of still `seed` (None = drawn from the seed).

    vary_look: also draw a LookVariation, from its own stream, so the still has the same character, expression
    and scene as without; its label `eyes_from` names a style whose eyes it borrows ("" when none)."""
    rng = np.random.default_rng([seed, 0x5EED])
    if character_id is None:
        character_id = DEFAULT_CHARACTER_IDS[int(rng.integers(len(DEFAULT_CHARACTER_IDS)))]
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    emotion = emotion or EMOTIONS[int(rng.integers(len(EMOTIONS)))]
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    # non-neutral intensities spread over [0.35, 1], leaning a little towards the strong end (artwork exaggerates)
    intensity = 0.35 + 0.65 * float(rng.random()) ** 0.8 if emotion != "neutral" else 0.0
    expression = expression_in_style(expression_for(emotion, intensity, rng), style)
    label, label_intensity = emotion_of(expression)
    params = action_params(expression, style)
    labels = dict(emotion=label, intensity=round(label_intensity, 4), style=style, character=character_id,
                  **{name: round(float(v), 4) for name, v in zip(ACTION_PARAMS, params)}, source="synthetic")
    variation = None
    if vary_look:
        variation = LookVariation.sample(style, np.random.default_rng([seed, LOOK_VARIATION_SALT]))
        labels["eyes_from"] = (variation.eyes_from or "") if variation else ""
    return StillPlan(seed, character_for_id(character_id), style, expression, labels, variation)


def sample_still(seed: int, size: int = 64, style: str | None = None, emotion: str | None = None,
                 character_id: str | None = None, vary_look: bool = False) -> tuple[Image.Image, dict]:
    """One labelled still, fully determined by `seed` (and the optional fixed style / emotion / character).

    Emotions are uniform over EMOTIONS (neutral included); non-neutral intensities spread over [0.35, 1] (a
    little denser towards 1). The label is `emotion_of` of the drawn expression, so it always agrees with the
    parameters. The character is one of DEFAULT_CHARACTER_IDS unless given."""
    plan = plan_still(seed, style, emotion, character_id, vary_look)
    image = render_face(plan.character, plan.expression, plan.style, size, np.random.default_rng([seed, 0xD4A3]),
                        plan.variation)
    return image, dict(plan.labels)


# ------------------------------------------------------------------------------------------------------
# Frames
# ------------------------------------------------------------------------------------------------------

def draw_face(image: Image.Image, character: Character, expression: Expression, style: str,
              centre: tuple[float, float], face_height: float, rng: np.random.Generator, roll_degrees: float = 0.0,
              yaw: float = 0.0, body: bool = False,
              variation: LookVariation | None = None) -> tuple[float, float, float, float]:
    """Paint one face onto `image` (RGB, in place) and return its box (x0, y0, x1, y1) in that image's pixels.

    The reusable renderer behind render_face and render_frame: `face_height` is the head's height in pixels
    (chin to crown, without hair), `centre` the middle of the head, roll within about +-15 degrees, yaw in
    [-0.5, 0.5]; `body` adds neck and shoulders. Draws without anti-aliasing: draw on a 2x canvas and
    downsample (as render_face / render_frame do). Only the face's surroundings are touched (it paints on a crop,
    which keeps the masks small on big frames)."""
    top, bottom = _look_top_bottom(character, style)
    scale = face_height / (top + bottom)
    # the head spans -top .. +bottom around the face origin, so the origin sits (bottom - top) / 2 above its middle
    cx, cy = centre[0], centre[1] - (bottom - top) / 2 * scale
    margin = 1.6 * scale * max(top, bottom, 1.3)
    x0, y0 = max(0, int(cx - margin)), max(0, int(cy - margin))
    x1 = min(image.width, int(cx + margin) + 1)
    y1 = image.height if body else min(image.height, int(cy + margin) + 1)
    if x1 <= x0 or y1 <= y0:
        return (cx, cy, cx, cy)
    region = image.crop((x0, y0, x1, y1))
    pose = _Pose(cx - x0, cy - y0, scale, math.radians(roll_degrees), yaw)
    head_px = _paint_face(region, pose, character, expression, style, rng, body, variation) + (x0, y0)
    image.paste(region, (x0, y0))
    (bx0, by0), (bx1, by1) = head_px.min(axis=0), head_px.max(axis=0)
    return (float(bx0), float(by0), float(bx1), float(by1))


@lru_cache(maxsize=8192)
def _head_outline_unit(character: Character, style: str) -> np.ndarray:
    look = _base_look(character, style, NEUTRAL, np.zeros(13))  # the head's shape makes no random choices
    top, bottom = _look_top_bottom(character, style)
    outline = _head_outline(look) / (top + bottom)  # in face heights, around the face origin
    outline.flags.writeable = False
    return outline


def face_box(character: Character, style: str, centre: tuple[float, float], face_height: float,
             roll_degrees: float = 0.0) -> tuple[float, float, float, float]:
    """The box draw_face returns for these arguments, computed without drawing (yaw never moves the head
    outline). Clips use it to know where every face is at any moment without rendering the frame."""
    c, s = math.cos(math.radians(roll_degrees)), math.sin(math.radians(roll_degrees))
    top, bottom = _look_top_bottom(character, style)
    origin = (centre[0], centre[1] - (bottom - top) / 2 / (top + bottom) * face_height)  # as in draw_face
    points = _head_outline_unit(character, style) @ (np.array([[c, s], [-s, c]]) * face_height) + origin
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return (float(x0), float(y0), float(x1), float(y1))


def render_frame(faces: list[tuple[Character, Expression, str]], width: int, height: int,
                 rng: np.random.Generator, *, face_scale: tuple[float, float] = (0.2, 0.65),
                 background=None) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """A scene with the given faces placed at various sizes (they may overlap a little).

    `face_scale` is the range of face heights as fractions of the frame's short side.
    Returns the frame and one face box (x0, y0, x1, y1) in pixels per face, in the order given: the box of the
    head outline (without hair or hat), clipped to the frame. Faces are drawn back to front in the given order.
    Every random choice comes from `rng`: the background and the frame's grading first, then one child
    generator per face, so adding a face changes neither the scene nor the faces before it.
    `background(width, height, rng)` replaces the generator's own backgrounds (e.g. photographs)."""
    ss = _SUPERSAMPLE
    image = (background or _background)(width * ss, height * ss, rng)
    grade_rng = np.random.default_rng(int(rng.integers(1 << 62)))
    placed: list[tuple[float, float, float]] = []
    boxes = []
    short_side = min(width, height) * ss
    for character, expression, style in faces:
        face_rng = np.random.default_rng(int(rng.integers(1 << 62)))
        for _attempt in range(12):  # look for a spot that overlaps earlier faces only a little
            face_height = float(face_rng.uniform(*face_scale)) * short_side
            radius = face_height / 2
            cx = float(face_rng.uniform(radius * 0.7, width * ss - radius * 0.7))
            cy = float(face_rng.uniform(radius * 0.8, height * ss - radius * 0.6))
            if all(math.hypot(cx - px, cy - py) > 0.8 * (radius + pr) for px, py, pr in placed):
                break
        placed.append((cx, cy, radius))
        body = character.kind != "emoji" and style != "cartoon" and face_rng.random() < 0.8
        box = draw_face(image, character, expression, style, (cx, cy), face_height, face_rng,
                        roll_degrees=_clamp(face_rng.normal(0, 6), -15, 15),
                        yaw=_clamp(face_rng.normal(0, 0.25), -0.5, 0.5), body=body)
        boxes.append((max(0, math.floor(box[0] / ss)), max(0, math.floor(box[1] / ss)),
                      min(width, math.ceil(box[2] / ss)), min(height, math.ceil(box[3] / ss))))
    return _grade(image.reduce(ss), grade_rng), boxes


# ------------------------------------------------------------------------------------------------------
# Data sets
# ------------------------------------------------------------------------------------------------------

def build_stills(out_dir: Path, count: int, size: int, seed: int, styles=None, character_ids=None,
                 progress: bool = False, vary_looks: bool = False) -> Path:
    """Write `count` labelled stills as PNGs plus manifest.csv into `out_dir`; returns the manifest path.

    Still i uses seed `seed * 1_000_003 + i` (so sets with different seeds do not share stills). `styles` limits
    the styles drawn (default: all); `character_ids` limits the characters (default DEFAULT_CHARACTER_IDS), which
    is how whole characters are held out: e.g. train on "c00000".."c01199", test on "c01300".."c01499"."""
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    styles = tuple(styles) if styles else None
    ids = tuple(character_ids) if character_ids else DEFAULT_CHARACTER_IDS
    rows = []
    started = time.perf_counter()
    for i in range(count):
        still_seed = seed * 1_000_003 + i
        pick = np.random.default_rng([still_seed, 0xC0DE])
        style = styles[int(pick.integers(len(styles)))] if styles else None
        character_id = ids[int(pick.integers(len(ids)))]
        image, labels = sample_still(still_seed, size, style=style, character_id=character_id, vary_look=vary_looks)
        path = image_dir / f"{i:07d}.png"
        image.save(path, compress_level=1)
        rows.append(dict(path=str(path), **labels))
        if progress and ((i + 1) % 1000 == 0 or i + 1 == count):
            elapsed = time.perf_counter() - started
            print(f"{i + 1}/{count} stills, {elapsed:.1f} s ({1000 * elapsed / (i + 1):.2f} ms each)", flush=True)
    return write_manifest(pd.DataFrame(rows), out_dir / "manifest.csv")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write labelled synthetic character face stills + manifest.csv")
    parser.add_argument("--out", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--styles", nargs="*", choices=STYLES, default=None)
    parser.add_argument("--characters", default=None,
                        help="character id range FIRST:LAST (e.g. c00000:c01199) to draw from; default all")
    parser.add_argument("--vary-looks", action="store_true",
                        help="draw stills off their style's layout (LookVariation): other proportions, borrowed eyes")
    args = parser.parse_args(argv)
    ids = None
    if args.characters:
        first, last = (int(part.lstrip("c")) for part in args.characters.split(":"))
        ids = [f"c{n:05d}" for n in range(first, last + 1)]
    manifest = build_stills(args.out, args.count, args.size, args.seed, args.styles, ids, progress=True,
                            vary_looks=args.vary_looks)
    print(f"wrote {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
