"""BatchNorm and the activation beside it, fused for CPU training.

In a CPU training step of ConvMixer, BatchNorm and GELU take more time than the convs around them
(``benchmarks/depthwise.py --norm-act``): torch runs each as its own op, two or three memory passes
forward and again backward, and keeps the activation's output for the backward. [`batch_norm_act`][convzoo.ops.norm_act.batch_norm_act]
computes BatchNorm with batch statistics and an activation before it (``conv -> act -> norm``,
ConvMixer), after it (``conv -> norm -> act``, ResNet, MobileNet) or none (a BatchNorm alone: the
linear projection of MobileNet, the last norm of a residual branch) in one C++ kernel
(``convzoo/ops/csrc/norm_act.cpp``) per direction: two passes over the input each, an activation that
comes first evaluated once per direction (its output kept, as torch keeps it), sums in fp32 then
fp64, the running statistics updated as ``nn.BatchNorm2d`` updates them, and a residual, when given,
added in the same pass (``Residual`` hands its skip to a [`FusingSequential`][convzoo.ops.norm_act.FusingSequential] block). Blocks
whose layers run in a row ([`ConvNormAct`][convzoo.blocks.conv.ConvNormAct], ``NormAct``) call [`run_fusing_norm_act`][convzoo.ops.norm_act.run_fusing_norm_act],
which takes the fused path for each adjacent pair, and each BatchNorm without an activation next
to it, where it applies:
CPU training (gradients recorded, the norm in training mode) of a channels-last fp32 or bf16 tensor,
an exact ``nn.BatchNorm2d`` with fp32 parameters, and a ReLU, ReLU6, GELU (erf) or SiLU, outside
scripting, tracing, compiling and export. Everything else -- CUDA, inference, export -- runs the
modules one by one, as before. [`fused_norm_act`][convzoo.ops.norm_act.fused_norm_act] turns it off (``fused_norm_act: false`` in
``configs/train.yaml`` for a run).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> layers = nn.Sequential(nn.GELU(), nn.BatchNorm2d(8))
    >>> x = torch.randn(4, 8, 6, 6).to(memory_format=torch.channels_last).requires_grad_()
    >>> takes_fused_path(x, *layers) == fused_norm_act_available()
    True
    >>> y = run_fusing_norm_act(layers, x)
    >>> with fused_norm_act(False):
    ...     torch.allclose(y, layers(x), atol=1e-5)
    True
"""

# No "from __future__ import annotations": TorchScript resolves the (unused) methods' annotations at runtime.
import ctypes

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from convzoo.ops import kernels

__all__ = [
    "FusingSequential", "add_to_block", "adds_fused", "batch_norm_act", "fused_norm_act", "fused_norm_act_available",
    "run_fusing_norm_act", "takes_fused_path",
]

ACTIVATIONS = {nn.ReLU: 1, nn.ReLU6: 2, nn.GELU: 3, nn.SiLU: 4}
"""The activations the kernel computes, by exact type (``csrc/norm_act.cpp``'s ``Act``)."""
_DTYPES = (torch.float32, torch.bfloat16)
_P, _I64, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
_SIGNATURES = (
    *((name, (_P,) * 9 + (_I64, _I, _F, _I, _I)) for name in ("norm_act_forward_f32", "norm_act_forward_bf16")),
    *((name, (_P,) * 10 + (_I64, _I, _I, _I)) for name in ("norm_act_backward_f32", "norm_act_backward_bf16")),
)


fused_norm_act = kernels.Switch("fused BatchNorm + activation")
"""Turns the fused path on or off for the process (``bool(fused_norm_act)`` says which);
``with fused_norm_act(False):`` only inside the block.

A [`Switch`][convzoo.ops.kernels.Switch], on by default: batch norm followed by an activation takes the fused CPU
kernel only while it is on (and only where [`takes_fused_path`][convzoo.ops.norm_act.takes_fused_path] allows it).

Attributes:
    enabled: whether the fused path may be taken.

Examples:
    >>> from convzoo import fused_norm_act
    >>> with fused_norm_act(False):
    ...     bool(fused_norm_act)
    False
"""


def _kernel() -> ctypes.CDLL | None:
    return kernels.load("norm_act", _SIGNATURES)


def fused_norm_act_available() -> bool:
    """Whether the kernel builds and loads here (compiles it on the first call, about a second)."""
    return _kernel() is not None


def _activation_code(act: nn.Module | None) -> int | None:
    if act is None:
        return 0  # a BatchNorm alone: the identity
    code = ACTIVATIONS.get(type(act))
    return None if isinstance(act, nn.GELU) and act.approximate != "none" else code


def _norm_and_act(first: nn.Module, second: nn.Module | None) -> tuple[nn.Module, nn.Module | None, bool]:
    """Adjacent modules as ``(norm, act, act_first)``: the activation comes first when the BatchNorm
    is the second module; ``second=None`` is a BatchNorm alone."""
    act_first = type(second) is nn.BatchNorm2d
    return (second, first, True) if act_first else (first, second, False)


def takes_fused_path(x: torch.Tensor, first: nn.Module, second: nn.Module | None = None) -> bool:
    """Whether ``second(first(x))`` (``first(x)`` without ``second``) runs fused: one is an
    ``nn.BatchNorm2d`` in training mode, the other a supported activation or absent, neither hooked,
    and ``x`` a channels-last CPU tensor whose gradients are recorded."""
    norm, act, _ = _norm_and_act(first, second)
    if not (fused_norm_act and type(norm) is nn.BatchNorm2d and norm.training and _activation_code(act) is not None):
        return False
    if not (x.device.type == "cpu" and x.dim() == 4 and x.dtype in _DTYPES and torch.is_grad_enabled()):
        return False
    if not (x.requires_grad or (norm.weight is not None and norm.weight.requires_grad)):
        return False
    if norm.weight is not None and (norm.weight.dtype != torch.float32 or norm.weight.device.type != "cpu"):
        return False
    if x.shape[1] != norm.num_features or x.numel() <= x.shape[1] or not x.permute(0, 2, 3, 1).is_contiguous():
        return False  # a wrong width or a single value per channel: torch's own error; NCHW: torch's kernels
    if kernels.capturing_graph():
        return False
    if _hooked(norm) or (act is not None and _hooked(act)):
        return False  # fused, neither module's forward would run, nor so its hooks
    return fused_norm_act_available()


def _hooked(module: nn.Module) -> bool:
    """Whether anything hooks ``module``'s forward (its own hooks or every module's)."""
    from torch.nn.modules import module as hooks

    return bool(module._forward_hooks or module._forward_pre_hooks or hooks._global_forward_hooks
                or hooks._global_forward_pre_hooks)


def _address(tensor: torch.Tensor | None) -> int | None:
    """A tensor's data pointer for the kernel; ``None`` (a null pointer) for an absent one."""
    return None if tensor is None else tensor.data_ptr()


class _BatchNormActFunction(torch.autograd.Function):
    """``y, mean, var = ...``: BatchNorm with batch statistics (biased ``var``) and an activation,
    plus ``residual`` when one is given."""

    @staticmethod
    def forward(ctx, x, weight, bias, residual, eps, act, act_first):  # noqa: D102 (autograd API)
        channels = x.shape[1]
        weight_f = torch.ones(channels) if weight is None else weight.detach()
        bias_f = torch.zeros(channels) if bias is None else bias.detach()
        y = torch.empty_like(x, memory_format=torch.channels_last)
        # act(x), which BatchNorm normalises: kept, as torch's two ops keep it, so that the forward's
        # second pass and the backward read it, and the activation (GELU is the costly part) is
        # evaluated once per direction: here, and for its slope in the backward
        v = torch.empty_like(y) if act_first else None
        mean, var, invstd = torch.empty(3, channels).unbind()
        forward = _kernel().norm_act_forward_bf16 if x.dtype == torch.bfloat16 else _kernel().norm_act_forward_f32
        forward(x.data_ptr(), _address(residual), y.data_ptr(), _address(v), weight_f.data_ptr(), bias_f.data_ptr(),
                mean.data_ptr(), var.data_ptr(), invstd.data_ptr(), x.numel() // channels, channels, eps, act,
                int(act_first))
        ctx.save_for_backward(x, v, weight_f, bias_f, mean, invstd)
        ctx.act = (act, act_first)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y, _grad_mean, _grad_var):  # noqa: D102
        x, v, weight, bias, mean, invstd = ctx.saved_tensors
        channels = x.shape[1]
        grad_y = grad_y.to(x.dtype).contiguous(memory_format=torch.channels_last)
        grad_x = torch.empty_like(x, memory_format=torch.channels_last)
        grad_weight, grad_bias = torch.empty(2, channels).unbind()
        backward = _kernel().norm_act_backward_bf16 if x.dtype == torch.bfloat16 else _kernel().norm_act_backward_f32
        backward(x.data_ptr(), _address(v), grad_y.data_ptr(), grad_x.data_ptr(), weight.data_ptr(), bias.data_ptr(),
                 mean.data_ptr(), invstd.data_ptr(), grad_weight.data_ptr(), grad_bias.data_ptr(),
                 x.numel() // channels, channels, *ctx.act)
        needs_x, needs_weight, needs_bias, needs_residual = ctx.needs_input_grad[:4]
        return (grad_x if needs_x else None, grad_weight if needs_weight else None, grad_bias if needs_bias else None,
                grad_y if needs_residual else None, None, None, None)


def batch_norm_act(x: torch.Tensor, norm: nn.BatchNorm2d, act: nn.Module | None, act_first: bool,
                   residual: torch.Tensor | None = None) -> torch.Tensor:
    """``norm(act(x))`` (``act_first``), ``act(norm(x))`` or, with ``act=None``, ``norm(x)`` in
    training mode, fused, plus ``residual`` if given ([`adds_fused`][convzoo.ops.norm_act.adds_fused]); updates ``norm``'s running
    statistics as ``nn.BatchNorm2d`` does. The caller checks [`takes_fused_path`][convzoo.ops.norm_act.takes_fused_path].

    Examples:
        >>> x = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last).requires_grad_()
        >>> norm = nn.BatchNorm2d(4)
        >>> y = batch_norm_act(x, norm, nn.ReLU(), act_first=False)
        >>> int(norm.num_batches_tracked), bool((y >= 0).all())
        (1, True)
    """
    y, mean, var = _BatchNormActFunction.apply(x, norm.weight, norm.bias, residual, norm.eps, _activation_code(act),
                                               act_first)
    if norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            norm.num_batches_tracked.add_(1)
            factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
            count = x.numel() // x.shape[1]
            norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), factor)
            norm.running_var.lerp_((var * (count / (count - 1))).to(norm.running_var.dtype), factor)
    return y


def run_fusing_norm_act(layers: nn.Sequential, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
    """``layers(x)``, each adjacent BatchNorm + activation pair, and each BatchNorm without an
    activation beside it, fused where [`takes_fused_path`][convzoo.ops.norm_act.takes_fused_path] says so; with ``residual``,
    ``residual + layers(x)``, the add fused into a last norm that runs fused ([`adds_fused`][convzoo.ops.norm_act.adds_fused])."""
    modules = list(layers)
    i = 0
    while i < len(modules):
        first = modules[i]
        second = modules[i + 1] if i + 1 < len(modules) else None
        if second is not None and takes_fused_path(x, first, second):
            i += 2
        elif takes_fused_path(x, first):  # a BatchNorm with no activation the kernel computes beside it
            second, i = None, i + 1
        else:
            x = first(x)
            i += 1
            continue
        if i == len(modules) and residual is not None and adds_fused(x, residual):
            return batch_norm_act(x, *_norm_and_act(first, second), residual=residual)
        x = batch_norm_act(x, *_norm_and_act(first, second))
    return x if residual is None else residual + x


def add_to_block(block: nn.Module, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``skip + block(x)``: a residual join. For a [`FusingSequential`][convzoo.ops.norm_act.FusingSequential] block whose last norm runs
    fused, the kernel adds ``skip`` in its own pass; a hooked block runs its own forward.

    Examples:
        >>> block = FusingSequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
        >>> x = torch.randn(2, 8, 4, 4).to(memory_format=torch.channels_last).requires_grad_()
        >>> with fused_norm_act(False):
        ...     expected = x + block(x)
        >>> torch.allclose(add_to_block(block, x, x), expected, atol=1e-5)
        True
    """
    if isinstance(block, FusingSequential) and not _hooked(block):
        return run_fusing_norm_act(block, x, residual=skip)
    return skip + block(x)


def adds_fused(x: torch.Tensor, residual: torch.Tensor) -> bool:
    """Whether a fused pair taking ``x`` can add ``residual`` to its result itself: the same shape,
    dtype and layout (NHWC) on the CPU, so the sum is what ``residual + y`` gives, rounded once."""
    return (residual.device.type == "cpu" and residual.shape == x.shape and residual.dtype == x.dtype
            and residual.permute(0, 2, 3, 1).is_contiguous())


class FusingSequential(nn.Sequential):
    """An ``nn.Sequential`` whose adjacent BatchNorm + activation pairs run fused in CPU training.

    Examples:
        >>> layers = FusingSequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        >>> layers(torch.randn(2, 3, 8, 8).to(memory_format=torch.channels_last)).shape
        torch.Size([2, 8, 6, 6])
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """The modules in order, as ``nn.Sequential`` computes them; BatchNorm + activation pairs fused where they can be."""
        if not torch.jit.is_scripting():
            return self._forward_fusing(input)
        for module in self:
            input = module(input)
        return input

    @torch.jit.unused
    def _forward_fusing(self, input: torch.Tensor) -> torch.Tensor:
        return run_fusing_norm_act(self, input)
