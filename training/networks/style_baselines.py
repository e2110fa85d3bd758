"""Baselines for the style mapper (issue 6): one plain conditional generator, trained two ways.

`ConcatStyleGenerator` has the style mapper's convolutions at the same widths (Conv1, Conv2, the residual blocks,
the two upconvs and Conv1's skip), but none of what seed 003 adds: no disentangled latent, no AdaIN (the target
style is one-hot planes concatenated to the bottleneck features, as StarGAN conditions), no self-attention.
training/train_style_mapper.py trains it
  - as a **plain autoencoder**: paired L1 to the ground-truth rendering only;
  - as a **CycleGAN-style mapper**: unpaired, adversarial + cycle consistency + identity (CycleGAN's losses, with
    StarGAN's single conditional generator for the four styles), never shown the ground-truth pair.
So "style mapper vs autoencoder" isolates what the disentanglement, AdaIN, attention and the extra losses buy on the
same data and budget, and "vs CycleGAN-style" what paired ground truth buys.

Baselines are not served: they are evaluated in torch (training/evaluate_mapping.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from facecast.vocab import STYLES
from training.networks.style_mapper import ResBlock, conv_block, style_weights


@dataclass(frozen=True)
class BaselineConfig:
    image_size: int
    conv1_channels: int
    conv2_channels: int
    res_blocks: int  # the mapper's encoder + decoder blocks, so the depth matches


BASELINE_CPU = BaselineConfig(image_size=128, conv1_channels=32, conv2_channels=64, res_blocks=6)


class ConcatStyleGenerator(nn.Module):
    def __init__(self, config: BaselineConfig = BASELINE_CPU):
        super().__init__()
        self.config = config
        c1, c2 = config.conv1_channels, config.conv2_channels
        self.conv1 = conv_block(3, c1, 7, 2)
        self.conv2 = conv_block(c1, c2, 4, 2)
        self.merge_style = conv_block(c2 + len(STYLES), c2, 3, 1)
        self.res_blocks = nn.Sequential(*(ResBlock(c2) for _ in range(config.res_blocks)))
        self.upconv1 = nn.Sequential(nn.ConvTranspose2d(c2, c1, 4, 2, 1), nn.InstanceNorm2d(c1), nn.LeakyReLU(0.2))
        self.fuse_skip = conv_block(2 * c1, c1, 3, 1)
        self.upconv2 = nn.Conv2d(c1, 3, 7, padding=3)

    def forward(self, images: torch.Tensor, target_style: torch.Tensor) -> torch.Tensor:
        """images: float [B, 3, S, S] in [0, 1]; target_style: [B, 4] weights → float [B, 3, S, S] in [0, 1]."""
        skip = self.conv1(images * 2 - 1)
        x = self.conv2(skip)
        planes = style_weights(target_style)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
        x = self.res_blocks(self.merge_style(torch.cat([x, planes], dim=1)))
        x = self.fuse_skip(torch.cat([self.upconv1(x), skip], dim=1))
        return (torch.tanh(self.upconv2(F.interpolate(x, scale_factor=2.0, mode="nearest"))) + 1) / 2
