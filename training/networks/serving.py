"""What Triton serves for image networks: raw uint8 NHWC pixels in, named outputs out (docs/architecture.md, serving
contract).

Image networks train on float NCHW images in [0, 1]; `RawPixelServing` adds the uint8 → float and NHWC → NCHW
steps in front, so the exported graph does them and no client needs torch or model constants. Networks whose
input is one square image mix in `SquareImageServing` for the registry contract's `serving_module` and
`example_inputs` (training/networks/registry.py).
"""

from __future__ import annotations

import torch
from torch import nn


class RawPixelServing(nn.Module):
    """Wraps an image network whose forward takes float NCHW in [0, 1] and returns a dict; outputs in a fixed order."""

    def __init__(self, network: nn.Module, output_names: tuple[str, ...]):
        super().__init__()
        self.network = network
        self.output_names = output_names

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        floats = image.permute(0, 3, 1, 2).to(torch.float32) / 255.0
        outputs = self.network(floats)
        return tuple(outputs[name] for name in self.output_names)


class SquareImageServing:
    """Registry-contract methods for a network whose config has `image_size` and whose input is `image`."""

    def serving_module(self) -> nn.Module:
        return RawPixelServing(self, tuple(name for name, _, _ in self.serving_signature()["outputs"]))

    def example_inputs(self, batch: int) -> tuple[torch.Tensor, ...]:
        """Arguments of the training forward: float images in [0, 1]."""
        size = self.config.image_size
        return (torch.rand(batch, 3, size, size),)
