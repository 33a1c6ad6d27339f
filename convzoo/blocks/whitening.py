"""Patch-whitening stem (Keller Jordan's airbench): a frozen conv fitted to the training data."""

from __future__ import annotations

import torch
from torch import nn

from convzoo.blocks.conv import Conv
from convzoo.layers import LayerSpec, make_act
from convzoo.registry import BLOCKS

__all__ = ["WhiteningConv"]


@BLOCKS.register("whitening")
class WhiteningConv(nn.Module):
    """A ``k x k`` conv whose filters whiten image patches, followed by an activation.

    The filters are the eigenvectors of the training patches' covariance scaled by
    ``1 / sqrt(eigenvalue + eps)``, each used with both signs (``2 * in_channels * k * k``
    outputs), so the first layer starts out decorrelating its input. The weights stay frozen; the
    bias trains. [`init_from_data`][convzoo.blocks.whitening.WhiteningConv.init_from_data] fits the filters; training calls it through
    [`convzoo.weight_init.apply_data_init`][convzoo.weight_init.apply.apply_data_init] before the first step.

    Examples:
        >>> stem = WhiteningConv(3, kernel_size=2)
        >>> stem.init_from_data(torch.randn(256, 3, 8, 8))
        >>> stem(torch.randn(1, 3, 32, 32)).shape, stem.out_channels
        (torch.Size([1, 24, 31, 31]), 24)
    """

    data_init_scheme = "whitening"

    def __init__(self, in_channels: int, kernel_size: int = 2, eps: float = 5e-4, act: LayerSpec = "gelu"):
        super().__init__()
        self.out_channels = 2 * in_channels * kernel_size**2
        self.eps = eps
        self.conv = Conv(in_channels, self.out_channels, kernel_size, padding=0, bias=True)
        self.conv.weight.requires_grad_(False)
        self.act = make_act(act)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the filters to ``images`` (normalised, ``N x C x H x W``; a few thousand suffice)."""
        channels, k = self.conv.in_channels, self.conv.kernel_size[0]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)          # N, C, H', W', k, k
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels * k * k)
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)          # ascending
        filters = eigenvectors.T / torch.sqrt(eigenvalues + self.eps)[:, None]
        filters = filters.flip(0).reshape(-1, channels, k, k)              # strongest direction first
        self.conv.weight.copy_(torch.cat([filters, -filters]).to(self.conv.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The activation of the whitening conv's output."""
        return self.act(self.conv(x))
