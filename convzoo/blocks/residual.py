"""The residual wrapper: ``shortcut(x) + block(x)``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Residual"]


class Residual(nn.Module):
    """``x + block(x)``, or ``shortcut(x) + block(x)`` when a shortcut module is given.

    In a model spec, ``residual: true`` wraps each copy of a layer's block with the identity skip;
    ``residual: {block: ...}`` (or a list of blocks) gives the skip path its own blocks, built
    where the block changes the shape (a ResNet projection shortcut) and the identity elsewhere.
    Without a shortcut the parameter names are those of the wrapped block under ``block.``.

    Example:
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
        skip = x if self.shortcut is None else self.shortcut(x)
        return skip + self.block(x)
