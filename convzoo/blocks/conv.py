"""Plain convolution and conv -> norm -> activation."""

from __future__ import annotations

from torch import nn

from convzoo.layers import LayerSpec, is_none, make_act, make_norm, resolve_padding
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["Conv", "ConvNormAct"]

_ORDERS = ("conv_norm_act", "conv_act_norm", "norm_act_conv", "act_conv_norm", "norm_conv_act", "act_norm_conv")


def _check_channels(in_channels: int, out_channels: int, groups: int) -> None:
    if in_channels < 1 or out_channels < 1:
        raise ConfigError(f"channels must be positive, got in_channels={in_channels}, out_channels={out_channels}.")
    if groups < 1 or in_channels % groups or out_channels % groups:
        raise ConfigError(
            f"groups={groups} must divide both in_channels={in_channels} and out_channels={out_channels}; "
            f"use groups=1, groups=in_channels (depthwise) or another common divisor."
        )


@BLOCKS.register("conv")
class Conv(nn.Conv2d):
    """``nn.Conv2d`` whose padding defaults to "same" (``dilation * (kernel_size - 1) // 2``).

    Example:
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
class ConvNormAct(nn.Sequential):
    """Convolution, normalisation and activation in a configurable order.

    ``order`` is any arrangement of ``conv``, ``norm`` and ``act`` joined by ``_``: the default
    ``conv_norm_act`` is the ResNet/VGG layer, ``conv_act_norm`` the ConvMixer one,
    ``norm_act_conv`` the pre-activation one. ``bias=None`` gives the conv a bias unless a norm
    directly follows it (where the norm's shift would make it redundant).

    Example:
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
    ):
        super().__init__()
        if order not in _ORDERS:
            raise ConfigError(f"order={order!r} is not an arrangement of conv, norm and act; use one of {', '.join(_ORDERS)}.")
        out_channels = out_channels or in_channels
        steps = order.split("_")
        if bias is None:
            after_conv = steps[steps.index("conv") + 1] if steps[-1] != "conv" else None
            bias = not (after_conv == "norm" and not is_none(norm))
        conv = Conv(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        norm_channels = in_channels if steps.index("norm") < steps.index("conv") else out_channels
        layers = {"conv": conv, "norm": make_norm(norm, norm_channels), "act": make_act(act)}
        for step in steps:
            if step == "conv" or not isinstance(layers[step], nn.Identity):
                self.add_module(step, layers[step])
        self.in_channels = in_channels
        self.out_channels = out_channels
