"""The global average pool of the classifier head, fast in CPU training.

Examples:
    >>> import torch
    >>> x = torch.randn(2, 8, 5, 5, dtype=torch.bfloat16, requires_grad=True)
    >>> GlobalAvgPool2d()(x).shape
    torch.Size([2, 8, 1, 1])
"""

# No "from __future__ import annotations": TorchScript resolves the (unused) methods' annotations at runtime.
import torch
from torch import nn

from convzoo.ops import kernels

__all__ = ["GlobalAvgPool2d"]


class _GlobalAvgPoolFunction(torch.autograd.Function):
    """The mean over H and W, its gradient spread back with one broadcast copy."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102 (autograd API)
        ctx.shape = x.shape
        ctx.memory_format = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else \
            torch.contiguous_format
        return nn.functional.avg_pool2d(x, x.shape[2:])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        height, width = ctx.shape[2:]
        return (grad / (height * width)).expand(ctx.shape).contiguous(memory_format=ctx.memory_format)


class GlobalAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d(1)`` whose CPU training step is fast.

    On CPU, torch's adaptive pool (a mean) is slow for a bf16 channels-last batch: ``avg_pool2d``
    over the whole map and a backward that broadcasts the gradient in one copy are several times
    faster (``benchmarks/depthwise.py --norm-act``; the figures, with their machine, on the docs'
    benchmarks page). Only bf16 training takes that path: the two sum in
    different orders, which bf16's rounding hides, while fp32 keeps ``nn.AdaptiveAvgPool2d``'s
    exact results (checkpoints' outputs are compared bit for bit). Inference, CUDA and export run
    ``nn.AdaptiveAvgPool2d`` itself.

    Examples:
        >>> pool = GlobalAvgPool2d()
        >>> x = torch.randn(2, 8, 5, 5, dtype=torch.bfloat16, requires_grad=True)
        >>> torch.equal(pool(x), torch.nn.AdaptiveAvgPool2d(1)(x))
        True
    """

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The mean over height and width, ``(N, C, 1, 1)``; through the fast path in bf16 CPU training."""
        if not torch.jit.is_scripting() and self._fast(input):
            return _GlobalAvgPoolFunction.apply(input)
        return nn.functional.adaptive_avg_pool2d(input, self.output_size)

    @torch.jit.unused
    def _fast(self, x: torch.Tensor) -> bool:
        return (x.device.type == "cpu" and x.dtype == torch.bfloat16 and x.dim() == 4 and x.requires_grad
                and torch.is_grad_enabled() and not kernels.capturing_graph())
