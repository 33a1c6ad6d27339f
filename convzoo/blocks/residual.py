"""The residual wrapper: ``shortcut(x) + block(x)``."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.layers import LayerSpec
from convzoo.ops.norm_act import add_to_block
from convzoo.registry import ConfigError, suggest

__all__ = ["Residual", "SHORTCUTS", "make_shortcut"]


class Residual(nn.Module):
    """``x + block(x)``, or ``shortcut(x) + block(x)`` when a shortcut module is given.

    In a model spec, ``residual: true`` wraps each copy of a layer's block with the identity skip;
    ``residual: {block: ...}`` (or a list of blocks) gives the skip path its own blocks, built
    where the block changes the shape (a ResNet projection shortcut) and the identity elsewhere.
    Without a shortcut the parameter names are those of the wrapped block under ``block.``. A block
    that is a ``FusingSequential`` (``ConvNormAct``) gets the skip, so that a last BatchNorm (+
    activation) running fused in CPU training adds it in its own pass (``convzoo.ops.norm_act``).

    Examples:
        >>> from convzoo.blocks.conv import ConvNormAct
        >>> block = Residual(ConvNormAct(8, 8))
        >>> block(torch.randn(1, 8, 4, 4)).shape, block.out_channels
        (torch.Size([1, 8, 4, 4]), 8)
        >>> down = Residual(ConvNormAct(8, 16, stride=2), shortcut=ConvNormAct(8, 16, 1, stride=2, act=None))
        >>> down(torch.randn(1, 8, 4, 4)).shape
        torch.Size([1, 16, 2, 2])
    """

    def __init__(self, block: nn.Module, shortcut: nn.Module | None = None):
        super().__init__()
        self.block = block
        self.shortcut = shortcut
        self.out_channels = getattr(block, "out_channels", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``shortcut(x) + block(x)`` (the identity when there is no shortcut module)."""
        if not torch.jit.is_scripting():
            return self._forward_fusing(x)
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + self.block(x)

    @torch.jit.unused
    def _forward_fusing(self, x: torch.Tensor) -> torch.Tensor:
        """The add joins the block's last BatchNorm (+ activation) where that runs fused (CPU training)."""
        return add_to_block(self.block, x, x if self.shortcut is None else self.shortcut(x))


SHORTCUTS = ("projection", "zero_pad", "none")


def make_shortcut(kind: str, in_channels: int, out_channels: int, stride: int, norm: LayerSpec) -> nn.Module | None:
    """The skip path of a residual block where its shape changes; ``None`` means the identity.

    ``projection``: a bias-free 1x1 conv with the block's stride, then ``norm`` (He et al.'s option B;
    ``norm: none`` gives the bare conv of pre-activation nets); ``zero_pad``: the parameter-free
    option A ([`ZeroPadShortcut`][convzoo.blocks.merge.ZeroPadShortcut]). Where the shape is kept, every kind
    is the identity. ``none`` is for blocks that drop the skip where the shape changes; they
    check for it themselves.

    Examples:
        >>> projection = make_shortcut("projection", 16, 32, 2, "batchnorm")
        >>> projection.conv, type(projection.norm).__name__
        (Conv(16, 32, kernel_size=(1, 1), stride=(2, 2), bias=False), 'BatchNorm2d')
        >>> make_shortcut("zero_pad", 16, 16, 1, None) is None
        True
    """
    from convzoo.blocks.conv import ConvNormAct
    from convzoo.blocks.merge import ZeroPadShortcut

    if kind not in SHORTCUTS:
        raise ConfigError(f"shortcut={kind!r} is not known; use one of {', '.join(SHORTCUTS)}.{suggest(kind, SHORTCUTS)}")
    if in_channels == out_channels and stride == 1:
        return None
    if kind == "zero_pad":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    return ConvNormAct(in_channels, out_channels, 1, stride, padding=0, bias=False, norm=norm, act=None)
