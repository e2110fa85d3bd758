"""expression_encoder: face crop → expression vector, emotion and style logits, action parameters, attention map.

After seed 000 §3.2 and seed 003 §3.1:
  multi-scale stem (3/5/7 kernels) → adaptive (batch-instance) normalisation → residual stages with
  squeeze-and-excitation → spatial attention pooling over facial regions → heads.

The style head reads the pooled features directly, while emotion and action parameters read the 256-d expression
vector, so that vector is pushed to carry expression rather than style: the engagement model and the library
consume it as a style-independent description of the expression.

Normalisation of raw pixels happens inside `forward` (and the serving wrapper adds the uint8 NHWC → float NCHW
step), so Triton clients send raw RGB pixels and never need model constants (docs/architecture.md, serving contract).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from facecast.vocab import ACTION_PARAMS, EMOTIONS, STYLES
from training.networks.layers import (
    BasicSEBlock,
    BottleneckSEBlock,
    MultiScaleStem,
    SpatialAttentionPool,
)
from training.networks.registry import register_network
from training.networks.serving import SquareImageServing

EXPRESSION_DIM = 256


@dataclass(frozen=True)
class ExpressionEncoderConfig:
    image_size: int  # S in the serving contract: input `image` is UINT8 [-1, S, S, 3]
    stem_channels: int
    stem_kernels: tuple[int, ...]
    stem_stride: int
    stem_pool: bool  # a 3×3 max-pool after the stem (ResNet does; small inputs cannot afford it)
    stage_channels: tuple[int, ...]
    stage_blocks: tuple[int, ...]
    stage_strides: tuple[int, ...]
    block: str  # "basic" or "bottleneck"
    se_reduction: int = 8
    dropout: float = 0.2
    triton_name: str = "expression_encoder"

    @property
    def attention_size(self) -> int:
        size = self.image_size // self.stem_stride // (2 if self.stem_pool else 1)
        for stride in self.stage_strides:
            size //= stride
        return size


# The CPU default: 64-px crops, ~0.1 GFLOP per image, trains in minutes on 2 cores and serves at hundreds of
# images per second from ONNX Runtime. Widths were chosen by the training budget (issue 2: ≤ 15 min).
CPU = ExpressionEncoderConfig(
    image_size=64,
    stem_channels=24,
    stem_kernels=(3, 5, 7),
    stem_stride=2,
    stem_pool=False,
    stage_channels=(32, 64, 128),
    stage_blocks=(1, 2, 2),
    stage_strides=(1, 2, 2),
    block="basic",
)

# Seed-sized: ResNet-50 depth ([3, 4, 6, 3] bottleneck stages) at 224 px with SE, for the TensorRT flavour.
GPU = ExpressionEncoderConfig(
    image_size=224,
    stem_channels=64,
    stem_kernels=(3, 7, 11),
    stem_stride=2,
    stem_pool=True,
    stage_channels=(64, 128, 256, 512),
    stage_blocks=(3, 4, 6, 3),
    stage_strides=(1, 2, 2, 2),
    block="bottleneck",
    se_reduction=16,
)

_BLOCKS = {"basic": BasicSEBlock, "bottleneck": BottleneckSEBlock}


class ExpressionEncoder(SquareImageServing, nn.Module):
    OUTPUT_NAMES = ("emotion_logits", "style_logits", "expression", "action_params", "attention")

    def __init__(self, config: ExpressionEncoderConfig):
        super().__init__()
        self.config = config
        # Pixel statistics are fixed, not learned from data, so a client never needs them: [0, 1] → about [-2, 2].
        self.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)

        stem = [MultiScaleStem(config.stem_channels, config.stem_kernels, config.stem_stride)]
        if config.stem_pool:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)

        block_type = _BLOCKS[config.block]
        stages, in_channels = [], config.stem_channels
        for channels, blocks, stride in zip(config.stage_channels, config.stage_blocks, config.stage_strides):
            layers = []
            for index in range(blocks):
                layers.append(block_type(in_channels, channels, stride if index == 0 else 1, config.se_reduction))
                in_channels = channels * block_type.expansion
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)

        self.attention_pool = SpatialAttentionPool(in_channels)
        pooled_dim = 2 * in_channels  # attention-pooled ⊕ average-pooled
        self.to_expression = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(pooled_dim, EXPRESSION_DIM), nn.LayerNorm(EXPRESSION_DIM)
        )
        self.emotion_head = nn.Linear(EXPRESSION_DIM, len(EMOTIONS))
        self.action_head = nn.Linear(EXPRESSION_DIM, len(ACTION_PARAMS))
        self.style_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(pooled_dim, len(STYLES)))

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images: float [B, 3, S, S] in [0, 1] → (pooled features, expression vector, attention map): what the
        heads read; the style mapper's perceptual loss compares the first two (training/train_style_mapper.py)."""
        features = self.stages(self.stem((images - self.pixel_mean) / self.pixel_std))
        attended, attention = self.attention_pool(features)
        pooled = torch.cat([attended, features.mean(dim=(2, 3))], dim=1)
        return pooled, self.to_expression(pooled), attention

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: float [B, 3, S, S] in [0, 1]."""
        pooled, expression, attention = self.embed(images)
        return {
            "emotion_logits": self.emotion_head(expression),
            "style_logits": self.style_head(pooled),
            "expression": expression,
            "action_params": torch.sigmoid(self.action_head(expression)),
            "attention": attention,
        }

    def serving_signature(self) -> dict:
        """Triton inputs and outputs (names, dtypes, dims without the batch axis): the serving contract."""
        size, attention = self.config.image_size, self.config.attention_size
        return {
            "inputs": [("image", "UINT8", [size, size, 3])],
            "outputs": [
                ("emotion_logits", "FP32", [len(EMOTIONS)]),
                ("style_logits", "FP32", [len(STYLES)]),
                ("expression", "FP32", [EXPRESSION_DIM]),
                ("action_params", "FP32", [len(ACTION_PARAMS)]),
                ("attention", "FP32", [attention, attention]),
            ],
        }


def _build(config: ExpressionEncoderConfig) -> ExpressionEncoder:
    return ExpressionEncoder(config)


register_network("expression_encoder-cpu", CPU, _build)
register_network("expression_encoder-gpu", GPU, _build)
