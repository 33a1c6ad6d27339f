"""Channel attention: squeeze-and-excitation (Hu et al., 2018)."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.layers import LayerSpec, make_act
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["SqueezeExcite"]


@BLOCKS.register("squeeze_excite", "se")
class SqueezeExcite(nn.Module):
    """Global average pool -> 1x1 conv down -> act -> 1x1 conv up -> gate, rescaling each channel.

    The bottleneck has ``rd_channels`` channels, by default ``in_channels // reduction`` (at least
    1); both 1x1 convs have a bias, as SENet's fully connected layers do. MobileNetV3/EfficientNet
    variants are ``gate: hardsigmoid`` and an ``rd_channels`` of their own.

    Examples:
        >>> se = SqueezeExcite(64, reduction=16)
        >>> se(torch.randn(2, 64, 8, 8)).shape, se.out_channels, sum(p.numel() for p in se.parameters())
        (torch.Size([2, 64, 8, 8]), 64, 580)
    """

    def __init__(
        self,
        in_channels: int,
        reduction: int = 16,
        rd_channels: int | None = None,
        act: LayerSpec = "relu",
        gate: LayerSpec = "sigmoid",
    ):
        super().__init__()
        if rd_channels is None:
            if reduction < 1:
                raise ConfigError(f"squeeze_excite reduction must be >= 1, got {reduction}.")
            rd_channels = max(1, in_channels // reduction)
        if rd_channels < 1:
            raise ConfigError(f"squeeze_excite rd_channels must be >= 1, got {rd_channels}.")
        self.fc1 = nn.Conv2d(in_channels, rd_channels, 1)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(rd_channels, in_channels, 1)
        self.gate = make_act(gate)
        self.in_channels = self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with each channel scaled by its gate, computed from the channel's mean."""
        scale = self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))
        return x * scale
