"""Depthwise convolutions that train at full speed on CPU.

A depthwise conv (``groups == in_channels == out_channels``) is cheap in FLOPs, yet on CPU torch
computes its weight gradient for 5x5 and 7x7 kernels, and its bf16 input gradient at stride 2, in
many times the forward pass's time (``benchmarks/depthwise.py``; the figures, with their machine, are
on the docs' benchmarks page), so these dominate the training step of ConvMixer, ConvNeXt, MobileNet and the separable nets. [`DepthwiseConv2d`][convzoo.ops.depthwise.DepthwiseConv2d]
is an ``nn.Conv2d`` -- same arguments, same ``weight`` / ``bias`` parameters and state-dict keys --
whose backward on CPU computes those two gradients with small C++ kernels
(``convzoo/ops/csrc/depthwise_backward.cpp``: NHWC, fp32 sums, compiled on first use with the
system's C++ compiler into torch's extension cache). The forward pass and the 3x3 weight gradient
stay torch's, which are the faster ones there; the stride-1 input gradient is torch's forward conv
with the kernel turned 180 degrees, which is faster than its input-gradient kernel.

The fast path is taken only when it can help and cannot change what is exported: a CPU input,
gradients being recorded, a depthwise layer with zero padding, fp32 or bf16 (autocast included),
and not while scripting, tracing, compiling or exporting. Everything else -- CUDA (cuDNN),
inference, export -- is plain ``nn.Conv2d.forward``. [`fast_depthwise`][convzoo.ops.depthwise.fast_depthwise] turns it off for the
process or a ``with`` block (``fast_depthwise: false`` in ``configs/train.yaml`` for a run).

Examples:
    >>> import torch
    >>> conv = DepthwiseConv2d(8, 8, kernel_size=5, padding=2, groups=8)
    >>> x = torch.randn(2, 8, 10, 10, requires_grad=True)
    >>> conv.takes_fast_path(x) == fast_depthwise_available()
    True
    >>> with torch.no_grad():  # inference: nn.Conv2d's path
    ...     conv.takes_fast_path(x)
    False
    >>> conv(x).sum().backward()
    >>> list(conv.state_dict()) == list(torch.nn.Conv2d(8, 8, 5, padding=2, groups=8).state_dict())
    True
    >>> with fast_depthwise(False):
    ...     conv.takes_fast_path(x)
    False
"""

# No "from __future__ import annotations": TorchScript resolves the (unused) methods' annotations at runtime.
import ctypes

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from convzoo.ops import kernels

__all__ = [
    "DepthwiseConv2d", "depthwise_conv2d", "fast_depthwise", "fast_depthwise_available", "fast_depthwise_enabled",
    "set_fast_depthwise",
]

_KERNEL_DTYPES = (torch.float32, torch.bfloat16)
_SIGNATURES = (  # weight grad: x, g, out + 15 ints; input grad: g, weights, grad_x + 14 ints
    *((name, (ctypes.c_void_p,) * 3 + (ctypes.c_int,) * 15)
      for name in ("depthwise_weight_grad_f32", "depthwise_weight_grad_bf16")),
    *((name, (ctypes.c_void_p,) * 3 + (ctypes.c_int,) * 14)
      for name in ("depthwise_input_grad_f32", "depthwise_input_grad_bf16")),
)


fast_depthwise = kernels.Switch("fast depthwise convs")
"""Turns the fast depthwise path on or off for the process; ``with fast_depthwise(False):`` only inside the block.

A [`Switch`][convzoo.ops.kernels.Switch], on by default: [`DepthwiseConv2d`][convzoo.ops.depthwise.DepthwiseConv2d] takes its fast CPU backward only
while it is on (and only where that path is faster). Turning it off gives torch's own conv backward,
e.g. to compare the two.

Attributes:
    enabled: whether the fast path may be taken (``bool(fast_depthwise)`` says the same).

Examples:
    >>> from convzoo import fast_depthwise
    >>> with fast_depthwise(False):
    ...     bool(fast_depthwise)
    False
    >>> bool(fast_depthwise)
    True
"""


def fast_depthwise_enabled() -> bool:
    """Whether depthwise convs may take the fast CPU training path (the process-wide switch).

    Examples:
        >>> with fast_depthwise(False):
        ...     fast_depthwise_enabled()
        False
        >>> fast_depthwise_enabled()
        True
    """
    return bool(fast_depthwise)


def set_fast_depthwise(enabled: bool) -> None:
    """Set the process-wide switch from now on (``train()`` scopes the config's ``fast_depthwise`` to its run with
    [`fast_depthwise`][convzoo.ops.depthwise.fast_depthwise] instead)."""
    fast_depthwise.enabled = bool(enabled)


def _kernel() -> ctypes.CDLL | None:
    """The compiled kernels (``csrc/depthwise_backward.cpp``), built on first use; ``None`` if they cannot be."""
    return kernels.load("depthwise_backward", _SIGNATURES)


def fast_depthwise_available() -> bool:
    """Whether the kernel builds and loads here (compiles it on the first call, about a second)."""
    return _kernel() is not None


def _weight_and_bias_grad(x: torch.Tensor, grad_out: torch.Tensor, kernel_size: tuple[int, int],
                          stride: tuple[int, int], padding: tuple[int, int],
                          dilation: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 weight ``[C, 1, kh, kw]`` and bias ``[C]`` gradients of a depthwise conv from its input and output gradient."""
    library = _kernel()
    x = x.contiguous(memory_format=torch.channels_last)
    grad_out = grad_out.to(x.dtype).contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    taps = kernel_size[0] * kernel_size[1]
    splits = min(n, 4 * torch.get_num_threads())  # the kernel's tasks: a few per thread, so uneven ones even out
    partial = torch.empty(splits, c, taps + 1)
    function = library.depthwise_weight_grad_bf16 if x.dtype == torch.bfloat16 else library.depthwise_weight_grad_f32
    function(x.data_ptr(), grad_out.data_ptr(), partial.data_ptr(), splits, n, h, w, c, *grad_out.shape[2:],
             *kernel_size, *stride, *padding, *dilation)
    total = partial.sum(0)
    return total[:, :taps].reshape(c, 1, *kernel_size), total[:, taps]


def _own_kernels(kernel_size: tuple[int, int], stride: tuple[int, int], positions: int) -> tuple[bool, bool]:
    """Which gradients convzoo's kernels compute (input, weight) for a layer whose input has
    ``positions`` pixels per channel (N * H * W): where torch's are measured slower.

    As ``benchmarks/depthwise.py --ops`` measured on the zoo's shapes (bf16, NHWC; the figures, with
    their machine, are in ``benchmarks/results/depthwise*.json`` and on the docs' benchmarks page): at
    stride 2 torch's input gradient is several times slower than ours, at stride 1 faster (and its
    forward conv faster still, `_input_grad_as_conv`). Its weight gradient is an order of magnitude
    slower than ours for 5x5 and 7x7 kernels. For 3x3 kernels at stride 1 ours wins from 16,384
    positions on (MobileNetV2's large layers, the separable net's 32x32 and 16x16 ones) and torch's
    below; at stride 2 the two are close, so those keep torch's.
    """
    taps = kernel_size[0] * kernel_size[1]
    return max(stride) > 1, taps > 9 or (max(stride) == 1 and positions >= _OWN_3X3_WEIGHT_GRAD_POSITIONS)


#: From this many input positions per channel on, a 3x3 stride-1 weight gradient is convzoo's (see :func:`_own_kernels`).
_OWN_3X3_WEIGHT_GRAD_POSITIONS = 16384


def _input_grad(grad_out: torch.Tensor, weight: torch.Tensor, input_size: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """NHWC ``[N, C, H, W]`` input gradient of a depthwise conv, in ``grad_out``'s dtype (fp32 sums)."""
    library = _kernel()
    grad_out = grad_out.contiguous(memory_format=torch.channels_last)
    n, c, ho, wo = grad_out.shape
    taps_by_channel = weight.float().reshape(c, -1).t().contiguous()  # [kh * kw, C]
    grad_x = torch.empty(n, c, *input_size, dtype=grad_out.dtype, memory_format=torch.channels_last)
    function = library.depthwise_input_grad_bf16 if grad_out.dtype == torch.bfloat16 else library.depthwise_input_grad_f32
    function(grad_out.data_ptr(), taps_by_channel.data_ptr(), grad_x.data_ptr(), n, *input_size, c, ho, wo,
             *weight.shape[2:], *stride, *padding, *dilation)
    return grad_x


def _input_grad_as_conv(grad_out: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int],
                        dilation: tuple[int, int]) -> torch.Tensor | None:
    """The input gradient of a stride-1 depthwise conv as a forward conv: the output gradient
    convolved with the kernel turned 180 degrees, padded by ``dilation * (k - 1) - padding``.

    torch's forward kernel runs this 1.4-2x faster than its input-gradient kernel on the zoo's 5x5
    and 7x7 layers (bf16, NHWC; ``benchmarks/depthwise.py --ops``). ``None`` where the padding
    exceeds the kernel's span (no such forward conv): the caller uses torch's backward.
    """
    spans = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    if any(p > span for p, span in zip(padding, spans)):
        return None
    with torch.autocast("cpu", enabled=False):  # in the gradient's own dtype, as torch's backward computes it
        return F.conv2d(grad_out, weight.flip(-2, -1), None, 1, [span - p for span, p in zip(spans, padding)],
                        dilation, weight.shape[0])


def _fast_input_grad(grad_out: torch.Tensor, weight: torch.Tensor, input_size: tuple[int, int],
                     stride: tuple[int, int], padding: tuple[int, int],
                     dilation: tuple[int, int]) -> torch.Tensor | None:
    """The input gradient the fast path computes: convzoo's kernel where torch's is slow (stride > 1),
    else the forward conv of `_input_grad_as_conv`; ``None`` where neither applies (torch's)."""
    if _own_kernels(tuple(weight.shape[2:]), stride, grad_out.shape[0] * input_size[0] * input_size[1])[0]:
        return _input_grad(grad_out, weight, input_size, stride, padding, dilation)
    return _input_grad_as_conv(grad_out, weight, padding, dilation)


class _DepthwiseConv2dFunction(torch.autograd.Function):
    """``F.conv2d(x, weight, bias, groups=C)`` in ``dtype``; gradients come back in the inputs' dtypes."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, dtype):  # noqa: D102 (autograd API)
        xc, wc = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(xc, wc)
        ctx.conv = (stride, padding, dilation)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(xc, wc, None if bias is None else bias.to(dtype), stride, padding, dilation, x.shape[1])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conv
        x_dtype, weight_dtype, bias_dtype = ctx.dtypes
        grad_out = grad_out.to(x.dtype)
        own_weight = _own_kernels(tuple(weight.shape[2:]), stride, x.shape[0] * x.shape[2] * x.shape[3])[1]
        need_x, need_w = ctx.needs_input_grad[:2]
        need_b = bias_dtype is not None and ctx.needs_input_grad[2]
        grad_x = _fast_input_grad(grad_out, weight, tuple(x.shape[2:]), stride, padding, dilation) if need_x else None
        grad_weight = grad_bias = None
        torch_mask = [need_x and grad_x is None, need_w and not own_weight, need_b and not own_weight]
        if any(torch_mask):
            grad_x_torch, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [x.shape[1]] if torch_mask[2] else None, stride, padding, dilation, False,
                [0, 0], x.shape[1], torch_mask)
            grad_x = grad_x if grad_x is not None else grad_x_torch
        if (need_w or need_b) and own_weight:
            grad_weight, grad_bias = _weight_and_bias_grad(x, grad_out, tuple(weight.shape[2:]), stride, padding, dilation)
        cast = lambda grad, needed, dtype: grad.to(dtype) if needed else None  # noqa: E731
        return (cast(grad_x, need_x, x_dtype), cast(grad_weight, need_w, weight_dtype),
                cast(grad_bias, need_b, bias_dtype), None, None, None, None)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                     padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding, dilation, groups=channels)`` with the fast backward.

    Computes in autocast's dtype when CPU autocast is on (as ``F.conv2d`` would), else in ``x``'s;
    the caller checks that the fast path applies ([`DepthwiseConv2d.takes_fast_path`][convzoo.ops.depthwise.DepthwiseConv2d.takes_fast_path]).
    """
    dtype = _compute_dtype(x, weight)
    return _DepthwiseConv2dFunction.apply(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), dtype)


def _compute_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype | None:
    """The dtype the conv computes in, as ``F.conv2d`` under the current autocast state; ``None`` if mixed."""
    if torch.is_autocast_enabled("cpu") and x.dtype in _KERNEL_DTYPES and weight.dtype in _KERNEL_DTYPES:
        return torch.get_autocast_dtype("cpu")
    return x.dtype if x.dtype == weight.dtype else None


class DepthwiseConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` whose training on CPU is fast when it is depthwise (``groups == in == out channels``).

    Same constructor, parameters, state-dict keys and forward result as ``nn.Conv2d``; only the
    backward pass of a depthwise layer on CPU differs (see the module docstring). Any other conv
    (dense, grouped, depth multiplier > 1) is exactly ``nn.Conv2d``.

    It takes ``nn.Conv2d``'s arguments (``in_channels, out_channels, kernel_size, stride=1,
    padding=0, dilation=1, groups=1, bias=True, padding_mode="zeros"``); the fast path needs
    ``groups == in_channels == out_channels`` and ``padding_mode="zeros"``.

    Attributes:
        weight: ``(out_channels, in_channels // groups, kH, kW)``, as ``nn.Conv2d``'s.
        bias: ``(out_channels,)`` or ``None``, as ``nn.Conv2d``'s.

    Examples:
        >>> import torch
        >>> conv = DepthwiseConv2d(16, 16, kernel_size=3, padding=1, groups=16)
        >>> x = torch.randn(4, 16, 8, 8, requires_grad=True)
        >>> torch.allclose(conv(x), torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1, groups=16))
        True
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """``nn.Conv2d``'s forward result; through the fast path when [`takes_fast_path`][convzoo.ops.depthwise.DepthwiseConv2d.takes_fast_path] says so."""
        if not torch.jit.is_scripting() and self.takes_fast_path(input):
            return self._fast_forward(input)
        return self._conv_forward(input, self.weight, self.bias)

    @torch.jit.unused
    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv2d(x, self.weight, self.bias, self.stride, self._numeric_padding(), self.dilation)

    @torch.jit.unused
    def takes_fast_path(self, x: torch.Tensor) -> bool:
        """Whether ``self(x)`` would run the fast CPU backward (cheap: no tensor work).

        True only for a depthwise layer with zero padding on a CPU input with gradients being
        recorded, in fp32 or bf16 (autocast included), with the switch on, outside scripting,
        tracing, ``torch.compile`` and export, where the kernels build, and where one of them is
        faster than torch's: a kernel larger than 3x3 or a large stride-1 3x3 layer (weight
        gradient), or a stride > 1 (input gradient; see `_own_kernels`).
        """
        if not (fast_depthwise and x.device.type == "cpu" and x.dim() == 4 and torch.is_grad_enabled()):
            return False
        if not (x.requires_grad or self.weight.requires_grad) or self.weight.device.type != "cpu":
            return False
        if self.groups != self.in_channels or self.out_channels != self.in_channels or self.padding_mode != "zeros":
            return False
        if self._numeric_padding() is None or _compute_dtype(x, self.weight) not in _KERNEL_DTYPES:
            return False
        if kernels.capturing_graph():
            return False  # first: the size test below would put a guard on a traced batch size
        if not any(_own_kernels(self.kernel_size, self.stride, x.shape[0] * x.shape[2] * x.shape[3])):
            return False  # a small 3x3 at stride 1: torch's backward is the faster one
        return fast_depthwise_available()

    def _numeric_padding(self) -> tuple[int, int] | None:
        """The padding as two ints; ``None`` for "same" with an even span (asymmetric, left to torch)."""
        if not isinstance(self.padding, str):
            return tuple(self.padding)
        if self.padding == "valid":
            return (0, 0)
        spans = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
        return None if any(span % 2 for span in spans) else tuple(span // 2 for span in spans)
