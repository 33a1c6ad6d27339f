"""Fast CPU training ops and their build: convzoo's C++ kernels (``csrc/``), compiled on first use, each
behind a switch, each standing aside for CUDA, inference, tracing, compiling and export.

- [`depthwise`][convzoo.ops.depthwise]: `DepthwiseConv2d`, a depthwise conv whose backward runs convzoo's kernels.
- [`norm_act`][convzoo.ops.norm_act]: BatchNorm fused with its activation (and a residual add).
- [`global_pool`][convzoo.ops.global_pool]: the classifier's global average pool.
- [`kernels`][convzoo.ops.kernels]: compiling and loading the kernels, the switches, the fallback.

Examples:
    >>> import torch
    >>> from convzoo.ops import DepthwiseConv2d, fast_depthwise
    >>> conv = DepthwiseConv2d(8, 8, 3, padding=1, groups=8)
    >>> with fast_depthwise(False):   # torch's own backward for this block only
    ...     conv(torch.randn(1, 8, 4, 4)).shape
    torch.Size([1, 8, 4, 4])
"""

from convzoo.ops.depthwise import DepthwiseConv2d, fast_depthwise
from convzoo.ops.global_pool import GlobalAvgPool2d
from convzoo.ops.norm_act import fused_norm_act

__all__ = ["DepthwiseConv2d", "GlobalAvgPool2d", "fast_depthwise", "fused_norm_act"]
