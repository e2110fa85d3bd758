"""Cross-style mapping through Triton's `style_mapper`: faces, target styles and parameter overrides in, the mapped
faces and what the model read and drew out. The feature around it (input checks, finding the face, clamp notices,
saving into the library) is facecast.mapping.

Serving contract (batch axis first): inputs image UINT8 [S, S, 3], target_style FP32 [4] (one weight per style of
facecast.vocab.STYLES: one-hot picks a style, weights in between blend styles and their bounds), params FP32 [4],
params_mask FP32 [4] (1 = use params[i], 0 = keep the source's own value); outputs mapped UINT8 [S, S, 3],
applied_params FP32 [4], source_params FP32 [4], source_style_logits FP32 [4], emotion_logits FP32 [7].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facecast.clients._common import expect_client, softmax, square_input_size
from facecast.serving.client import TritonModelClient
from facecast.vocab import STYLE_MAPPER


@dataclass(frozen=True)
class MappedFaces:
    """The model's outputs for N rows (arrays, row order of the request)."""

    mapped: np.ndarray = field(repr=False)  # uint8 [N, S, S, 3]
    applied_params: np.ndarray  # float32 [N, 4]: what was drawn, inside the target style's bounds
    source_params: np.ndarray  # float32 [N, 4]: what the model read from the source face
    source_style_probs: np.ndarray  # float64 [N, 4]
    emotion_probs: np.ndarray  # float64 [N, 7]


class StyleMapperClient:
    """Batched requests to the served style_mapper; the input size comes from its Triton config."""

    def __init__(self, client: TritonModelClient):
        expect_client(client, STYLE_MAPPER, "StyleMapperClient")
        self.client = client

    @classmethod
    def for_urls(cls, urls: str | list[str]) -> StyleMapperClient:
        return cls(TritonModelClient(STYLE_MAPPER, urls))

    @property
    def input_size(self) -> int:
        """S of the served model's image input [S, S, 3]."""
        return square_input_size(self.client)

    def map(
        self, faces: np.ndarray, target_styles: np.ndarray, params: np.ndarray, params_mask: np.ndarray
    ) -> MappedFaces:
        """faces uint8 [N, S, S, 3]; target_styles, params, params_mask float32 [N, 4]."""
        outputs = self.client.infer(
            {
                "image": faces,
                "target_style": np.asarray(target_styles, np.float32),
                "params": np.asarray(params, np.float32),
                "params_mask": np.asarray(params_mask, np.float32),
            }
        )
        return MappedFaces(
            mapped=outputs["mapped"],
            applied_params=outputs["applied_params"],
            source_params=outputs["source_params"],
            source_style_probs=softmax(outputs["source_style_logits"].astype(np.float64)),
            emotion_probs=softmax(outputs["emotion_logits"].astype(np.float64)),
        )
