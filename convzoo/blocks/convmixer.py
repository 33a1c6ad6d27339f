"""ConvMixer (Trockman & Kolter, "Patches Are All You Need?", 2022)."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.blocks.conv import ConvNormAct
from convzoo.blocks.residual import Residual
from convzoo.layers import LayerSpec
from convzoo.registry import BLOCKS

__all__ = ["PatchEmbed", "ConvMixerBlock"]


@BLOCKS.register("patch_embed")
class PatchEmbed(ConvNormAct):
    """Patch embedding: a conv with kernel = stride = ``patch_size`` -> activation -> norm.

    Examples:
        >>> stem = PatchEmbed(3, 256, patch_size=2)
        >>> stem(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 256, 16, 16])
    """

    def __init__(self, in_channels: int, out_channels: int, patch_size: int = 7, act: LayerSpec = "gelu", norm: LayerSpec = "batchnorm"):
        super().__init__(
            in_channels, out_channels, kernel_size=patch_size, stride=patch_size, padding=0,
            norm=norm, act=act, order="conv_act_norm",
        )


@BLOCKS.register("convmixer")
class ConvMixerBlock(nn.Module):
    """One ConvMixer layer: residual(depthwise ``k x k`` -> act -> norm), then pointwise 1x1 -> act -> norm.

    The depthwise conv mixes space (``groups = channels``, "same" padding), the pointwise conv
    mixes channels; every conv keeps its bias because the activation, not a norm, follows it.

    Examples:
        >>> block = ConvMixerBlock(256, kernel_size=5)
        >>> block(torch.randn(1, 256, 16, 16)).shape, sum(p.numel() for p in block.parameters())
        (torch.Size([1, 256, 16, 16]), 73472)
    """

    def __init__(self, in_channels: int, kernel_size: int = 9, act: LayerSpec = "gelu", norm: LayerSpec = "batchnorm"):
        super().__init__()
        dim = in_channels
        self.depthwise = Residual(
            ConvNormAct(dim, dim, kernel_size, padding="same", groups=dim, norm=norm, act=act, order="conv_act_norm")
        )
        self.pointwise = ConvNormAct(dim, dim, 1, norm=norm, act=act, order="conv_act_norm")
        self.in_channels = self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pointwise step applied to the depthwise (residual) step's output."""
        return self.pointwise(self.depthwise(x))
