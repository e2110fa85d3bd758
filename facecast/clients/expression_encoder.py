"""Expression recognition through Triton's `expression_encoder`: faces in, readable predictions out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facecast.clients._common import expect_client, softmax
from facecast.serving.client import TritonModelClient
from facecast.vocab import ACTION_PARAMS, EMOTIONS, EXPRESSION_ENCODER, STYLES


@dataclass(frozen=True)
class ExpressionPrediction:
    emotion: str
    emotion_probs: dict[str, float]
    style: str
    style_probs: dict[str, float]
    action_params: dict[str, float]
    # None when predicted with vectors=False (the clip analysis reads only the three heads above)
    expression: np.ndarray | None = field(repr=False)  # 256-d vector for the library
    attention: np.ndarray | None = field(repr=False)  # [H, W] softmax over facial regions

    @property
    def confidence(self) -> float:
        return self.emotion_probs[self.emotion]

    def as_dict(self) -> dict:
        return {
            "emotion": self.emotion,
            "confidence": round(self.confidence, 4),
            "emotion_probs": {k: round(v, 4) for k, v in self.emotion_probs.items()},
            "style": self.style,
            "style_probs": {k: round(v, 4) for k, v in self.style_probs.items()},
            "action_params": {k: round(v, 4) for k, v in self.action_params.items()},
        }


class ExpressionRecognizer:
    """Batched expression recognition on Triton; the face size comes from the served model's config."""

    def __init__(self, client: TritonModelClient):
        expect_client(client, EXPRESSION_ENCODER, "ExpressionRecognizer")
        self.client = client

    @classmethod
    def for_urls(cls, urls: str | list[str]) -> ExpressionRecognizer:
        return cls(TritonModelClient(EXPRESSION_ENCODER, urls))

    @property
    def face_size(self) -> int:
        return self.client.signature.inputs[0].dims[0]

    def predict(self, faces: np.ndarray, vectors: bool = True) -> list[ExpressionPrediction]:
        """faces: uint8 [N, S, S, 3] RGB crops (use facecast.media.images.fit_square to get there). `vectors=False`
        asks Triton for the emotion, style and action heads only: 15 of the 335 floats per face, and the served
        model then neither computes nor copies the expression vector and the attention map."""
        heads = ("emotion_logits", "style_logits", "action_params")
        outputs = self.client.infer({"image": faces}, outputs=() if vectors else heads)
        missing = [None] * len(faces)
        emotion_probs = softmax(outputs["emotion_logits"])
        style_probs = softmax(outputs["style_logits"])
        return [
            ExpressionPrediction(
                emotion=EMOTIONS[int(e.argmax())],
                emotion_probs=dict(zip(EMOTIONS, map(float, e))),
                style=STYLES[int(s.argmax())],
                style_probs=dict(zip(STYLES, map(float, s))),
                action_params=dict(zip(ACTION_PARAMS, map(float, a))),
                expression=x,
                attention=m,
            )
            for e, s, a, x, m in zip(
                emotion_probs,
                style_probs,
                outputs["action_params"],
                outputs.get("expression", missing),
                outputs.get("attention", missing),
            )
        ]
