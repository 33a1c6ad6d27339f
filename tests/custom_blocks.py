"""A third-party block module, as another project would write it; named in specs via `imports:`."""

import torch
from torch import nn

from convzoo import register_block


@register_block("test_squeeze_excite", override=True)
class SqueezeExcite(nn.Module):
    """Channel attention that keeps its input shape."""

    def __init__(self, in_channels: int, reduction: int = 4):
        super().__init__()
        self.fc1 = nn.Conv2d(in_channels, in_channels // reduction, 1)
        self.fc2 = nn.Conv2d(in_channels // reduction, in_channels, 1)
        self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)
