"""Depthwise-separable convolution (MobileNet, Xception)."""

from __future__ import annotations

from torch import nn

from convzoo.blocks.conv import ConvNormAct
from convzoo.layers import LayerSpec
from convzoo.registry import BLOCKS

__all__ = ["SeparableConv"]


@BLOCKS.register("separable", "depthwise_separable")
class SeparableConv(nn.Sequential):
    """Depthwise ``k x k`` conv (``groups = in_channels``) followed by a pointwise ``1 x 1`` conv.

    ``norm`` and ``act`` follow both convs (MobileNet v1); ``act_between=False`` drops the
    activation after the depthwise conv (Xception). With neither norm nor activation it is a
    drop-in replacement for a plain conv at a fraction of the parameters: 3 -> 3 channels with
    ``k = 3`` costs 27 + 3 + 9 + 3 = 42 parameters instead of 81 + 3 = 84.

    Examples:
        >>> import torch
        >>> block = SeparableConv(3, 3, kernel_size=3, norm=None, act=None)
        >>> sum(p.numel() for p in block.parameters())
        42
        >>> block(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str | None = None,
        dilation: int = 1,
        bias: bool | None = None,
        norm: LayerSpec = None,
        act: LayerSpec = None,
        act_between: bool = True,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        self.depthwise = ConvNormAct(
            in_channels, in_channels, kernel_size, stride, padding, dilation,
            groups=in_channels, bias=bias, norm=norm, act=act if act_between else None,
        )
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, bias=bias, norm=norm, act=act)
        self.in_channels = in_channels
        self.out_channels = out_channels
