"""Retrieval embeddings through Triton: faces, texts and mixed queries → vectors in one 512-d space (torch-free).

Three served models (training/networks/embedders.py): `image_embedder` (face crop → embedding + emotion/style
logits), `text_embedder` (MiniLM token ids → embedding; tokenised here with facecast.tokenizer) and `query_fuser` (text
and image embeddings, emotion and style distributions, a presence flag per modality → one query vector). A fourth,
`text_query`, is the text_embedder and the query_fuser in one graph with a dynamic token axis: a text-only query is
one call, padded to its own length rather than 32 tokens. Every vector is L2-normalised, so inner product is cosine
similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from facecast.clients._common import expect_client, softmax
from facecast.serving.client import TritonModelClient
from facecast.tokenizer import MAX_TOKENS, QueryTextError, tokenize
from facecast.vocab import EMOTIONS, IMAGE_EMBEDDER, QUERY_FUSER, STYLES, TEXT_EMBEDDER, TEXT_QUERY

EMBEDDING_DIM = 512
EMBED_BATCH = 128
# One phrase per emotion / style: the text side of "what does this query ask for" (ranking's query distributions).
EMOTION_PROTOTYPES = {
    "happiness": "a happy face",
    "sadness": "a sad face",
    "anger": "an angry face",
    "surprise": "a surprised face",
    "fear": "a scared face",
    "disgust": "a disgusted face",
    "neutral": "a neutral expressionless face",
}
STYLE_PROTOTYPES = {
    "realistic": "a face in a realistic style",
    "cartoon": "a face in cartoon style",
    "anime": "a face in anime style",
    "stylized_3d": "a face rendered in stylized 3D",
}
# A label name, several names, or weights over a vocabulary (emotions or styles).
Distribution = str | Sequence[str] | Sequence[float] | np.ndarray
MODALITIES = ("text", "image", "emotion", "style")  # order of query_fuser's `present` input


class QueryError(ValueError):
    """A query that cannot be encoded (nothing given, wrong shapes or labels); the message says what to fix."""


class ImageEmbedder:
    def __init__(self, client: TritonModelClient):
        expect_client(client, IMAGE_EMBEDDER, "ImageEmbedder")
        self.client = client

    @property
    def face_size(self) -> int:
        return self.client.signature.inputs[0].dims[0]

    def embed(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """faces uint8 [N, S, S, 3] RGB → (embeddings float32 [N, 512], emotion_probs [N, 7], style_probs [N, 4])."""
        faces = np.asarray(faces)
        if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
            raise QueryError(
                f"faces must be uint8 [N, {self.face_size}, {self.face_size}, 3], "
                f"got {faces.dtype} {list(faces.shape)} (facecast.media.images.fit_square makes them)"
            )
        outputs = self.client.infer({"image": faces})
        return (
            outputs["embedding"].astype(np.float32),
            softmax(outputs["emotion_logits"]).astype(np.float32),
            softmax(outputs["style_logits"]).astype(np.float32),
        )


class TextEmbedder:
    def __init__(self, client: TritonModelClient):
        expect_client(client, TEXT_EMBEDDER, "TextEmbedder")
        self.client = client

    @property
    def max_tokens(self) -> int:
        return self.client.signature.inputs[0].dims[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        """texts → float32 [N, 512]. Empty texts raise QueryTextError; texts beyond the model's 32 tokens are
        truncated (a description longer than that adds nothing a 32-token prefix does not say)."""
        if isinstance(texts, str):
            texts = [texts]
        ids, mask = tokenize(list(texts), self.max_tokens)
        if len(ids) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        return self.client.infer({"input_ids": ids, "attention_mask": mask})["embedding"].astype(np.float32)


class TextQueryEncoder:
    """A text-only query in one served call (text_query): the query vector and the text embedding together."""

    def __init__(self, client: TritonModelClient):
        expect_client(client, TEXT_QUERY, "TextQueryEncoder")
        self.client = client

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts → (query vectors float32 [N, 512], text embeddings float32 [N, 512]). Token ids are padded to the
        longest text of the call (the model's token axis is dynamic), truncated at 32 tokens like text_embedder's."""
        if isinstance(texts, str):
            texts = [texts]
        ids, mask = tokenize(list(texts), MAX_TOKENS, pad_to_longest=True)
        if len(ids) == 0:
            empty = np.zeros((0, EMBEDDING_DIM), np.float32)
            return empty, empty
        outputs = self.client.infer({"input_ids": ids, "attention_mask": mask})
        return outputs["embedding"].astype(np.float32), outputs["text_embedding"].astype(np.float32)


def _distribution(value: Distribution, vocabulary: tuple[str, ...], kind: str) -> np.ndarray:
    """A label name, a list of names, or a vector over the vocabulary → float32 vector (non-negative, sums to 1)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        vector = np.zeros(len(vocabulary), np.float32)
        for name in value:
            key = name.strip().lower()
            if key not in vocabulary:
                raise QueryError(f"unknown {kind} {name!r}; choose from {', '.join(vocabulary)}")
            vector[vocabulary.index(key)] = 1.0
    else:
        vector = np.asarray(value, dtype=np.float32).reshape(-1)
        if vector.shape != (len(vocabulary),) or not np.isfinite(vector).all() or (vector < 0).any():
            raise QueryError(
                f"{kind} must be a name or {len(vocabulary)} non-negative weights over {', '.join(vocabulary)}"
            )
    total = float(vector.sum())
    if total <= 0:
        raise QueryError(f"{kind} weights are all zero; leave {kind} out instead")
    return vector / total


class QueryEncoder:
    """Any mix of text, a face image, an emotion and a style → one query vector in the image embedding space."""

    def __init__(self, text_embedder: TextEmbedder, image_embedder: ImageEmbedder, fuser: TritonModelClient):
        expect_client(fuser, QUERY_FUSER, "QueryEncoder")
        self.text_embedder = text_embedder
        self.image_embedder = image_embedder
        self.fuser = fuser

    def encode(
        self,
        text: str | None = None,
        image: np.ndarray | None = None,
        emotion: Distribution | None = None,
        style: Distribution | None = None,
    ) -> np.ndarray:
        """float32 [512]. `image`: one uint8 [S, S, 3] face; `emotion` / `style`: a name, a list of names, or a
        weight vector over facecast.vocab.EMOTIONS / STYLES. At least one of the four must be given."""
        if text is not None and not isinstance(text, str):
            raise QueryTextError(f"the text query must be a string, not {type(text).__name__}")
        if text is not None and not text.strip():
            raise QueryTextError("the text query is empty: describe the expression in a few words")
        if all(part is None for part in (text, image, emotion, style)):
            raise QueryError("an empty query: give a text, an image, an emotion or a style")
        present = np.zeros((1, len(MODALITIES)), np.float32)
        text_vector = np.zeros((1, EMBEDDING_DIM), np.float32)
        image_vector = np.zeros((1, EMBEDDING_DIM), np.float32)
        emotion_vector = np.zeros((1, len(EMOTIONS)), np.float32)
        style_vector = np.zeros((1, len(STYLES)), np.float32)
        if text is not None:
            text_vector[0] = self.text_embedder.embed([text])[0]
            present[0, 0] = 1
        if image is not None:
            face = np.asarray(image)
            if face.ndim != 3:
                raise QueryError(f"the image query must be one face uint8 [S, S, 3], got {list(face.shape)}")
            image_vector[0] = self.image_embedder.embed(face[None])[0][0]
            present[0, 1] = 1
        if emotion is not None:
            emotion_vector[0] = _distribution(emotion, EMOTIONS, "emotion")
            present[0, 2] = 1
        if style is not None:
            style_vector[0] = _distribution(style, STYLES, "style")
            present[0, 3] = 1
        outputs = self.fuser.infer(
            {
                "text_embedding": text_vector,
                "image_embedding": image_vector,
                "emotion": emotion_vector,
                "style": style_vector,
                "present": present,
            }
        )
        return outputs["embedding"][0].astype(np.float32)


@dataclass
class Embedders:
    """The served models the library needs: image_embedder (ingest, image queries), text_embedder and query_fuser,
    and text_query for text-only queries (None: those take the text_embedder and the query_fuser, two calls)."""

    image: ImageEmbedder
    text: TextEmbedder
    query: QueryEncoder
    text_query: TextQueryEncoder | None = None
    _prototypes: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @classmethod
    def for_urls(cls, urls: str | list[str]) -> Embedders:
        image = ImageEmbedder(TritonModelClient(IMAGE_EMBEDDER, urls))
        text = TextEmbedder(TritonModelClient(TEXT_EMBEDDER, urls))
        text_query = TextQueryEncoder(TritonModelClient(TEXT_QUERY, urls))
        return cls(image, text, QueryEncoder(text, image, TritonModelClient(QUERY_FUSER, urls)), text_query)

    def prototypes(self) -> tuple[np.ndarray, np.ndarray]:
        """Text embeddings of the emotion and style prototype phrases ([7, D], [4, D]), computed once."""
        if self._prototypes is None:
            vectors = self.text.embed([EMOTION_PROTOTYPES[e] for e in EMOTIONS] + [STYLE_PROTOTYPES[s] for s in STYLES])
            self._prototypes = (vectors[: len(EMOTIONS)], vectors[len(EMOTIONS) :])
        return self._prototypes

    def fuse(
        self,
        text_vector: np.ndarray | None,
        image_vector: np.ndarray | None,
        emotion: np.ndarray | None,
        style: np.ndarray | None,
    ) -> np.ndarray:
        """The query_fuser on vectors already computed. QueryEncoder.encode does the same from raw inputs, but the
        re-rank needs the text and image vectors too, and embedding them twice would double the query latency."""
        inputs = {
            "text_embedding": np.zeros((1, EMBEDDING_DIM), np.float32),
            "image_embedding": np.zeros((1, EMBEDDING_DIM), np.float32),
            "emotion": np.zeros((1, len(EMOTIONS)), np.float32),
            "style": np.zeros((1, len(STYLES)), np.float32),
            "present": np.zeros((1, 4), np.float32),
        }  # order of MODALITIES
        for slot, (name, value) in enumerate(
            (("text_embedding", text_vector), ("image_embedding", image_vector), ("emotion", emotion), ("style", style))
        ):
            if value is not None:
                inputs[name][0] = value
                inputs["present"][0, slot] = 1.0
        return self.query.fuser.infer(inputs)["embedding"][0].astype(np.float32)

    def embed_faces(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(faces) == 0:
            return (
                np.zeros((0, EMBEDDING_DIM), np.float32),
                np.zeros((0, len(EMOTIONS)), np.float32),
                np.zeros((0, len(STYLES)), np.float32),
            )
        parts = [self.image.embed(faces[i : i + EMBED_BATCH]) for i in range(0, len(faces), EMBED_BATCH)]
        return tuple(np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(3))  # type: ignore
