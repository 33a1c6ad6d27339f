"""ResNet units: the basic and bottleneck blocks (He et al. 2016) and the pre-activation basic block
(He et al., "Identity Mappings", 2016), which with ``dropout`` is the wide ResNet block
(Zagoruyko & Komodakis 2016) and with ``se_reduction`` the SE-ResNet block (Hu et al. 2018)."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.blocks.attention import SqueezeExcite
from convzoo.blocks.conv import Conv, ConvNormAct
from convzoo.blocks.residual import make_shortcut
from convzoo.layers import LayerSpec, make_act, make_norm
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["BasicBlock", "Bottleneck", "PreActBasicBlock", "squeeze_excite_or_none"]


def squeeze_excite_or_none(channels: int, reduction: int | None) -> SqueezeExcite | None:
    """A squeeze-excite gate on ``channels`` when a reduction is given (blocks' ``se_reduction``)."""
    return None if reduction is None else SqueezeExcite(channels, reduction=reduction)


def _no_skipless(kind: str) -> None:
    if kind == "none":
        raise ConfigError("shortcut='none' would leave a residual block without its skip; use projection or zero_pad.")


class _PostActivationUnit(nn.Module):
    """What the basic and bottleneck blocks share: ``act(se(branch) + skip)``."""

    se: SqueezeExcite | None
    shortcut: nn.Module | None
    act: nn.Module

    def _merge(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if self.se is not None:
            out = self.se(out)
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(out + skip)


@BLOCKS.register("basic")
class BasicBlock(_PostActivationUnit):
    """``act(conv_norm(conv_norm_act(x)) + shortcut(x))``: two 3x3 convs, the first with the stride.

    Where the block changes the shape the skip is a ``projection`` (1x1 conv + norm, option B)
    or ``zero_pad`` (option A, no parameters); elsewhere it is the identity. ``se_reduction``
    adds a squeeze-excite gate on the residual branch.

    Examples:
        >>> block = BasicBlock(16, 32, stride=2, shortcut="zero_pad")
        >>> block(torch.randn(1, 16, 8, 8)).shape, sum(p.numel() for p in block.parameters())
        (torch.Size([1, 32, 4, 4]), 13952)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        stride: int = 1,
        shortcut: str = "projection",
        norm: LayerSpec = "batchnorm",
        act: LayerSpec = "relu",
        se_reduction: int | None = None,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        _no_skipless(shortcut)
        self.conv1 = ConvNormAct(in_channels, out_channels, 3, stride, norm=norm, act=act)
        self.conv2 = ConvNormAct(out_channels, out_channels, 3, norm=norm, act=None)
        self.se = squeeze_excite_or_none(out_channels, se_reduction)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm)
        self.act = make_act(act)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``act(se(conv2(conv1(x))) + shortcut(x))``."""
        return self._merge(x, self.conv2(self.conv1(x)))


@BLOCKS.register("bottleneck")
class Bottleneck(_PostActivationUnit):
    """``act(conv_norm(1x1) . conv_norm_act(3x3, stride) . conv_norm_act(1x1)(x) + shortcut(x))``.

    The 1x1 convs narrow to ``out_channels // expansion`` channels and widen back; the stride
    sits on the 3x3 conv (as torchvision's ResNet v1.5); ``groups`` > 1 makes it a ResNeXt block.

    Examples:
        >>> block = Bottleneck(64, 256)
        >>> block(torch.randn(1, 64, 8, 8)).shape, block.conv2.conv.in_channels
        (torch.Size([1, 256, 8, 8]), 64)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        stride: int = 1,
        expansion: int = 4,
        groups: int = 1,
        shortcut: str = "projection",
        norm: LayerSpec = "batchnorm",
        act: LayerSpec = "relu",
        se_reduction: int | None = None,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        _no_skipless(shortcut)
        if expansion < 1 or out_channels % expansion:
            raise ConfigError(f"bottleneck: expansion={expansion} must divide out_channels={out_channels}.")
        mid = out_channels // expansion
        self.conv1 = ConvNormAct(in_channels, mid, 1, norm=norm, act=act)
        self.conv2 = ConvNormAct(mid, mid, 3, stride, groups=groups, norm=norm, act=act)
        self.conv3 = ConvNormAct(mid, out_channels, 1, norm=norm, act=None)
        self.se = squeeze_excite_or_none(out_channels, se_reduction)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm)
        self.act = make_act(act)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``act(se(conv3(conv2(conv1(x)))) + shortcut(x))``."""
        return self._merge(x, self.conv3(self.conv2(self.conv1(x))))


@BLOCKS.register("preact_basic", "wide_basic")
class PreActBasicBlock(nn.Module):
    """Pre-activation basic block: ``conv(dropout(act(norm(conv(act(norm(x)))))) + shortcut``.

    Where the shape changes the skip starts from the pre-activated input (a 1x1 conv, no norm,
    for ``projection``); elsewhere it is the input itself. ``dropout`` between the convs makes it
    the wide ResNet block; ``se_reduction`` gates the residual branch (SE-ResNet).

    Examples:
        >>> block = PreActBasicBlock(16, 32, stride=2, dropout=0.3)
        >>> block(torch.randn(2, 16, 8, 8)).shape, type(block.shortcut).__name__
        (torch.Size([2, 32, 4, 4]), 'ConvNormAct')
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        stride: int = 1,
        dropout: float = 0.0,
        shortcut: str = "projection",
        norm: LayerSpec = "batchnorm",
        act: LayerSpec = "relu",
        se_reduction: int | None = None,
    ):
        super().__init__()
        out_channels = out_channels or in_channels
        _no_skipless(shortcut)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}.")
        self.norm1, self.act1 = make_norm(norm, in_channels), make_act(act)
        self.conv1 = Conv(in_channels, out_channels, 3, stride, bias=False)
        self.norm2, self.act2 = make_norm(norm, out_channels), make_act(act)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.conv2 = Conv(out_channels, out_channels, 3, bias=False)
        self.se = squeeze_excite_or_none(out_channels, se_reduction)
        self.shortcut = make_shortcut(shortcut, in_channels, out_channels, stride, norm=None)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``se(conv2(dropout(act(norm(conv1(pre)))))) + skip``, ``pre = act(norm(x))``; the projection shortcut reads ``pre``."""
        pre = self.act1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv2(self.dropout(self.act2(self.norm2(self.conv1(pre)))))
        if self.se is not None:
            out = self.se(out)
        return out + skip
