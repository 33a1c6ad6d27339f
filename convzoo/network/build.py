"""Model specs -> networks: [`build_model`][convzoo.network.build.build_model] runs the build pipeline's stages in a row.

1. parse ([`convzoo.specs.parse`][convzoo.specs.parse]): a file, dict or node -> a plain, checked spec;
2. resolve ([`convzoo.specs.resolve`][convzoo.specs.resolve]): the spec -> its [`LayerGraph`][convzoo.specs.resolve.LayerGraph], one
   [`Layer`][convzoo.specs.resolve.Layer] per layer, arguments checked against the blocks' signatures;
3. infer shapes ([`convzoo.network.shapes`][convzoo.network.shapes]): every block copy built and run once on ``meta``,
   settled into a [`Node`][convzoo.network.shapes.Node];
4. build ([`assemble`][convzoo.network.build.assemble], here): each node's real module
   ([`Node.construct`][convzoo.network.shapes.Node.construct]), from the settled call, into
5. execute ([`convzoo.network.nets`][convzoo.network.nets]): a [`ConvNet`][convzoo.network.nets.ConvNet] (a chain) or a [`GraphNet`][convzoo.network.nets.GraphNet].

Steps 1 and 2 are [`resolve`][convzoo.specs.resolve.resolve]: the static check of a spec, which builds nothing.

The spec language (layers, ``from``, ``residual``, ``repeat``/``first``, ``outputs``,
``block_defaults``) is described in [`convzoo.specs`][convzoo.specs].
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

import convzoo.blocks  # noqa: F401  (registers the built-in blocks)
from convzoo.errors import ConfigError
from convzoo.network.nets import ConvNet, FeatureInfo, GraphNet
from convzoo.network.shapes import Node, infer_shapes
from convzoo.registry import BLOCKS
from convzoo.specs.parse import SPEC_KEYS, load_spec
from convzoo.specs.resolve import INPUT, LAYER_KEYS, LayerGraph, resolve

__all__ = [
    "ConvNet", "GraphNet", "FeatureInfo", "Node", "assemble", "build_model", "build_block", "load_spec",
    "SPEC_KEYS", "LAYER_KEYS",
]


def build_block(config: Mapping[str, Any], in_channels: int | Sequence[int]) -> nn.Module:
    """Build one block from ``{"block": NAME, **args}`` for ``in_channels`` input channels.

    The block's arguments are checked against its signature first (unknown names with
    did-you-mean, missing ones, types and ranges), as in a spec layer.

    Args:
        config: the block's registry name under ``block`` (an alias works) and its arguments.
        in_channels: the input's channels; a list for a block that reads several inputs (``concat``).

    Returns:
        The built module.

    Raises:
        ConfigError: an unknown block, or arguments that do not fit its signature.

    Examples:
        >>> build_block({"block": "separable", "out_channels": 3}, in_channels=3).out_channels
        3
        >>> block = build_block({"block": "conv_norm_act", "out_channels": 16, "stride": 2}, in_channels=3)
        >>> block(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 16, 16, 16])
    """
    return BLOCKS.build({**config, "in_channels": in_channels})


def build_model(spec: Mapping[str, Any] | DictConfig | str | Path | LayerGraph,
                outputs: Sequence[str] | str | None = None) -> ConvNet:
    """Build a network from a model spec (dict, OmegaConf node, or YAML file path).

    The spec is parsed and checked, each block copy is built and run once on the ``meta`` device
    (so a shape mismatch is reported, naming the layer, before any real tensor is allocated), and
    the network is built from the settled arguments. ``outputs`` overrides the spec's outputs, e.g.
    to use a classifier's stages as a backbone; layers that no output depends on are then left out.

    Args:
        spec: a mapping, an OmegaConf node, or the path of a YAML file (the spec language is
            described in [`convzoo.specs`][convzoo.specs]); or a spec resolved already
            ([`resolve`][convzoo.specs.resolve.resolve]'s [`LayerGraph`][convzoo.specs.resolve.LayerGraph]), which is not resolved again.
        outputs: layer names to return instead of the spec's ``outputs`` (one name or several).

    Returns:
        A [`ConvNet`][convzoo.network.nets.ConvNet] for a chain (every layer reads the previous one, one output),
        anything else a [`GraphNet`][convzoo.network.nets.GraphNet], in training mode. No init policy is applied here
        ([`apply_init`][convzoo.weight_init.apply.apply_init] does that).

    Raises:
        ConfigError: anything wrong in the spec, led by the key the user wrote, then the layer.

    Examples:
        >>> from convzoo.config import config_dir
        >>> net = build_model(config_dir() / "model" / "convmixer.yaml")
        >>> sum(p.numel() for p in net.parameters())
        594186
        >>> backbone = build_model(config_dir() / "model" / "convmixer.yaml", outputs="mixer")
        >>> backbone.feature_info.channels()
        [256]
    """
    if isinstance(spec, LayerGraph) and outputs is None:
        graph = spec
    else:  # names its own errors: it is also the static check, called alone
        graph = resolve(spec.spec if isinstance(spec, LayerGraph) else spec, outputs)
    try:
        with torch.device("meta"):
            settled, shapes = infer_shapes(graph)
        network = assemble(graph, settled, shapes)
    except ConfigError as error:  # led by the spec key the user wrote, as resolve's are
        raise graph.named(error) from None
    return network


def assemble(graph: LayerGraph, settled: Mapping[str, Sequence[Node]], shapes: Mapping[str, torch.Size]) -> ConvNet:
    """The network of a resolved spec, each block copy built from its settled [`Node`][convzoo.network.shapes.Node]: a [`ConvNet`][convzoo.network.nets.ConvNet]
    for a chain (every layer reads the previous one, one output), else a [`GraphNet`][convzoo.network.nets.GraphNet].

    Args:
        graph: the resolved spec ([`resolve`][convzoo.specs.resolve.resolve]).
        settled: per layer name, its copies' nodes as shape inference settled them.
        shapes: per layer name, its output shape without the batch dimension.

    Returns:
        The network, its modules on the current default device.
    """
    modules = OrderedDict(
        (name, nn.Sequential(*(node.construct() for node in nodes)) if len(nodes) > 1 else nodes[0].construct())
        for name, nodes in settled.items()
    )
    nodes = [node for copies in settled.values() for node in copies]
    info = FeatureInfo(_feature(name, shapes[name], graph.spec["input_size"][0]) for name in graph.outputs)
    previous = [INPUT] + [layer.name for layer in graph.layers[:-1]]
    chain = list(graph.outputs) == [graph.layers[-1].name] and all(
        layer.inputs == (before,) for layer, before in zip(graph.layers, previous))
    if chain:
        return ConvNet(modules, graph.spec, nodes, info)
    return GraphNet(modules, graph.spec, nodes, info, wiring=[(layer.name, layer.inputs) for layer in graph.layers])


def _feature(name: str, shape: torch.Size, input_height: int) -> dict[str, Any]:
    """One ``feature_info`` record; ``reduction`` is ``None`` for an output without spatial dimensions."""
    reduction = None
    if len(shape) == 3:
        ratio = input_height / shape[1]
        reduction = int(ratio) if ratio == int(ratio) else ratio
    return {"module": name, "num_chs": int(shape[0]), "reduction": reduction}
