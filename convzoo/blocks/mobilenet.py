"""MobileNetV2's inverted residual (Sandler et al. 2018), optionally with squeeze-excite (MobileNetV3)."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.blocks.conv import ConvNormAct
from convzoo.blocks.residual import make_shortcut
from convzoo.blocks.resnet import squeeze_excite_or_none
from convzoo.layers import LayerSpec
from convzoo.ops.norm_act import add_to_block
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["InvertedResidual"]


@BLOCKS.register("inverted_residual", "mbconv")
class InvertedResidual(nn.Module):
    """1x1 expand (x ``expansion``) -> act -> depthwise k x k (stride) -> act -> [SE] -> 1x1 project (linear).

    A skip is added at stride 1: the identity when the channels are kept, else per ``shortcut``:
    ``none`` (the paper: no skip) or ``projection`` (1x1 conv + norm, the common CIFAR variant).
    ``expand_always`` keeps the 1x1 expansion conv even at ``expansion=1`` (as that CIFAR code
    does; the paper and torchvision drop it).

    Examples:
        >>> block = InvertedResidual(16, 24, stride=2, expansion=6)
        >>> block(torch.randn(1, 16, 16, 16)).shape, block.shortcut is None, block.has_skip
        (torch.Size([1, 24, 8, 8]), True, False)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        stride: int = 1,
        expansion: int = 6,
        kernel_size: int = 3,
        shortcut: str = "none",
        expand_always: bool = False,
        norm: LayerSpec = "batchnorm",
        act: LayerSpec = "relu6",
        se_reduction: int | None = None,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        if expansion < 1:
            raise ConfigError(f"inverted_residual: expansion must be >= 1, got {expansion}.")
        hidden = in_channels * expansion
        self.expand = (ConvNormAct(in_channels, hidden, 1, norm=norm, act=act)
                       if expansion != 1 or expand_always else None)
        self.depthwise = ConvNormAct(hidden, hidden, kernel_size, stride, groups=hidden, norm=norm, act=act)
        self.se = squeeze_excite_or_none(hidden, se_reduction)
        self.project = ConvNormAct(hidden, out_channels, 1, norm=norm, act=None)
        self.has_skip = stride == 1 and (in_channels == out_channels or shortcut != "none")
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm) if self.has_skip else None
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``project(se(depthwise(expand(x))))``, plus the skip when the block has one."""
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        if not self.has_skip:
            return self.project(out)
        skip = x if self.shortcut is None else self.shortcut(x)
        if not torch.jit.is_scripting():
            return self._project_adding(out, skip)
        return skip + self.project(out)

    @torch.jit.unused
    def _project_adding(self, out: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``skip + project(out)``, the add joining the projection's BatchNorm where that runs fused (CPU training)."""
        return add_to_block(self.project, out, skip)
