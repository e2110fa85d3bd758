"""Building blocks shared by facecast's networks (seed 000 §3.2, seed 003 §3.1)."""

from __future__ import annotations

import torch
from torch import nn


class AdaptiveNorm(nn.Module):
    """Batch-instance normalisation: a learned per-channel mix of batch norm and instance norm.

    Instance norm removes each image's own channel statistics, i.e. its palette and lighting; batch norm keeps them.
    Stylized characters differ wildly in palette (a yellow emoji, a blue alien, a dim scene) while the expression
    lives in shapes, so the network learns per channel how much of that per-image colour statistic to discard
    (seed 000 §3.2: "adaptive normalization ... wide variation in color palettes and lighting conditions").
    """

    def __init__(self, channels: int):
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(channels, affine=False)
        self.instance_norm = nn.InstanceNorm2d(channels, affine=False)
        self.mix_logit = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mix = torch.sigmoid(self.mix_logit)
        mixed = mix * self.batch_norm(x) + (1 - mix) * self.instance_norm(x)
        return mixed * self.weight + self.bias


class MultiScaleStem(nn.Module):
    """Parallel small and large kernels (seed 000 §3.2): 3×3 for eye and mouth detail, 7×7 for head shape."""

    def __init__(self, out_channels: int, kernel_sizes: tuple[int, ...], stride: int):
        super().__init__()
        per_branch = out_channels // len(kernel_sizes)
        widths = [per_branch] * (len(kernel_sizes) - 1) + [out_channels - per_branch * (len(kernel_sizes) - 1)]
        self.branches = nn.ModuleList(
            nn.Conv2d(3, width, k, stride=stride, padding=k // 2, bias=False) for k, width in zip(kernel_sizes, widths)
        )
        self.norm = AdaptiveNorm(out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(torch.cat([branch(x) for branch in self.branches], dim=1)))


class SqueezeExcitation(nn.Module):
    """Channel re-weighting from global context (seed 000 §3.2): lets a style's salient channels dominate."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(8, channels // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class _ResidualBlock(nn.Module):
    """relu(body(x) + shortcut(x)); subclasses build `body`, `shortcut` and `act`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class BasicSEBlock(_ResidualBlock):
    """Two 3×3 convolutions with SE and an identity shortcut (ResNet-18/34 style); used by the small configs."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, se_reduction: int):
        super().__init__()
        out_channels = channels * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcitation(out_channels, se_reduction),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)


class BottleneckSEBlock(_ResidualBlock):
    """1×1 → 3×3 → 1×1 with SE (ResNet-50 style, SE-ResNet); used by the seed-sized GPU configs."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int, se_reduction: int):
        super().__init__()
        out_channels = channels * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            SqueezeExcitation(out_channels, se_reduction),
        )
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU(inplace=True)


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
    )


class SpatialAttentionPool(nn.Module):
    """Attention over facial regions: a softmax map over positions that pools the feature map.

    The map is returned too: it shows which regions (eyes, mouth, brows) drove the prediction, and the app draws it.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Sequential(
            nn.Conv2d(channels, channels // 4, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // 4, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, _, height, width = features.shape
        attention = torch.softmax(self.score(features).flatten(1), dim=1)  # [B, H*W], sums to 1
        pooled = torch.bmm(features.flatten(2), attention.unsqueeze(2)).squeeze(2)  # [B, C]
        return pooled, attention.view(batch, height, width)
