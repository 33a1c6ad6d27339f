"""The networks a spec builds, the last stage of the build pipeline (execute).

A chain (every layer reads the previous one, one output) is a [`ConvNet`][convzoo.network.nets.ConvNet]: an ``nn.Sequential``
under ``layers``, as in convzoo 0.1, so its checkpoints load. Anything else is a [`GraphNet`][convzoo.network.nets.GraphNet],
whose ``forward`` follows a plan computed once at build time and drops each intermediate tensor
after its last reader. Both name their submodules ``layers.<layer name>`` (``layers.<name>.<copy>``
for repeats) and describe their outputs in ``feature_info``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from convzoo.specs.resolve import INPUT

if TYPE_CHECKING:
    from convzoo.network.shapes import Node

__all__ = ["ConvNet", "FeatureInfo", "GraphNet"]


class FeatureInfo(list):
    """Per output: ``{"module": name, "num_chs": channels, "reduction": input size / output size}``.

    The same records and accessors as timm's ``feature_info``, so detection and segmentation
    code written for timm backbones can read a convzoo network's outputs. ``reduction`` is
    ``None`` for outputs without spatial dimensions (logits).

    Examples:
        >>> from convzoo import build_model
        >>> net = build_model({"in_channels": 3, "layers": [
        ...     {"name": "stem", "block": "conv", "out_channels": 8, "stride": 2}]})
        >>> net.feature_info
        [{'module': 'stem', 'num_chs': 8, 'reduction': 2}]
        >>> net.feature_info.channels(), net.feature_info.reduction(), net.feature_info.module_name()
        ([8], [2], ['stem'])
    """

    def channels(self) -> list[int]:
        """The channels of each output, in ``outputs`` order."""
        return [info["num_chs"] for info in self]

    def reduction(self) -> list[int | float | None]:
        """Input size / output size of each output (``None`` for one without spatial dimensions)."""
        return [info["reduction"] for info in self]

    def module_name(self) -> list[str]:
        """The layer name of each output."""
        return [info["module"] for info in self]


class ConvNet(nn.Module):
    """A chain network built by [`build_model`][convzoo.network.build.build_model]: ``layers`` is an ``nn.Sequential``.

    ``layers`` holds one submodule per spec layer, named by the layer's ``name`` or index; a
    repeated layer is an ``nn.Sequential`` of its copies (``layers.1.0``, ``layers.1.1``, ...).
    ``nodes`` lists every block copy as built, ``feature_info`` the output's channels and reduction.
    Built by [`assemble`][convzoo.network.build.assemble], not by hand.

    Args:
        layers: one module per spec layer, by name, in order.
        spec: the resolved spec (kept as ``spec``; it rebuilds the network).
        nodes: every block copy as built.
        feature_info: the outputs' records.

    Attributes:
        layers: the ``nn.Sequential`` of the spec's layers.
        spec: the plain spec the network was built from (after pruning, only the kept layers).
        in_channels: image channels the network takes.
        num_classes: the spec's ``num_classes`` (``None`` when it has none).
        input_size: ``(height, width)`` the spec was checked at (the summary's default input).
        nodes: every block copy, as [`Node`][convzoo.network.shapes.Node] records.
        feature_info: a [`FeatureInfo`][convzoo.network.nets.FeatureInfo], one record per output.
        outputs: the output layers' names.
        out_channels: the output's channels (a list with several outputs).

    Examples:
        >>> from convzoo import build_model
        >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        ...     {"block": "conv_norm_act", "out_channels": 16}, {"block": "classifier"}]})
        >>> net(torch.randn(2, 3, 32, 32)).shape, type(net).__name__
        (torch.Size([2, 10]), 'ConvNet')
    """

    def __init__(self, layers: OrderedDict[str, nn.Module], spec: dict[str, Any], nodes: Sequence[Node],
                 feature_info: FeatureInfo):
        super().__init__()
        self.layers = nn.Sequential(layers)
        self.spec = spec
        self.in_channels: int = spec["in_channels"]
        self.num_classes: int | None = spec.get("num_classes")
        self.input_size: tuple[int, int] = tuple(spec["input_size"])
        self.nodes = tuple(nodes)
        self.feature_info = feature_info
        self.outputs = tuple(feature_info.module_name())
        channels = feature_info.channels()
        self.out_channels: int | list[int] = channels[0] if len(channels) == 1 else channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the layers in order on a batch ``x`` of shape ``(N, in_channels, H, W)``."""
        return self.layers(x)


class GraphNet(ConvNet):
    """A network whose layers read any earlier layers, with one or several outputs.

    ``forward`` runs the layers in spec order, feeding each the tensors its ``from`` names and
    dropping every tensor after its last reader. With one output it returns that tensor; with
    several, a dict ``{layer name: tensor}`` in ``outputs`` order (what torchvision's FPN and
    ``IntermediateLayerGetter`` use).

    Args:
        layers: one module per spec layer, by name, in order.
        spec: the resolved spec.
        nodes: every block copy as built.
        feature_info: the outputs' records.
        wiring: ``(layer name, the names it reads)`` per layer, in order.

    Attributes:
        plan: ``(layer, inputs, tensors dropped after it)`` per layer, made once from ``wiring``.

    Examples:
        >>> from convzoo import build_model
        >>> net = build_model({"in_channels": 3, "layers": [
        ...     {"name": "stem", "block": "conv_norm_act", "out_channels": 8},
        ...     {"name": "down", "block": "conv_norm_act", "out_channels": 16, "stride": 2},
        ...     {"name": "up", "block": "upsample", "from": ["down", "stem"]},
        ...     {"name": "merged", "block": "concat", "from": ["up", "stem"]}],
        ...     "outputs": ["down", "merged"]})
        >>> {name: tuple(y.shape) for name, y in net(torch.randn(1, 3, 32, 32)).items()}
        {'down': (1, 16, 16, 16), 'merged': (1, 24, 32, 32)}
        >>> net.feature_info.channels(), net.feature_info.reduction()
        ([16, 24], [2, 1])
    """

    def __init__(self, layers: OrderedDict[str, nn.Module], spec: dict[str, Any], nodes: Sequence[Node],
                 feature_info: FeatureInfo, wiring: Sequence[tuple[str, tuple[str, ...]]]):
        super().__init__(layers, spec, nodes, feature_info)
        self.plan = _plan(wiring, self.outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        """Run the plan on ``x``: the one output's tensor, or ``{layer name: tensor}`` for several outputs."""
        values = {INPUT: x}
        for name, inputs, release in self.plan:
            values[name] = getattr(self.layers, name)(*[values[source] for source in inputs])
            for done in release:
                del values[done]
        if len(self.outputs) == 1:
            return values[self.outputs[0]]
        return {name: values[name] for name in self.outputs}


def _plan(wiring: Sequence[tuple[str, tuple[str, ...]]], outputs: Sequence[str]
          ) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """``(layer, inputs, tensors to drop after it)`` per layer: each tensor lives until its last reader."""
    last_reader = {source: index for index, (_, inputs) in enumerate(wiring) for source in inputs}
    steps = []
    for index, (name, inputs) in enumerate(wiring):
        release = tuple(s for s in dict.fromkeys(inputs) if last_reader[s] == index and s not in outputs)
        steps.append((name, inputs, release))
    return tuple(steps)
