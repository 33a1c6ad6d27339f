"""Pooling and the classifier head."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.layers import make_pool
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["Pool", "Classifier"]


@BLOCKS.register("pool")
class Pool(nn.Module):
    """Max or average pooling (``pool``) over ``pool_size`` windows (stride defaults to the window).

    Examples:
        >>> Pool(16, pool="max", pool_size=2)(torch.randn(1, 16, 32, 32)).shape
        torch.Size([1, 16, 16, 16])
    """

    def __init__(self, in_channels: int, pool: str = "max", pool_size: int = 2, stride: int | None = None,
                 padding: int = 0):
        super().__init__()
        self.pool = make_pool(pool, pool_size, stride=stride, padding=padding)
        self.in_channels = self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled map."""
        return self.pool(x)


@BLOCKS.register("classifier", "head")
class Classifier(nn.Module):
    """Global pooling (``pool``: avg or max) -> dropout -> linear layer, giving ``(batch, num_classes)`` logits.

    ``scale`` multiplies the logits (airbench scales by 1/9 to tame the initial loss).

    Examples:
        >>> head = Classifier(256, num_classes=10, dropout=0.1)
        >>> head(torch.randn(4, 256, 8, 8)).shape, head.out_channels
        (torch.Size([4, 10]), 10)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        pool: str = "avg",
        dropout: float = 0.0,
        bias: bool = True,
        scale: float = 1.0,
    ):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}.")
        self.pool = make_pool(pool)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes, bias=bias)
        self.scale = scale
        self.in_channels = in_channels
        self.out_channels = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_classes)`` logits, times ``scale``."""
        x = self.dropout(self.pool(x).flatten(1))
        return self.fc(x) * self.scale
