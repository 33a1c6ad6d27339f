"""Plain convolution and conv -> norm -> activation."""

from __future__ import annotations

from torch import nn

from convzoo.ops.depthwise import DepthwiseConv2d
from convzoo.layers import LayerSpec, is_none, make_act, make_norm, make_pool, resolve_padding
from convzoo.ops.norm_act import FusingSequential
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["Conv", "ConvNormAct", "NormAct"]

_STEPS = {"conv", "norm", "act"}


def _parse_order(order: str) -> list[str]:
    steps = order.split("_")
    if sorted(s for s in steps if s != "pool") != sorted(_STEPS) or steps.count("pool") > 1:
        raise ConfigError(
            f"order={order!r} must arrange conv, norm and act (each once) and optionally pool, joined by '_'; "
            f"e.g. conv_norm_act, conv_act_norm, norm_act_conv or conv_pool_norm_act."
        )
    return steps


def _check_channels(in_channels: int, out_channels: int, groups: int) -> None:
    if in_channels < 1 or out_channels < 1:
        raise ConfigError(f"channels must be positive, got in_channels={in_channels}, out_channels={out_channels}.")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ConfigError(
            f"groups={groups} must divide both in_channels={in_channels} and out_channels={out_channels}; "
            f"use groups=1, groups=in_channels (depthwise) or another common divisor."
        )


@BLOCKS.register("conv")
class Conv(DepthwiseConv2d):
    """``nn.Conv2d`` whose padding defaults to "same" (``dilation * (kernel_size - 1) // 2``).

    A depthwise one (``groups = in_channels = out_channels``) trains with the fast CPU backward of
    [`DepthwiseConv2d`][convzoo.ops.depthwise.DepthwiseConv2d] unless that is switched off.

    Examples:
        >>> import torch
        >>> conv = Conv(3, 16, kernel_size=3, stride=2)
        >>> conv(torch.randn(1, 3, 32, 32)).shape, conv.out_channels
        (torch.Size([1, 16, 16, 16]), 16)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        out_channels = out_channels or in_channels
        _check_channels(in_channels, out_channels, groups)
        padding = resolve_padding(kernel_size, dilation, padding, stride)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)


@BLOCKS.register("conv_norm_act", "cna")
class ConvNormAct(FusingSequential):
    """Convolution, normalisation and activation in a configurable order.

    ``order`` is any arrangement of ``conv``, ``norm`` and ``act`` joined by ``_``: the default
    ``conv_norm_act`` is the ResNet/VGG layer, ``conv_act_norm`` the ConvMixer one,
    ``norm_act_conv`` the pre-activation one. An optional ``pool`` step pools (``pool``: max or
    avg) by ``pool_size``: ``conv_pool_norm_act`` (airbench) normalises 4x fewer pixels than pooling after
    the activation. ``bias=None`` gives the conv a bias unless a norm follows it (where the norm's
    shift would make it redundant). A BatchNorm next to its activation trains fused on CPU
    ([`convzoo.ops.norm_act`][convzoo.ops.norm_act]).

    Examples:
        >>> import torch
        >>> layer = ConvNormAct(3, 32, kernel_size=3, norm="batchnorm", act="relu")
        >>> layer(torch.randn(2, 3, 8, 8)).shape, layer.out_channels, layer.conv.bias is None
        (torch.Size([2, 32, 8, 8]), 32, True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool | None = None,
        norm: LayerSpec = "batchnorm",
        act: LayerSpec = "relu",
        order: str = "conv_norm_act",
        pool: str = "max",
        pool_size: int = 2,
    ):
        super().__init__()
        steps = _parse_order(order)
        out_channels = out_channels or in_channels
        if bias is None:
            after_conv = [s for s in steps[steps.index("conv") + 1:] if s != "pool"][:1]
            bias = not (after_conv == ["norm"] and not is_none(norm))
        conv = Conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        norm_channels = in_channels if steps.index("norm") < steps.index("conv") else out_channels
        layers = {"conv": conv, "norm": make_norm(norm, norm_channels), "act": make_act(act),
                  "pool": make_pool(pool, pool_size)}
        for step in steps:
            if step == "conv" or not isinstance(layers[step], nn.Identity):
                self.add_module(step, layers[step])
        self.in_channels = in_channels
        self.out_channels = out_channels


@BLOCKS.register("norm_act")
class NormAct(FusingSequential):
    """Normalisation then activation, without a conv: the final BN-ReLU of pre-activation nets.

    Examples:
        >>> import torch
        >>> layer = NormAct(16)
        >>> layer(torch.randn(2, 16, 4, 4)).shape, layer.out_channels, [type(m).__name__ for m in layer]
        (torch.Size([2, 16, 4, 4]), 16, ['BatchNorm2d', 'ReLU'])
    """

    def __init__(self, in_channels: int, norm: LayerSpec = "batchnorm", act: LayerSpec = "relu"):
        super().__init__()
        self.norm = make_norm(norm, in_channels)
        self.act = make_act(act)
        self.in_channels = self.out_channels = in_channels
