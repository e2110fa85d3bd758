"""Classifying face images (the CLI's `classify`, the app's Classify faces page): files in, one prediction or one
clear error per file out, and the row the store keeps for each."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facecast.clients.expression_encoder import ExpressionPrediction, ExpressionRecognizer
from facecast.media.images import MIN_FACE_SIDE, ImageDecodeError, fit_square, load_rgb, read_image_bytes
from facecast.store.rows import ImageClassification
from facecast.vocab import ACTION_PARAMS, EMOTIONS, EXPRESSION_ENCODER, STYLES


@dataclass(frozen=True)
class ClassifiedImage:
    source: str
    content_sha256: str | None
    prediction: ExpressionPrediction | None
    error: str | None = None

    def as_record(self, model_version: str = "1") -> ImageClassification:
        """The row the store keeps for a classified image (only for successful ones)."""
        p = self.prediction
        if p is None or self.content_sha256 is None:
            raise ValueError(f"{self.source} was not classified: {self.error}")
        return ImageClassification(
            content_sha256=self.content_sha256,
            source_path=self.source,
            model_name=EXPRESSION_ENCODER,
            model_version=model_version,
            emotion=p.emotion,
            emotion_probs=np.array([p.emotion_probs[e] for e in EMOTIONS], np.float32),
            style=p.style,
            style_probs=np.array([p.style_probs[s] for s in STYLES], np.float32),
            action_params=np.array([p.action_params[a] for a in ACTION_PARAMS], np.float32),
        )

    def as_dict(self) -> dict[str, Any]:
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
            faces.append(fit_square(load_rgb(data, min_side=MIN_FACE_SIDE), size))
            positions.append((index, digest))
        except ImageDecodeError as error:
            # load_rgb calls in-memory bytes "uploaded image"; the user knows them by their file name
            message = str(error).replace("uploaded image", name, 1)
            results[index] = ClassifiedImage(name, digest, None, message)
    if faces:
        for (index, digest), prediction in zip(positions, recognizer.predict(np.stack(faces))):
            results[index] = ClassifiedImage(sources[index][0], digest, prediction)
    return [result for result in results if result is not None]  # every position was filled above


def read_sources(paths: Sequence[str | Path]) -> list[tuple[str, bytes | None, str | None]]:
    """(name, bytes or None, error or None) per path: a missing or unreadable file is reported, not raised."""
    read: list[tuple[str, bytes | None, str | None]] = []
    for path in paths:
        try:
            read.append((str(path), read_image_bytes(path), None))
        except ImageDecodeError as error:  # missing, a folder, too large (never read), unreadable
            read.append((str(path), None, str(error)))
    return read
