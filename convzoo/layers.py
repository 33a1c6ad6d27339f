"""The one place that resolves padding, normalisation, activation and pooling layers from names.

Blocks never construct norms, activations or pools themselves: they call [`make_norm`][convzoo.layers.make_norm],
[`make_act`][convzoo.layers.make_act] and [`make_pool`][convzoo.layers.make_pool], which look names up in the ``NORMS`` / ``ACTIVATIONS`` /
``POOLS`` registries, so one registered by another project is usable by every block at once.
Pooling has one vocabulary everywhere: ``pool`` names the kind (``max``, ``avg``) and
``pool_size`` the window; a global pool (the classifier's) has no window.

Examples:
    >>> import torch
    >>> from convzoo.layers import conv_output_size, make_act, make_norm, resolve_padding
    >>> conv_output_size(32, kernel_size=3, stride=2, padding=1)
    16
    >>> resolve_padding(5, dilation=2)
    4
    >>> make_norm("groupnorm", 32, num_groups=8)
    GroupNorm(8, 32, eps=1e-05, affine=True, bias=True)
    >>> make_act({"act": "leaky_relu", "negative_slope": 0.2})
    LeakyReLU(negative_slope=0.2)
    >>> make_pool("avg", 3), make_pool("max")
    (AvgPool2d(kernel_size=3, stride=3, padding=0), AdaptiveMaxPool2d(output_size=1))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import torch
from torch import nn

from convzoo.errors import ConfigError
from convzoo.ops.global_pool import GlobalAvgPool2d
from convzoo.registry import ACTIVATIONS, NORMS, POOLS

__all__ = [
    "LayerSpec",
    "LayerNorm2d",
    "GlobalAvgPool2d",
    "NORM_TYPES",
    "conv_output_size",
    "resolve_padding",
    "make_norm",
    "make_act",
    "make_pool",
]

LayerSpec = Union[str, Mapping[str, Any], None]
"""A norm/activation given by name (``"gelu"``), by mapping (``{"act": "leaky_relu", ...}``) or
switched off (``None`` / ``"none"``)."""


def conv_output_size(size: int, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Spatial output size of a convolution or pooling window along one axis.

    ``H_out = floor((H_in + 2*padding - dilation*(kernel_size-1) - 1) / stride + 1)``

    Examples:
        >>> conv_output_size(5, kernel_size=3)  # a 3x3 "valid" conv over 5x5 gives 3x3
        3
    """
    return (size + 2 * padding - dilation * (kernel_size - 1) - 1) // stride + 1


def resolve_padding(kernel_size: int, dilation: int = 1, padding: int | str | None = None, stride: int = 1) -> int | str:
    """Turn a padding spec into what ``nn.Conv2d`` takes.

    ``None`` and ``"same"`` mean "keep the size at stride 1": ``dilation * (kernel_size - 1) // 2``
    for odd effective kernels. ``"valid"`` means 0. Integers pass through.

    Examples:
        >>> resolve_padding(3), resolve_padding(7, dilation=2), resolve_padding(3, padding="valid")
        (1, 6, 0)
    """
    if padding is None or padding == "same":
        span = dilation * (kernel_size - 1)
        if span % 2 == 0:
            return span // 2
        if padding == "same" and stride == 1:
            return "same"  # even kernels need asymmetric padding, which only torch's "same" does
        raise ConfigError(
            f"padding='same' is ambiguous for the even kernel_size={kernel_size} (dilation={dilation}, "
            f"stride={stride}): pass an explicit integer padding or use an odd kernel_size."
        )
    if padding == "valid":
        return 0
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise ConfigError(f"padding must be a non-negative int, 'same', 'valid' or null; got {padding!r}.")


def is_none(spec: LayerSpec) -> bool:
    """Whether a norm/activation spec switches the layer off."""
    return spec is None or spec in ("none", "identity")


def make_norm(spec: LayerSpec, num_channels: int, **defaults: Any) -> nn.Module:
    """Normalisation layer for ``num_channels`` channels from a name or mapping (see ``NORMS``);
    ``None`` / ``"none"`` give ``nn.Identity``. ``defaults`` fill arguments the spec leaves out."""
    if isinstance(spec, Mapping) and "num_channels" in spec:
        raise ConfigError(f"norm {dict(spec)!r}: drop num_channels; the block sets it to its own channels "
                          f"({num_channels}).")
    return NORMS.resolve("none" if spec is None else spec, **defaults, num_channels=num_channels).built


def make_act(spec: LayerSpec, **defaults: Any) -> nn.Module:
    """Activation layer from a name or mapping (see ``ACTIVATIONS``); ``None`` / ``"none"`` give
    ``nn.Identity``. ``defaults`` fill arguments the spec leaves out."""
    return ACTIVATIONS.resolve("none" if spec is None else spec, **defaults).built


def make_pool(pool: str, pool_size: int | None = None, stride: int | None = None, padding: int = 0) -> nn.Module:
    """Pooling layer of kind ``pool`` (see ``POOLS``) over ``pool_size`` windows (stride defaults to
    the window); ``pool_size=None`` pools globally, to 1x1."""
    return POOLS.resolve(pool, pool_size=pool_size, stride=stride, padding=padding).built


NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)
"""The layer types that count as normalisation: weight-init resets their affine parameters and the
optimizer can give their shifts their own LR. ``_NormBase`` covers BatchNorm*, SyncBatchNorm and
InstanceNorm*; subclasses (LayerNorm2d) count."""


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor (as in ConvNeXt).

    Examples:
        >>> LayerNorm2d(8)(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each pixel's channels of an ``(N, C, H, W)`` batch."""
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


@NORMS.register("batchnorm", "bn")
def batchnorm(
    num_channels: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True, learn_scale: bool = True
) -> nn.Module:
    """``nn.BatchNorm2d``; ``learn_scale=False`` keeps the scale at 1 and trains only the shift (airbench)."""
    norm = nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum, affine=affine)
    if affine and not learn_scale:
        norm.weight.requires_grad_(False)
    return norm


@NORMS.register("groupnorm", "gn")
def groupnorm(num_channels: int, num_groups: int = 32, eps: float = 1e-5, affine: bool = True) -> nn.Module:
    """``nn.GroupNorm`` with ``num_groups`` groups (fewer when the layer has fewer channels; they must divide them)."""
    groups = min(num_groups, num_channels)  # small layers get one channel per group, not an error
    if num_channels % groups:
        raise ConfigError(
            f"groupnorm: num_groups={num_groups} does not divide {num_channels} channels; "
            f"pick a divisor of {num_channels} for num_groups."
        )
    return nn.GroupNorm(groups, num_channels, eps=eps, affine=affine)


@NORMS.register("layernorm", "ln", "layernorm2d")
def layernorm(num_channels: int, eps: float = 1e-6, affine: bool = True) -> nn.Module:
    """[`LayerNorm2d`][convzoo.layers.LayerNorm2d]: LayerNorm over the channels of each pixel (ConvNeXt's)."""
    return LayerNorm2d(num_channels, eps=eps, elementwise_affine=affine)


@NORMS.register("none", "identity")
def no_norm(num_channels: int) -> nn.Module:
    """No normalisation (``nn.Identity``)."""
    return nn.Identity()


@ACTIVATIONS.register("relu")
def relu(inplace: bool = False) -> nn.Module:
    """``nn.ReLU``."""
    return nn.ReLU(inplace=inplace)


@ACTIVATIONS.register("relu6")
def relu6(inplace: bool = False) -> nn.Module:
    """``nn.ReLU6``: ReLU capped at 6 (MobileNet)."""
    return nn.ReLU6(inplace=inplace)


@ACTIVATIONS.register("gelu")
def gelu(approximate: str = "none") -> nn.Module:
    """``nn.GELU`` (``approximate="tanh"`` for the tanh approximation)."""
    return nn.GELU(approximate=approximate)


@ACTIVATIONS.register("silu", "swish")
def silu(inplace: bool = False) -> nn.Module:
    """``nn.SiLU`` (swish)."""
    return nn.SiLU(inplace=inplace)


@ACTIVATIONS.register("hardswish")
def hardswish(inplace: bool = False) -> nn.Module:
    """``nn.Hardswish`` (MobileNetV3)."""
    return nn.Hardswish(inplace=inplace)


@ACTIVATIONS.register("leaky_relu")
def leaky_relu(negative_slope: float = 0.01, inplace: bool = False) -> nn.Module:
    """``nn.LeakyReLU`` with slope ``negative_slope`` below zero."""
    return nn.LeakyReLU(negative_slope=negative_slope, inplace=inplace)


@ACTIVATIONS.register("sigmoid")
def sigmoid() -> nn.Module:
    """``nn.Sigmoid``."""
    return nn.Sigmoid()


@ACTIVATIONS.register("hardsigmoid")
def hardsigmoid(inplace: bool = False) -> nn.Module:
    """``nn.Hardsigmoid``."""
    return nn.Hardsigmoid(inplace=inplace)


@ACTIVATIONS.register("tanh")
def tanh() -> nn.Module:
    """``nn.Tanh``."""
    return nn.Tanh()


@ACTIVATIONS.register("identity", "none")
def identity() -> nn.Module:
    """No activation (``nn.Identity``)."""
    return nn.Identity()


@POOLS.register("max", "maxpool")
def max_pool(pool_size: int | None = None, stride: int | None = None, padding: int = 0) -> nn.Module:
    """``nn.MaxPool2d`` over ``pool_size`` windows (stride defaults to the window); global max pooling without a window."""
    if pool_size is None:
        return nn.AdaptiveMaxPool2d(1)
    return nn.MaxPool2d(pool_size, stride=stride, padding=padding)


@POOLS.register("avg", "avgpool", "mean")
def avg_pool(pool_size: int | None = None, stride: int | None = None, padding: int = 0) -> nn.Module:
    """``nn.AvgPool2d`` over ``pool_size`` windows (stride defaults to the window); without a window, the global average pool ([`GlobalAvgPool2d`][convzoo.ops.global_pool.GlobalAvgPool2d])."""
    if pool_size is None:
        return GlobalAvgPool2d()
    return nn.AvgPool2d(pool_size, stride=stride, padding=padding)
