"""Cross-style expression mapping through Triton's `style_mapper` (issue 6): a face in, the same expression drawn in
another style out, with its action parameters kept inside the target style's bounds. Torch-free (numpy + Pillow).

What a caller hands in is checked here, once, for the CLI and the app alike:

* **the picture** (a path, file bytes or a uint8 array) goes through facecast.media.images' one decoder, so transparency
  is composited on white and grayscale, palette, CMYK and 16-bit pictures become 8-bit RGB; an empty, corrupt or
  non-image file, a picture under :data:`MIN_SIDE` px on a side, or over :data:`MAX_PIXELS` pixels or
  :data:`MAX_SIDE` px on a side (a decompression bomb is refused from its header) raises :class:`MappingInputError`
  with the file's name and the problem in plain words;
* **the face**: the served `face_detector` looks for it twice in one request, in the picture as given (a frame
  with a character somewhere in it) and in the picture centred on a canvas twice its size (a picture that already
  *is* a face: the detector was trained on faces of 6–70 % of the frame, so a tight crop, e.g. an emoji, is found
  only with room around it). See :func:`locate_face` for how the two are weighed. A picture without a face is
  refused (:class:`NotAFaceError`) unless the caller says to map it anyway (``assume_face=True``, CLI
  ``--no-detect``). The face is then letterboxed to a square (border colour) and resized to the input size the
  served model declares (read from its Triton config, never hard-coded);
* **the target style** must be one of facecast.vocab.STYLES (:func:`validate_style`);
* **parameter overrides** (mouth, eye, brow, cheek) must be finite numbers and are clamped into the target
  style's range (facecast.vocab.STYLE_PARAM_BOUNDS, seed 003 Table 5), each clamp reported by a
  :class:`ClampNotice` ("mouth 0.99 is above anime's range [0.10, 0.90]; drawn at 0.90"). The served graph clamps
  too; a source value it had to clamp (an expression read from the source that the target style cannot draw) is
  reported the same way.

The served model's contract: facecast.clients.style_mapper.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facecast.clients.face_detector import FaceDetector
from facecast.clients.style_mapper import MappedFaces, StyleMapperClient
from facecast.library import IngestReport, Library
from facecast.media.images import DEFAULT_MAX_SIDE, ImageDecodeError, border_colour, face_crop, fit_square, load_rgb
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLE_PARAM_BOUNDS, STYLES

MIN_SIDE = 24  # px: below this there is no face left to read an expression from
MAX_PIXELS = 40_000_000  # far above any face picture or 8K frame (33 MP); checked from the header, before decoding
MAX_SIDE = DEFAULT_MAX_SIDE  # px: a 10000×40 strip is not a face picture either

# Face finding (locate_face), measured on the served face_detector (`python -m benchmarks.face_check`,
# docs/benchmarks.md "face check"): of 313 pictures that are one face (the 28 demo faces, 135 licensed emoji of three
# sets, 150 renderings of held-out synthetic characters) all 313 pass, and 150 of 150 test detection scenes with a
# face of ≥ 20 % of the frame are cropped to a true face (IoU ≥ 0.4). Of 94 pictures without a face
# (scikit-image's photographs the detector never trained on and crops of them, noise, flat colours, a gradient,
# drawn shapes) 84 are refused; coins, a logo and a cat's face still pass: the check guards against blank and
# photographic uploads, it does not prove a face (`assume_face` remains for faces it refuses). The threshold is
# chosen on other pictures
# (`python -m benchmarks.face_check --choose`: validation characters, the detector's training photographs, 1/f noise
# and text): the lowest one that separates them best.
FACE_SCORE_THRESHOLD = 0.52
CONTEXT_FACTOR = 2.0  # the second view: the picture centred on a canvas this many times its longer side
WHOLE_FACE_SIDE = 0.6  # a face box at least this fraction of the picture's longer side: the picture is the face
WHOLE_FACE_MARGIN = 0.15  # the whole-face reading wins unless the in-frame face scores this much higher
CROP_MARGIN = 0.25  # around a face found inside a larger picture, of the box's longer side on each side


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the picture's pixels


class MappingInputError(ValueError):
    """Input the mapper cannot use (a picture, a style name, a parameter); the message says what is wrong."""


class NotAFaceError(MappingInputError):
    """The face detector found no face in the picture (map it anyway with assume_face=True / --no-detect)."""


# --------------------------------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------------------------------


def _array_to_rgb(array: np.ndarray, name: str) -> np.ndarray:
    """A uint8 array [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] → RGB (alpha composited on white, like load_rgb)."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise MappingInputError(f"{name}: a picture array must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        return np.ascontiguousarray(np.repeat(array[..., None], 3, axis=2))
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise MappingInputError(
            f"{name}: a picture array must be [H, W], [H, W, 3] or [H, W, 4], got {list(array.shape)}"
        )
    if array.shape[2] == 3:
        return np.ascontiguousarray(array)
    rgba = Image.fromarray(np.ascontiguousarray(array))  # 4 channels of uint8: RGBA
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)


def load_picture(source: str | Path | bytes | np.ndarray, *, name: str | None = None) -> np.ndarray:
    """Decode a picture to uint8 RGB [H, W, 3] and check that a face can be mapped from it.

    `source` is a path, the file's bytes, or an array (uint8 gray, RGB or RGBA). `name` is how the user knows it
    (an upload's file name); errors name it. Raises MappingInputError for anything unusable."""
    if isinstance(source, np.ndarray):
        label = name or "picture"
        picture = _array_to_rgb(source, label)
    else:
        label = name or (str(source) if isinstance(source, (str, Path)) else "uploaded image")
        try:  # load_rgb refuses a bomb or an absurd side from the header, before anything is decoded
            picture = load_rgb(source, max_pixels=MAX_PIXELS, max_side=MAX_SIDE, name=label)
        except ImageDecodeError as error:
            message = str(error)
            if "too large (" in message and "px" in message:
                message += "; crop it to the face"
            raise MappingInputError(message) from None
    height, width = picture.shape[:2]
    if height == 0 or width == 0:
        raise MappingInputError(f"{label}: the picture has no pixels ({width}x{height})")
    if min(height, width) < MIN_SIDE:
        raise MappingInputError(
            f"{label}: the picture is too small ({width}x{height} px); a face to map needs at "
            f"least {MIN_SIDE} px on each side"
        )
    if max(height, width) > MAX_SIDE or height * width > MAX_PIXELS:
        raise MappingInputError(
            f"{label}: the picture is too large ({width}x{height} px); at most {MAX_SIDE:,} px "
            f"on a side and {MAX_PIXELS:,} pixels are accepted; crop it to the face"
        )
    return picture


# --------------------------------------------------------------------------------------------------------------------
# Styles and parameters
# --------------------------------------------------------------------------------------------------------------------


def validate_style(style: object) -> str:
    """A style name (case, spaces and dashes forgiven: "Stylized 3D" → "stylized_3d"), or MappingInputError."""
    if isinstance(style, str):
        key = re.sub(r"[\s\-]+", "_", style.strip().lower())
        if key in STYLES:
            return key
    raise MappingInputError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")


def _number(param: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)):
        raise MappingInputError(f"{param}: {value!r} is not a number")
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            raise MappingInputError(f"{param}: {value!r} is not a number") from None
    elif isinstance(value, (numbers.Real, np.floating, np.integer)):
        number = float(value)
    else:
        raise MappingInputError(f"{param}: {value!r} is not a number")
    if not math.isfinite(number):
        raise MappingInputError(f"{param}: {value!r} is not a finite number")
    return number


@dataclass(frozen=True)
class ClampNotice:
    """A parameter that had to be moved into the target style's range."""

    param: str
    requested: float
    applied: float
    low: float
    high: float
    style: str
    origin: str = "override"  # "override": the caller asked for it; "source": read from the source face

    @property
    def message(self) -> str:
        side = "above" if self.requested > self.high else "below"
        what = self.param if self.origin == "override" else f"the source's {self.param}"
        return (
            f"{what} {self.requested:.3g} is {side} {self.style}'s range [{self.low:.2f}, {self.high:.2f}]; "
            f"drawn at {self.applied:.2f}"
        )

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        return {
            "param": self.param,
            "requested": round(self.requested, 4),
            "applied": round(self.applied, 4),
            "range": [self.low, self.high],
            "style": self.style,
            "origin": self.origin,
            "message": self.message,
        }


def validate_overrides(overrides: Mapping[str, Any] | None, style: str) -> tuple[dict[str, float], list[ClampNotice]]:
    """Check parameter overrides and clamp them into `style`'s bounds.

    Returns (clamped values by parameter, one notice per clamped parameter). A value of None means "no override".
    Unknown parameter names and values that are not finite numbers raise MappingInputError."""
    style = validate_style(style)
    if overrides is None:
        return {}, []
    if not isinstance(overrides, Mapping):
        raise MappingInputError(f"parameter overrides must be a mapping of {', '.join(ACTION_PARAMS)} to numbers")
    bounds = STYLE_PARAM_BOUNDS[style]
    clamped: dict[str, float] = {}
    notices: list[ClampNotice] = []
    for param, value in overrides.items():
        if param not in ACTION_PARAMS:
            raise MappingInputError(f"unknown parameter {param!r}; the parameters are {', '.join(ACTION_PARAMS)}")
        if value is None:
            continue
        number = _number(param, value)
        low, high = bounds[param]
        applied = min(high, max(low, number))
        if applied != number:
            notices.append(ClampNotice(param, number, applied, low, high, style))
        clamped[param] = applied
    return clamped, notices


# --------------------------------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedFace:
    """The model input made from a picture, and how the face was found."""

    face: np.ndarray  # uint8 [S, S, 3], S = the served model's input size
    how: str  # "whole picture" (the picture is the face), "detected face" (cropped from it) or "assumed"
    score: float | None  # the detector's score of the face used (None when detection was skipped)
    box: Box | None  # the face box in the picture's pixels (cropped faces)
    name: str = "picture"

    @property
    def description(self) -> str:
        if self.how == "assumed":
            return "face detection skipped: the whole picture was mapped"
        if self.how == "whole picture":
            return f"the picture is a face (detector score {self.score:.2f}): mapped whole"
        return f"face found (detector score {self.score:.2f}) and cropped from the picture"


def _context_view(picture: np.ndarray, factor: float = CONTEXT_FACTOR) -> tuple[np.ndarray, int, int]:
    """The picture centred on a square canvas `factor` times its longer side, filled with its border colour."""
    height, width = picture.shape[:2]
    side = round(max(height, width) * factor)
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = border_colour(picture)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = picture
    return canvas, left, top


def locate_face(
    picture: np.ndarray, detector: FaceDetector, threshold: float = FACE_SCORE_THRESHOLD
) -> tuple[str, float, Box]:
    """Where the face to map is: ("whole picture" | "detected face", score, box in picture pixels).

    One request of two views: the picture itself, and the picture with room around it (_context_view). A face box
    from the second view that spans ≥ WHOLE_FACE_SIDE of the picture means the picture already is the face (a crop,
    an emoji); it is used unless the first view finds a face that scores WHOLE_FACE_MARGIN higher (a character in a
    frame, found where it is, is cropped). Raises NotAFaceError when neither view scores `threshold`."""
    context, left, top = _context_view(picture)
    in_frame, with_room = detector.detect([picture, context])
    longer = max(picture.shape[:2])
    whole = None
    for detection in with_room:  # strongest first
        x0, y0, x1, y1 = detection.box
        box = (x0 - left, y0 - top, x1 - left, y1 - top)
        if max(box[2] - box[0], box[3] - box[1]) >= WHOLE_FACE_SIDE * longer:
            whole = (detection.score, box)
            break
    found = (in_frame[0].score, in_frame[0].box) if in_frame else None
    whole_score = whole[0] if whole else 0.0
    found_score = found[0] if found else 0.0
    if max(whole_score, found_score) < threshold:
        raise NotAFaceError(
            f"no face found in the picture (the face detector's best score is "
            f"{max(whole_score, found_score):.2f}, below {threshold:.2f})"
        )
    if whole is not None and whole_score >= threshold and whole_score >= found_score - WHOLE_FACE_MARGIN:
        return "whole picture", float(whole_score), whole[1]
    assert found is not None  # one of the two views scored at least threshold
    score, box = found
    if max(box[2] - box[0], box[3] - box[1]) >= WHOLE_FACE_SIDE * longer:
        return "whole picture", float(score), box
    return "detected face", float(score), box


# --------------------------------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappingResult:
    """One face mapped into one style."""

    target_style: str
    mapped: np.ndarray = field(repr=False)  # uint8 [S, S, 3]
    applied_params: dict[str, float]  # what was drawn (inside the target style's bounds)
    source_params: dict[str, float]  # what the model read from the source face
    source_style_probs: dict[str, float]
    emotion_probs: dict[str, float]
    notices: tuple[ClampNotice, ...] = ()
    overrides: dict[str, float] = field(default_factory=dict)  # the (clamped) overrides sent
    source: PreparedFace | None = field(default=None, repr=False)

    @property
    def source_style(self) -> str:
        return max(self.source_style_probs, key=lambda style: self.source_style_probs[style])

    @property
    def emotion(self) -> str:
        return max(self.emotion_probs, key=lambda emotion: self.emotion_probs[emotion])

    def png(self) -> bytes:
        return encode_png(self.mapped)

    def as_dict(self) -> dict[str, Any]:
        return {
            "target_style": self.target_style,
            "source_style": self.source_style,
            "emotion": self.emotion,
            "applied_params": {k: round(v, 4) for k, v in self.applied_params.items()},
            "source_params": {k: round(v, 4) for k, v in self.source_params.items()},
            "overrides": {k: round(v, 4) for k, v in self.overrides.items()},
            "source_style_probs": {k: round(v, 4) for k, v in self.source_style_probs.items()},
            "emotion_probs": {k: round(v, 4) for k, v in self.emotion_probs.items()},
            "notices": [n.as_dict() for n in self.notices],
            "face": None if self.source is None else self.source.description,
        }


def encode_png(image: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png_atomically(image: np.ndarray, path: str | Path) -> Path:
    """Write a PNG so that `path` is either the old file or the whole new one, never half written: the bytes go to
    a temporary file in the same folder, are flushed to disk, and renamed over `path`."""
    path = Path(path)
    data = encode_png(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file 0600; the picture gets the permissions any new file of this user would get
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    return path


# --------------------------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------------------------


class StyleMapper:
    """Batched style mapping on Triton. Clients are lazy: creating one never fails when Triton is down; the first
    request raises facecast.serving.errors.TritonUnavailable (or ModelUnavailable) with what to do."""

    def __init__(self, model: StyleMapperClient, detector: FaceDetector | None = None):
        self.model = model
        self.detector = detector

    @classmethod
    def for_urls(cls, urls: str | list[str]) -> StyleMapper:
        # The detector gets threshold 0: locate_face weighs every candidate itself.
        return cls(StyleMapperClient.for_urls(urls), FaceDetector.for_urls(urls, 0.0))

    @property
    def input_size(self) -> int:
        """S of the served model's image input [S, S, 3], from its Triton config."""
        return self.model.input_size

    def prepare(
        self,
        source: str | Path | bytes | np.ndarray | PreparedFace,
        *,
        assume_face: bool = False,
        name: str | None = None,
    ) -> PreparedFace:
        """The model input for a picture: decoded and checked (load_picture), the face located (locate_face) unless
        `assume_face`, letterboxed to a square and resized to the served input size."""
        if isinstance(source, PreparedFace):
            return source
        picture = load_picture(source, name=name)
        label = name or (
            str(source)
            if isinstance(source, (str, Path))
            else "picture"
            if isinstance(source, np.ndarray)
            else "uploaded image"
        )
        size = self.input_size
        if assume_face:
            return PreparedFace(fit_square(picture, size), "assumed", None, None, label)
        if self.detector is None:
            raise ValueError("this StyleMapper has no face detector: pass assume_face=True or build it with for_urls")
        try:
            how, score, box = locate_face(picture, self.detector)
        except NotAFaceError as error:
            raise NotAFaceError(f"{label}: {error}") from None
        if how == "whole picture":
            return PreparedFace(fit_square(picture, size), how, score, box, label)
        return PreparedFace(face_crop(picture, box, size, margin=CROP_MARGIN), how, score, box, label)

    def _run(self, prepared: PreparedFace, styles: list[str], overrides: list[dict[str, float]]) -> MappedFaces:
        count = len(styles)
        params = np.zeros((count, len(ACTION_PARAMS)), np.float32)
        mask = np.zeros((count, len(ACTION_PARAMS)), np.float32)
        for row, values in enumerate(overrides):
            for param, value in values.items():
                column = ACTION_PARAMS.index(param)
                params[row, column] = value
                mask[row, column] = 1.0
        return self.model.map(
            np.repeat(prepared.face[None], count, axis=0),
            np.eye(len(STYLES), dtype=np.float32)[[STYLES.index(s) for s in styles]],
            params,
            mask,
        )

    def _results(
        self,
        prepared: PreparedFace,
        styles: list[str],
        overrides: list[dict[str, float]],
        notices: list[list[ClampNotice]],
    ) -> list[MappingResult]:
        outputs = self._run(prepared, styles, overrides)
        results = []
        for row, style in enumerate(styles):
            applied = dict(zip(ACTION_PARAMS, map(float, outputs.applied_params[row])))
            source = dict(zip(ACTION_PARAMS, map(float, outputs.source_params[row])))
            row_notices = list(notices[row])
            for param, (low, high) in STYLE_PARAM_BOUNDS[style].items():
                value = source[param]
                if param not in overrides[row] and not low - 1e-6 <= value <= high + 1e-6:
                    row_notices.append(ClampNotice(param, value, applied[param], low, high, style, "source"))
            results.append(
                MappingResult(
                    target_style=style,
                    mapped=np.ascontiguousarray(outputs.mapped[row]),
                    applied_params=applied,
                    source_params=source,
                    source_style_probs=dict(zip(STYLES, map(float, outputs.source_style_probs[row]))),
                    emotion_probs=dict(zip(EMOTIONS, map(float, outputs.emotion_probs[row]))),
                    notices=tuple(row_notices),
                    overrides=dict(overrides[row]),
                    source=prepared,
                )
            )
        return results

    def map_expression(
        self,
        source: str | Path | bytes | np.ndarray | PreparedFace,
        target_style: str,
        overrides: Mapping[str, Any] | None = None,
        *,
        assume_face: bool = False,
        name: str | None = None,
    ) -> MappingResult:
        """Map the face in `source` into `target_style`; `overrides` pushes some of mouth/eye/brow/cheek (clamped
        into the style's bounds, each clamp reported in the result's notices)."""
        style = validate_style(target_style)
        values, notices = validate_overrides(overrides, style)
        prepared = self.prepare(source, assume_face=assume_face, name=name)
        return self._results(prepared, [style], [values], [notices])[0]

    def map_to_all_styles(
        self,
        source: str | Path | bytes | np.ndarray | PreparedFace,
        overrides: Mapping[str, Any] | None = None,
        *,
        assume_face: bool = False,
        name: str | None = None,
    ) -> dict[str, MappingResult]:
        """The face in every style, in STYLES order, from one batched request of len(STYLES) rows; `overrides` apply
        to every style, each clamped into that style's own bounds."""
        checked = [validate_overrides(overrides, style) for style in STYLES]
        prepared = self.prepare(source, assume_face=assume_face, name=name)
        results = self._results(prepared, list(STYLES), [v for v, _ in checked], [n for _, n in checked])
        return {result.target_style: result for result in results}


# --------------------------------------------------------------------------------------------------------------------
# Into the library
# --------------------------------------------------------------------------------------------------------------------


def save_to_library(
    library: Library,
    result: MappingResult,
    origin: str,
    *,
    character: str | None = None,
    folder: str | Path | None = None,
) -> IngestReport:
    """Store a mapped face as a library item of the target style, through the library's own ingest (so it is
    embedded and indexed like any other item). Returns the library's IngestReport.

    The PNG is kept (written atomically, named by its content) in `folder` (default: "mapped/" beside the library's
    DuckDB file) and is the item's source_path; the item's source says where it came from, e.g.
    "mapped from item 12 (realistic to anime)"; its action parameters are the applied ones."""
    import pandas as pd

    data = result.png()
    folder = Path(folder) if folder is not None else Path(library.store.path).parent / "mapped"
    slug = re.sub(r"[^A-Za-z0-9]+", "-", origin).strip("-")[:40] or "face"
    path = folder / f"{slug}-to-{result.target_style}-{hashlib.sha256(data).hexdigest()[:12]}.png"
    if not path.is_file() or path.read_bytes() != data:
        write_png_atomically(result.mapped, path)
    labels = pd.DataFrame(
        {
            "path": [str(path)],
            "emotion": [""],
            "style": [result.target_style],
            "character": [character or ""],
            "intensity": [np.nan],
            "source": [f"mapped from {origin} ({result.source_style} to {result.target_style})"],
            **{param: [np.float32(result.applied_params[param])] for param in ACTION_PARAMS},
        },
        index=[str(path.resolve())],
    )
    return library.add_images([path], labels=labels, source="mapped")
