"""Blocks that graphs need: merges (``add``, ``concat``), ``upsample``, ``identity`` and the
parameter-free ResNet shortcut.

A block fed by several layers (``from: [a, b]`` in a spec) receives ``in_channels`` as a list
and its inputs as positional arguments, in the order ``from`` names them. Whether a block takes
one input, several, or either is read from its ``in_channels`` annotation (``int``,
``Sequence[int]`` or both), so the builder needs no list of merge blocks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from convzoo.layers import LayerSpec, make_act
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["Add", "Concat", "Upsample", "Identity", "ZeroPadShortcut"]


def _at_least_two(block: str, in_channels: Sequence[int]) -> list[int]:
    channels = list(in_channels)
    if len(channels) < 2:
        raise ConfigError(
            f"{block} merges several inputs but got {len(channels)}; give the layer `from: [a, b, ...]` "
            f"naming at least two earlier layers."
        )
    return channels


@BLOCKS.register("add")
class Add(nn.Module):
    """Element-wise sum of same-shaped inputs, optionally followed by an activation.

    ``act`` applies after the sum, as in a ResNet block (``relu(main + shortcut)``).

    Examples:
        >>> merge = Add([16, 16], act="relu")
        >>> a, b = torch.randn(1, 16, 8, 8), torch.randn(1, 16, 8, 8)
        >>> merge(a, b).shape, merge.out_channels, bool((merge(a, b) == (a + b).relu()).all())
        (torch.Size([1, 16, 8, 8]), 16, True)
    """

    def __init__(self, in_channels: Sequence[int], act: LayerSpec = None):
        super().__init__()
        channels = _at_least_two("add", in_channels)
        if len(set(channels)) > 1:
            raise ConfigError(
                f"add needs inputs with equal channels, got {channels}; project the narrower input with a 1x1 "
                f"conv_norm_act (out_channels={max(channels)}) or merge with concat instead."
            )
        self.act = make_act(act)
        self.out_channels = channels[0]

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The activation of the inputs' sum."""
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return self.act(total)


@BLOCKS.register("concat", "cat")
class Concat(nn.Module):
    """Concatenation along the channel axis (DenseNet, Inception, U-Net skips).

    Examples:
        >>> merge = Concat([16, 8])
        >>> merge(torch.randn(1, 16, 8, 8), torch.randn(1, 8, 8, 8)).shape, merge.out_channels
        (torch.Size([1, 24, 8, 8]), 24)
    """

    def __init__(self, in_channels: Sequence[int]):
        super().__init__()
        self.out_channels = sum(_at_least_two("concat", in_channels))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The inputs concatenated along the channels, in ``from`` order."""
        return torch.cat(inputs, dim=1)


_UPSAMPLE_MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")


@BLOCKS.register("upsample")
class Upsample(nn.Module):
    """Resize by ``scale_factor``, or to the height and width of a second input.

    With one input it scales by ``scale_factor`` (default 2). Fed ``from: [x, reference]`` it
    resizes ``x`` to the reference's spatial size (a U-Net decoder meeting its skip): the output
    has ``x``'s channels, and odd sizes need no bookkeeping.

    Examples:
        >>> Upsample(8, scale_factor=2)(torch.randn(1, 8, 4, 4)).shape
        torch.Size([1, 8, 8, 8])
        >>> up = Upsample([8, 3], mode="bilinear")
        >>> up(torch.randn(1, 8, 4, 4), torch.randn(1, 3, 9, 9)).shape, up.out_channels
        (torch.Size([1, 8, 9, 9]), 8)
    """

    def __init__(
        self,
        in_channels: int | Sequence[int],
        scale_factor: float | None = None,
        mode: str = "nearest",
        align_corners: bool | None = None,
    ):
        super().__init__()
        if mode not in _UPSAMPLE_MODES:
            raise ConfigError(f"upsample mode={mode!r} is not known; use one of {', '.join(_UPSAMPLE_MODES)}.")
        if align_corners is not None and mode not in ("bilinear", "bicubic"):
            raise ConfigError(f"upsample align_corners only applies to bilinear/bicubic, not mode={mode!r}; drop it.")
        to_reference = not isinstance(in_channels, int)
        if to_reference:
            if len(in_channels) != 2:
                raise ConfigError(
                    f"upsample takes one input, or two (`from: [x, reference]`: resize x to reference's size); "
                    f"got {len(in_channels)}."
                )
            if scale_factor is not None:
                raise ConfigError("upsample to a reference layer's size takes no scale_factor; drop one of them.")
        elif scale_factor is None:
            scale_factor = 2.0
        if scale_factor is not None and not scale_factor > 0:
            raise ConfigError(f"upsample scale_factor must be > 0, got {scale_factor}.")
        self.scale_factor = None if scale_factor is None else float(scale_factor)
        self.mode = mode
        self.align_corners = align_corners
        self.out_channels = in_channels[0] if to_reference else in_channels

    def forward(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` resized to ``reference``'s height and width when given, else by ``scale_factor``."""
        if reference is not None:
            return F.interpolate(x, size=reference.shape[-2:], mode=self.mode, align_corners=self.align_corners)
        return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        """The scale factor and mode, for ``repr``."""
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"


@BLOCKS.register("identity")
class Identity(nn.Identity):
    """Passes its input through: a named tap point (an extra output) or a placeholder.

    Examples:
        >>> Identity(8)(torch.ones(1, 8, 2, 2)).shape, Identity(8).out_channels
        (torch.Size([1, 8, 2, 2]), 8)
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.out_channels = in_channels


@BLOCKS.register("zero_pad_shortcut")
class ZeroPadShortcut(nn.Module):
    """He et al.'s parameter-free "option A" shortcut: subsample by ``stride``, zero-pad the new channels.

    The extra ``out_channels - in_channels`` channels are split between both ends (as the
    common CIFAR ResNet code does), so a 16 -> 32 shortcut puts the input in channels 8..23.

    Examples:
        >>> skip = ZeroPadShortcut(16, 32, stride=2)
        >>> y = skip(torch.ones(1, 16, 8, 8))
        >>> y.shape, skip.out_channels, sum(p.numel() for p in skip.parameters()), float(y[0, :8].abs().sum())
        (torch.Size([1, 32, 4, 4]), 32, 0, 0.0)
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, stride: int = 1):
        super().__init__()
        out_channels = out_channels or in_channels
        if out_channels < in_channels:
            raise ConfigError(
                f"zero_pad_shortcut only adds channels ({in_channels} -> {out_channels}); use a 1x1 "
                f"conv_norm_act shortcut to reduce them."
            )
        if stride < 1:
            raise ConfigError(f"zero_pad_shortcut stride must be >= 1, got {stride}.")
        self.stride = stride
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` subsampled by ``stride`` and zero-padded to ``out_channels``."""
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad)) if self.pad != (0, 0) else x

    def extra_repr(self) -> str:
        """The channels and stride, for ``repr``."""
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
