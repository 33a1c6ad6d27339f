"""DenseNet-BC units (Huang et al. 2017): the bottleneck dense layer and the compressing transition."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.blocks.conv import ConvNormAct
from convzoo.layers import LayerSpec
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["DenseLayer", "DenseTransition"]


@BLOCKS.register("dense_layer")
class DenseLayer(nn.Module):
    """``cat([x, conv3x3(act(norm(conv1x1(act(norm(x))))))])``: adds ``growth_rate`` channels.

    The 1x1 bottleneck has ``bottleneck * growth_rate`` channels (DenseNet-B; ``bottleneck: 0``
    drops it, giving the original DenseNet layer); convs are bias-free, as in the paper.
    Repeating the layer builds a dense block: each copy reads everything before it.

    Examples:
        >>> layer = DenseLayer(24, growth_rate=12)
        >>> layer(torch.randn(2, 24, 8, 8)).shape, layer.out_channels
        (torch.Size([2, 36, 8, 8]), 36)
    """

    def __init__(
        self,
        in_channels: int,
        growth_rate: int = 12,
        bottleneck: int = 4,
        dropout: float = 0.0,
        norm: LayerSpec = "batchnorm",
        act: LayerSpec = "relu",
    ):
        super().__init__()
        if growth_rate < 1 or bottleneck < 0:
            raise ConfigError(f"dense_layer: growth_rate must be >= 1 and bottleneck >= 0, got {growth_rate}, {bottleneck}.")
        preact = {"norm": norm, "act": act, "order": "norm_act_conv", "bias": False}
        width = bottleneck * growth_rate
        self.bottleneck = ConvNormAct(in_channels, width, 1, **preact) if bottleneck else None
        self.conv = ConvNormAct(width or in_channels, growth_rate, 3, **preact)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.in_channels, self.out_channels = in_channels, in_channels + growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with ``growth_rate`` new channels appended."""
        new = x if self.bottleneck is None else self.bottleneck(x)
        return torch.cat([x, self.dropout(self.conv(new))], dim=1)


@BLOCKS.register("dense_transition")
class DenseTransition(nn.Sequential):
    """norm -> act -> 1x1 conv to ``floor(in_channels * compression)`` channels -> 2x2 average pool.

    Examples:
        >>> transition = DenseTransition(216, compression=0.5)
        >>> transition(torch.randn(1, 216, 32, 32)).shape
        torch.Size([1, 108, 16, 16])
    """

    def __init__(self, in_channels: int, compression: float = 0.5, norm: LayerSpec = "batchnorm", act: LayerSpec = "relu"):
        super().__init__()
        if not 0.0 < compression <= 1.0:
            raise ConfigError(f"dense_transition: compression must be in (0, 1], got {compression}.")
        out_channels = int(in_channels * compression)
        self.conv = ConvNormAct(in_channels, out_channels, 1, norm=norm, act=act, order="norm_act_conv", bias=False)
        self.pool = nn.AvgPool2d(2)
        self.in_channels, self.out_channels = in_channels, out_channels
