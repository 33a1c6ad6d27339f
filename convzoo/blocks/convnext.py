"""The ConvNeXt block (Liu et al. 2022)."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.blocks.conv import Conv
from convzoo.layers import LayerSpec, make_act
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["ConvNeXtBlock", "drop_path"]


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual branch of whole samples with probability ``rate``, rescale the rest."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


@BLOCKS.register("convnext")
class ConvNeXtBlock(nn.Module):
    """``x + drop_path(gamma * mlp(layernorm(depthwise_kxk(x))))``, the MLP widening by ``mlp_ratio``.

    The norm and the MLP run channels-last (``Linear`` layers on NHWC, as in the official code);
    ``gamma`` is a learned per-channel layer scale starting at ``layer_scale`` (0 or null: none).

    Examples:
        >>> block = ConvNeXtBlock(32)
        >>> block(torch.randn(2, 32, 8, 8)).shape, sum(p.numel() for p in block.parameters())
        (torch.Size([2, 32, 8, 8]), 10048)
    """

    def __init__(
        self,
        in_channels: int,
        kernel_size: int = 7,
        mlp_ratio: int = 4,
        layer_scale: float | None = 1e-6,
        drop_path: float = 0.0,
        act: LayerSpec = "gelu",
    ):
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise ConfigError(f"convnext: drop_path must be in [0, 1), got {drop_path}.")
        dim = in_channels
        self.depthwise = Conv(dim, dim, kernel_size, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.act = make_act(act)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale))) if layer_scale else None
        self.drop_path = drop_path
        self.in_channels = self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x + drop_path(gamma * mlp(norm(depthwise(x))))`` (the MLP and norm run channels-last)."""
        out = self.depthwise(x).permute(0, 2, 3, 1)
        out = self.fc2(self.act(self.fc1(self.norm(out))))
        if self.gamma is not None:
            out = out * self.gamma
        return x + drop_path(out.permute(0, 3, 1, 2), self.drop_path, self.training)
