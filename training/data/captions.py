"""Captions for labelled faces: the text side of the text/image embedders' contrastive training.

A caption is built from a face's labels (emotion, intensity, style, action parameters) and, for synthetic stills,
the artist cues drawn on it (tears, blush, anger mark...), by filling a sentence template with words from synonym
lists: intensity picks the register ("content" → "happy" → "beaming"), style has many names ("anime", "manga",
"in anime style"), extras name the visible details ("mouth wide open", "teary eyes").

Templates come in two disjoint sets: TRAIN_TEMPLATES are the only ones the embedders ever see in training;
HELDOUT_TEMPLATES are for evaluation, so retrieval scores measure sentence frames the text tower never trained on
(the synonyms are shared: MiniLM brings the generalisation across wordings, the frames test it).

Every Caption records what it asserts (emotion, style, intensity band), which is what makes an image a correct
match for it in the contrastive targets and in the retrieval metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facecast.vocab import EMOTIONS, STYLES

# Intensity bands: the synthetic generator spreads non-neutral intensities over [0.35, 1].
BANDS = ("mild", "moderate", "strong")


def intensity_band(intensity: float) -> str:
    if intensity < 0.55:
        return "mild"
    return "moderate" if intensity < 0.8 else "strong"


# Adjectives per emotion and intensity band ("moderate" words are also used when the intensity is not given).
EMOTION_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "happiness": {
        "mild": ("content", "pleased", "softly smiling", "gently smiling", "amused"),
        "moderate": ("happy", "smiling", "cheerful", "glad", "joyful", "jolly", "upbeat"),
        "strong": ("beaming", "overjoyed", "ecstatic", "laughing", "delighted", "elated", "grinning", "thrilled"),
    },
    "sadness": {
        "mild": ("wistful", "a little sad", "melancholy", "downcast", "blue"),
        "moderate": ("sad", "unhappy", "sorrowful", "glum", "gloomy", "dejected"),
        "strong": ("teary", "crying", "heartbroken", "devastated", "sobbing", "weeping", "in tears"),
    },
    "anger": {
        "mild": ("annoyed", "irritated", "grumpy", "cross", "displeased"),
        "moderate": ("angry", "mad", "irate", "scowling", "frowning angrily"),
        "strong": ("furious", "enraged", "livid", "seething", "raging", "fuming"),
    },
    "surprise": {
        "mild": ("mildly surprised", "curious", "intrigued", "a bit startled"),
        "moderate": ("surprised", "astonished", "amazed", "startled"),
        "strong": ("wide-eyed", "shocked", "stunned", "astounded", "flabbergasted", "gobsmacked"),
    },
    "fear": {
        "mild": ("uneasy", "nervous", "worried", "apprehensive", "tense"),
        "moderate": ("scared", "afraid", "frightened", "anxious", "fearful"),
        "strong": ("terrified", "horrified", "panicked", "petrified", "screaming in fear"),
    },
    "disgust": {
        "mild": ("displeased", "put off", "unimpressed", "squeamish"),
        "moderate": ("disgusted", "grossed out", "repulsed", "sneering"),
        "strong": ("revolted", "nauseated", "sickened", "appalled", "utterly disgusted"),
    },
    "neutral": {
        "moderate": ("neutral", "expressionless", "calm", "blank", "deadpan", "straight-faced", "impassive",
                     "emotionless", "relaxed", "composed"),
    },
}

# Nouns naming an emotion, for templates like "{emotion_noun} on a {style} face".
EMOTION_NOUNS: dict[str, tuple[str, ...]] = {
    "happiness": ("happiness", "joy", "delight", "a smile", "cheer"),
    "sadness": ("sadness", "sorrow", "grief", "misery"),
    "anger": ("anger", "rage", "fury", "irritation"),
    "surprise": ("surprise", "astonishment", "shock", "amazement"),
    "fear": ("fear", "terror", "fright", "dread", "panic"),
    "disgust": ("disgust", "revulsion", "distaste", "contempt"),
    "neutral": ("no emotion", "a neutral look", "a blank stare", "calm"),
}

# Style names as adjectives ("an anime face") and as phrases ("... in anime style").
STYLE_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "realistic": ("realistic", "photorealistic", "lifelike", "naturalistic", "true-to-life"),
    "cartoon": ("cartoon", "cartoony", "toon", "comic", "flat cartoon", "emoji-like"),
    "anime": ("anime", "manga", "anime-style", "manga-style", "Japanese anime"),
    "stylized_3d": ("3D", "stylized 3D", "CGI", "3D-rendered", "3D animated", "CG"),
}
STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "realistic": ("in a realistic style", "drawn realistically", "in realistic style", "with realistic rendering",
                  "in a lifelike style"),
    "cartoon": ("in cartoon style", "drawn as a cartoon", "in a cartoon style", "in a flat comic style",
                "like an emoji"),
    "anime": ("in anime style", "drawn like anime", "in manga style", "in an anime style", "anime-like"),
    "stylized_3d": ("in 3D", "rendered in 3D", "in a stylized 3D style", "as a 3D render", "in CGI style"),
}
NOUNS = ("face", "character", "expression", "portrait", "head", "avatar", "person", "figure")

# Visible details from the action parameters (value thresholds) and the artist cues drawn on synthetic stills.
_PARAM_PHRASES = {
    ("mouth", "high"): ("mouth wide open", "open-mouthed", "a gaping mouth", "jaw dropped"),
    ("mouth", "low"): ("mouth closed", "closed lips", "tight-lipped"),
    ("eye", "high"): ("eyes wide open", "big round eyes", "wide eyes"),
    ("eye", "low"): ("eyes shut", "eyes squeezed", "narrowed eyes", "squinting"),
    ("brow", "high"): ("raised eyebrows", "brows up", "lifted brows"),
    ("brow", "low"): ("lowered brows", "furrowed brow", "knitted brows"),
    ("cheek", "high"): ("raised cheeks", "round raised cheeks"),
}
_CUE_PHRASES = {
    "tears": ("tears streaming", "teary eyes", "tears rolling down"),
    "blush": ("blushing", "flushed cheeks", "rosy blush"),
    "sweat": ("a sweat drop", "sweating"),
    "red_tint": ("red-faced", "face turning red"),
    "green_tint": ("green in the face", "looking queasy"),
    "pale_tint": ("pale as a ghost", "blue-faced"),
    "anger_mark": ("an anger vein mark", "a throbbing vein"),
    "heart_eyes": ("heart eyes", "starry eyes"),
    "wink": ("winking",),
    "hearts": ("floating hearts", "little hearts around"),
    "hands": ("hands on the cheeks", "clutching the face"),
    "steam": ("steam from the nose", "blowing steam"),
    "symbols": ("swearing symbols", "cursing"),
    "vomit": ("vomiting", "throwing up"),
    "teeth": ("showing teeth", "teeth bared"),
}

# Slots: {a_emo} "a happy" / "an angry" (article + emotion adjective), {emo} adjective, {emo_noun} noun,
# {style} adjective, {a_style} article + style adjective, {style_phrase}, {noun}, {extra} ", <details>" or "".
TRAIN_TEMPLATES: tuple[str, ...] = (
    "{a_emo} {noun}",
    "{a_emo} {style} {noun}",
    "{a_emo} {noun} {style_phrase}",
    "{a_style} {noun} that looks {emo}",
    "{a_style} {noun}, {emo}{extra}",
    "{emo} {style} {noun}{extra}",
    "{a_emo} {noun}{extra}",
    "{a_emo} {style} {noun}{extra}",
    "{a_emo} face {style_phrase}{extra}",
    "{a_emo} expression, {style} art",
    "{style} {noun} looking {emo}",
    "{emo_noun} on {a_style} face",
    "{a_style} drawing of someone {emo}",
    "portrait of {a_emo} {noun}, {style}",
    "{emo}, {style}",
    "{emo} {noun}",
    "character feeling {emo}",
    "{a_style} {noun} showing {emo_noun}{extra}",
    "{emo} expression {style_phrase}",
    "close-up of {a_emo} {style} {noun}",
    "{a_style} {noun} who is {emo}",
    "the {noun} looks {emo} {style_phrase}",
    "{style} style, {emo} mood{extra}",
    "a face full of {emo_noun}, {style}",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "show me someone {emo} drawn {style_phrase}",
    "{style} art: {a_emo} {noun}",
    "looking {emo}, {style_phrase}",
    "I need {a_emo} expression for {a_style} project",
    "{a_emo} {noun} ({style})",
    "find {a_emo} {style} {noun}",
    "reference of {a_emo} {noun} {style_phrase}",
    "{emo_noun}: {a_style} {noun}{extra}",
    "{a_style} {noun} with {a_emo} look",
    "give me {emo} faces {style_phrase}",
    "{style} {noun}, emotion: {emo}",
    "someone {emo}, {style} style{extra}",
)
# Templates that never name the style (they still name the emotion); without style a caption matches any style.
_STYLELESS = {"{a_emo} {noun}", "{a_emo} {noun}{extra}", "character feeling {emo}", "{emo} {noun}"}


@dataclass(frozen=True)
class Caption:
    text: str
    emotion: str        # always named
    style: str | None   # None when the caption does not name a style
    band: str | None    # intensity band the words assert (None for neutral or band-free words)
    template: str


def _article(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" and not word.lower().startswith(("one", "uni", "eu")) else "a ") + word


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _extras(params: dict | None, cues: dict | None, rng: np.random.Generator) -> list[str]:
    found = []
    for name, value in (params or {}).items():
        if value is None or not np.isfinite(value):
            continue
        level = "high" if value > 0.7 else "low" if value < 0.2 else None
        if level and (name, level) in _PARAM_PHRASES:
            found.append(_pick(rng, _PARAM_PHRASES[(name, level)]))
    for name, value in (cues or {}).items():
        if value and value > 0.5 and name in _CUE_PHRASES:
            found.append(_pick(rng, _CUE_PHRASES[name]))
    rng.shuffle(found)
    return found


def make_caption(emotion: str, style: str, rng: np.random.Generator, *, intensity: float | None = None,
                 params: dict | None = None, cues: dict | None = None, split: str = "train",
                 extra_probability: float = 0.4) -> Caption:
    """One caption for a face with these labels, from the `split` ("train" or "heldout") template set."""
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {EMOTIONS}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    templates = {"train": TRAIN_TEMPLATES, "heldout": HELDOUT_TEMPLATES}.get(split)
    if templates is None:
        raise ValueError(f"split must be 'train' or 'heldout', not {split!r}")
    template = _pick(rng, templates)
    words = EMOTION_WORDS[emotion]
    if emotion == "neutral":
        band, choices = None, words["moderate"]
    elif intensity is None or rng.random() < 0.3:  # band-free wording: any intensity matches
        band, choices = None, words["moderate"]
    else:
        band = intensity_band(intensity)
        choices = words[band]
    emo = _pick(rng, choices)
    style_adjective = _pick(rng, STYLE_ADJECTIVES[style])
    extras = _extras(params, cues, rng) if rng.random() < extra_probability else []
    extra = (", " + " and ".join(extras[:2])) if extras else ""
    text = template.format(a_emo=_article(emo), emo=emo, emo_noun=_pick(rng, EMOTION_NOUNS[emotion]),
                           style=style_adjective, a_style=_article(style_adjective),
                           style_phrase=_pick(rng, STYLE_PHRASES[style]), noun=_pick(rng, NOUNS), extra=extra)
    if "emo}" not in template:  # only an emotion noun ("joy", "rage"): the words assert no intensity
        band = None
    return Caption(text=text, emotion=emotion, style=None if template in _STYLELESS else style, band=band,
                   template=template)


def caption_matches(caption: Caption, emotion: str, style: str, intensity: float | None = None) -> bool:
    """Whether a face with these labels is a correct answer to the caption (what retrieval scores count)."""
    if caption.emotion != emotion or (caption.style is not None and caption.style != style):
        return False
    return caption.band is None or intensity is None or intensity_band(intensity) == caption.band
