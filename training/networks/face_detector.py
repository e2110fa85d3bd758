"""face_detector: a full frame → boxes and scores of the faces in it (stylized and realistic characters).

CenterNet-style ("objects as points"): the network predicts, on a grid at stride 4, a heatmap of face centres, the
face's size (log width and height, in grid cells) and the sub-cell offset of the centre. Log sizes make a 10-px
face and a 150-px face equally easy to regress, which is what a scene with faces from 6 % to 70 % of the frame
needs. Backbone: a stride-4 stem and four residual SE stages (layers.BasicSEBlock) at strides 4, 8, 16, 32; neck: a
light feature pyramid whose top-down path ends at stride 4, where small faces still cover a few cells.

Decoding happens inside the served module, so Triton returns boxes: a 3×3 max-pool keeps only local maxima of the
heatmap (the usual NMS-free CenterNet peak filter), the K best peaks are taken with top-K, and their offsets and
sizes are gathered into boxes normalised to [0, 1] of the input image; slots below SCORE_FLOOR are zero. Raw uint8
pixels in, normalisation inside.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.networks.layers import BasicSEBlock
from training.networks.registry import register_network

MAX_DETECTIONS = 32  # K in the serving contract
STRIDE = 4  # output grid stride in input pixels
# Peaks below this score are returned as empty slots (box 0, score 0). They are never faces, and ranking them
# would make the served order of near-equal background scores (1e-7 apart) differ between torch and ONNX Runtime.
SCORE_FLOOR = 0.05
# Heatmap bias at init: sigmoid(-4.6) ≈ 0.01, the focal-loss prior (almost every cell is background).
_HEATMAP_PRIOR = -math.log((1 - 0.01) / 0.01)


@dataclass(frozen=True)
class FaceDetectorConfig:
    input_height: int  # the served `image` is UINT8 [input_height, input_width, 3]; clients letterbox into it
    input_width: int
    stem_channels: tuple[int, int]  # two stride-2 convolutions → stride 4
    stage_channels: tuple[int, int, int, int]  # stages at strides 4, 8, 16, 32
    stage_blocks: tuple[int, int, int, int]
    neck_channels: int
    se_reduction: int = 4
    max_detections: int = MAX_DETECTIONS
    triton_name: str = "face_detector"

    @property
    def grid(self) -> tuple[int, int]:
        return self.input_height // STRIDE, self.input_width // STRIDE


# CPU default: 16:9 frames letterboxed into 192×320 (a 720p frame becomes 320×180 plus 6-px bars), ~0.2 GMAC per
# frame; sized so a 30-s clip sampled at 4-8 fps is detected in well under a second on 2 cores (ONNX Runtime).
# The stride-4 stage has no residual block (stage_blocks[0] = 0): at 3840 cells it cost a third of the time, and
# the top-down path brings the context small faces need (measured: 3.6 → 2.7 ms per frame, 1 thread, batch 8).
CPU = FaceDetectorConfig(
    input_height=192,
    input_width=320,
    stem_channels=(16, 32),
    stage_channels=(32, 48, 80, 128),
    stage_blocks=(0, 1, 2, 1),
    neck_channels=32,
)

# Seed-sized for the GPU flavour: twice the resolution and ~3× the width.
GPU = FaceDetectorConfig(
    input_height=384,
    input_width=640,
    stem_channels=(32, 64),
    stage_channels=(64, 128, 256, 512),
    stage_blocks=(2, 2, 3, 2),
    neck_channels=96,
    se_reduction=8,
)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FaceDetector(nn.Module):
    OUTPUT_NAMES = ("heatmap_logits", "size", "offset")

    def __init__(self, config: FaceDetectorConfig):
        super().__init__()
        self.config = config
        # Fixed pixel statistics (as in expression_encoder): clients send raw RGB and never need model constants.
        self.register_buffer("pixel_mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        c0, c1 = config.stem_channels
        self.stem = nn.Sequential(_conv_bn_relu(3, c0, stride=2), _conv_bn_relu(c0, c1, stride=2))
        stages, in_channels = [], c1
        for index, (channels, blocks) in enumerate(zip(config.stage_channels, config.stage_blocks)):
            stride = 1 if index == 0 else 2
            layers = [
                BasicSEBlock(
                    in_channels if i == 0 else channels, channels, stride if i == 0 else 1, config.se_reduction
                )
                for i in range(blocks)
            ]
            stages.append(nn.Sequential(*layers))
            in_channels = channels
        if config.stage_blocks[0] == 0 and config.stage_channels[0] != c1:
            raise ValueError("a stride-4 stage without blocks must have the stem's width")
        self.stages = nn.ModuleList(stages)
        neck = config.neck_channels
        self.laterals = nn.ModuleList(nn.Conv2d(c, neck, 1) for c in config.stage_channels)
        self.smooth = _conv_bn_relu(neck, neck)
        # One 1×1 convolution for all three heads: 1 heatmap + 2 log sizes + 2 offsets.
        self.head = nn.Conv2d(neck, 5, 1)
        with torch.no_grad():
            self.head.bias.zero_()
            self.head.bias[0] = _HEATMAP_PRIOR
            self.head.bias[1:3] = math.log(4.0)  # a 16-px face: a neutral start between tiny and huge

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images: float [B, 3, H, W] in [0, 1] (H, W multiples of 32). Outputs on the stride-4 grid."""
        features = self.stem((images - self.pixel_mean) / self.pixel_std)
        pyramid = []
        for stage in self.stages:
            features = stage(features)
            pyramid.append(features)
        merged = self.laterals[-1](pyramid[-1])
        for lateral, level in zip(reversed(self.laterals[:-1]), reversed(pyramid[:-1])):
            merged = lateral(level) + F.interpolate(merged, size=level.shape[-2:], mode="nearest")
        out = self.head(self.smooth(merged))
        return {"heatmap_logits": out[:, :1], "size": out[:, 1:3], "offset": torch.sigmoid(out[:, 3:5])}

    def serving_module(self) -> nn.Module:
        return FaceDetectorServing(self)

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        return (torch.rand(batch, 3, self.config.input_height, self.config.input_width),)

    def serving_signature(self) -> dict:
        k = self.config.max_detections
        return {
            "inputs": [("image", "UINT8", [self.config.input_height, self.config.input_width, 3])],
            "outputs": [("boxes", "FP32", [k, 4]), ("scores", "FP32", [k])],
        }


def decode_detections(
    outputs: dict[str, torch.Tensor], input_height: int, input_width: int, max_detections: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-forward outputs → (boxes [B, K, 4] xyxy normalised to [0, 1] of the input, scores [B, K] descending).

    Shared by the served module and the evaluation, so what is measured is what Triton returns."""
    heat = torch.sigmoid(outputs["heatmap_logits"].float())
    batch, _, height, width = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).to(heat.dtype)
    scores, indices = torch.topk(peaks.flatten(1), max_detections, dim=1)
    ys = torch.div(indices, width, rounding_mode="floor").to(heat.dtype)
    xs = (indices - torch.div(indices, width, rounding_mode="floor") * width).to(heat.dtype)
    gather = indices.unsqueeze(1).expand(-1, 2, -1)
    size = torch.exp(torch.gather(outputs["size"].float().flatten(2), 2, gather)) * STRIDE  # [B, 2, K] pixels
    offset = torch.gather(outputs["offset"].float().flatten(2), 2, gather)
    cx = (xs + offset[:, 0]) * STRIDE
    cy = (ys + offset[:, 1]) * STRIDE
    half_w, half_h = size[:, 0] / 2, size[:, 1] / 2
    scale = torch.tensor([input_width, input_height, input_width, input_height], dtype=heat.dtype)
    boxes = (torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=2) / scale).clamp(0.0, 1.0)
    real = (scores >= SCORE_FLOOR).to(heat.dtype)
    return boxes * real.unsqueeze(2), scores * real


class FaceDetectorServing(nn.Module):
    """What Triton serves: uint8 NHWC pixels → (boxes [B, K, 4], scores [B, K])."""

    def __init__(self, network: FaceDetector):
        super().__init__()
        self.network = network

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        floats = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        config = self.network.config
        return decode_detections(self.network(floats), config.input_height, config.input_width, config.max_detections)


def _build(config: FaceDetectorConfig) -> FaceDetector:
    return FaceDetector(config)


register_network("face_detector-cpu", CPU, _build)
register_network("face_detector-gpu", GPU, _build)
