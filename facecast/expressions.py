"""Expression recognition through Triton's `expression_encoder`: faces in, readable predictions out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facecast.media.images import ImageDecodeError, fit_square, load_rgb
from facecast.store import ImageClassification
from facecast.serving.client import TritonModelClient
from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES

EXPRESSION_MODEL = "expression_encoder"


@dataclass(frozen=True)
class ExpressionPrediction:
    emotion: str
    emotion_probs: dict[str, float]
    style: str
    style_probs: dict[str, float]
    action_params: dict[str, float]
    expression: np.ndarray = field(repr=False)  # 256-d vector for the engagement model and the library
    attention: np.ndarray = field(repr=False)  # [H, W] softmax over facial regions

    @property
    def confidence(self) -> float:
        return self.emotion_probs[self.emotion]

    def as_dict(self) -> dict:
        return {"emotion": self.emotion, "confidence": round(self.confidence, 4),
                "emotion_probs": {k: round(v, 4) for k, v in self.emotion_probs.items()},
                "style": self.style, "style_probs": {k: round(v, 4) for k, v in self.style_probs.items()},
                "action_params": {k: round(v, 4) for k, v in self.action_params.items()}}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class ExpressionRecognizer:
    """Batched expression recognition on Triton; the face size comes from the served model's config."""

    def __init__(self, client: TritonModelClient):
        if client.model_name != EXPRESSION_MODEL:
            raise ValueError(f"ExpressionRecognizer needs a client for {EXPRESSION_MODEL!r}")
        self.client = client

    @property
    def face_size(self) -> int:
        return self.client.signature.inputs[0].dims[0]

    def predict(self, faces: np.ndarray) -> list[ExpressionPrediction]:
        """faces: uint8 [N, S, S, 3] RGB crops (use facecast.media.images.fit_square to get there)."""
        outputs = self.client.infer({"image": faces})
        emotion_probs = softmax(outputs["emotion_logits"])
        style_probs = softmax(outputs["style_logits"])
        return [
            ExpressionPrediction(
                emotion=EMOTIONS[int(e.argmax())], emotion_probs=dict(zip(EMOTIONS, map(float, e))),
                style=STYLES[int(s.argmax())], style_probs=dict(zip(STYLES, map(float, s))),
                action_params=dict(zip(ACTION_PARAMS, map(float, a))), expression=x, attention=m)
            for e, s, a, x, m in zip(emotion_probs, style_probs, outputs["action_params"], outputs["expression"],
                                     outputs["attention"])
        ]


@dataclass(frozen=True)
class ClassifiedImage:
    source: str
    content_sha256: str | None
    prediction: ExpressionPrediction | None
    error: str | None = None

    def as_record(self, model_version: str = "1") -> ImageClassification:
        """The row the store keeps for a classified image (only for successful ones)."""
        p = self.prediction
        if p is None:
            raise ValueError(f"{self.source} was not classified: {self.error}")
        return ImageClassification(
            content_sha256=self.content_sha256, source_path=self.source, model_name=EXPRESSION_MODEL,
            model_version=model_version, emotion=p.emotion,
            emotion_probs=np.array([p.emotion_probs[e] for e in EMOTIONS], np.float32), style=p.style,
            style_probs=np.array([p.style_probs[s] for s in STYLES], np.float32),
            action_params=np.array([p.action_params[a] for a in ACTION_PARAMS], np.float32))

    def as_dict(self) -> dict:
        if self.prediction is None:
            return {"path": self.source, "error": self.error}
        return {"path": self.source, "sha256": self.content_sha256, **self.prediction.as_dict()}


def classify_images(sources: list[tuple[str, bytes]], recognizer: ExpressionRecognizer) -> list[ClassifiedImage]:
    """Classify (name, file bytes) pairs in one batched call; undecodable files get an error, not an exception."""
    size = recognizer.face_size
    results: list[ClassifiedImage | None] = [None] * len(sources)
    faces, positions = [], []
    for index, (name, data) in enumerate(sources):
        digest = hashlib.sha256(data).hexdigest()
        try:
            faces.append(fit_square(load_rgb(data), size))
            positions.append((index, digest))
        except ImageDecodeError as error:
            # load_rgb calls in-memory bytes "uploaded image"; the user knows them by their file name
            message = str(error).replace("uploaded image", name, 1)
            results[index] = ClassifiedImage(name, digest, None, message)
    if faces:
        for (index, digest), prediction in zip(positions, recognizer.predict(np.stack(faces))):
            results[index] = ClassifiedImage(sources[index][0], digest, prediction)
    return results


def read_sources(paths: list[str | Path]) -> list[tuple[str, bytes | None, str | None]]:
    """(name, bytes or None, error or None) per path: a missing or unreadable file is reported, not raised."""
    read = []
    for path in paths:
        path = Path(path)
        try:
            read.append((str(path), path.read_bytes(), None))
        except IsADirectoryError:
            read.append((str(path), None, f"{path}: is a folder, not an image file"))
        except OSError as error:
            read.append((str(path), None, f"{path}: cannot read ({error.strerror or error})"))
    return read
