"""Model specs -> networks: :func:`build_model` runs the build pipeline's stages in a row.

1. parse (:mod:`convzoo.specs.parse`): a file, dict or node -> a plain, checked spec;
2. resolve (:mod:`convzoo.specs.resolve`): the spec -> one :class:`~convzoo.specs.resolve.Layer` per layer;
3. infer shapes (:mod:`convzoo.network.shapes`): every block copy built and run once on ``meta``,
   its arguments settled;
4. build: the real modules, from the settled arguments;
5. execute (:mod:`convzoo.network.nets`): a :class:`ConvNet` (a chain) or a :class:`GraphNet`.

The spec language (layers, ``from``, ``residual``, ``repeat``/``first``, ``outputs``,
``block_defaults``) is described in :mod:`convzoo.specs`.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from convzoo.blocks import Residual  # importing the package also registers the built-in blocks
from convzoo.errors import ConfigError, about
from convzoo.network.nets import ConvNet, FeatureInfo, GraphNet, Node
from convzoo.network.shapes import measure
from convzoo.registry import BLOCKS
from convzoo.specs.parse import SPEC_KEYS, interpolation_sources, load_spec, read_spec_file
from convzoo.specs.resolve import INPUT, LAYER_KEYS, Layer, parse_layers

__all__ = [
    "ConvNet", "GraphNet", "FeatureInfo", "Node", "build_model", "build_block", "check_imports_allowed", "load_spec",
    "SPEC_KEYS", "LAYER_KEYS",
]


def build_block(config: Mapping[str, Any], in_channels: int | Sequence[int]) -> nn.Module:
    """Build one block from ``{"block": NAME, **args}`` for ``in_channels`` input channels.

    Example:
        >>> build_block({"block": "separable", "out_channels": 3}, in_channels=3).out_channels
        3
    """
    return BLOCKS.build({**config, "in_channels": in_channels})


def check_imports_allowed(spec: Mapping[str, Any], source: str, allow_imports: bool) -> None:
    """Refuse a spec that came from a file (a checkpoint) and names modules not imported yet in ``imports:``.

    Importing a module runs its code, so a downloaded checkpoint must not choose what gets imported:
    its modules are imported only with ``allow_imports=True``, or when the caller imported them
    already (then building imports nothing). A spec the caller wrote is theirs: build it directly.

    Example:
        >>> check_imports_allowed({"imports": ["math"]}, "checkpoint 'a.ckpt'", allow_imports=False)  # imported already
        >>> check_imports_allowed({"imports": ["my_blocks"]}, "checkpoint 'a.ckpt'", allow_imports=False)
        Traceback (most recent call last):
        convzoo.errors.ConfigError: checkpoint 'a.ckpt': its model spec imports my_blocks (imports:), and importing a module runs its code. If you trust it, import it yourself first or pass allow_imports=True (--allow-imports on the command line).
    """
    modules = spec.get("imports") or []
    modules = [modules] if isinstance(modules, str) else [str(m) for m in modules]
    new = [module for module in modules if module not in sys.modules]
    if new and not allow_imports:
        them = "them" if len(new) > 1 else "it"
        raise ConfigError(
            f"{source}: its model spec imports {', '.join(new)} (imports:), and importing a module runs its code. "
            f"If you trust {them}, import {them} yourself first or pass allow_imports=True (--allow-imports on the "
            f"command line)."
        )


def _make(specs: Sequence[Mapping[str, Any]]) -> nn.Module:
    modules = [BLOCKS.get(s["block"])(**{k: v for k, v in s.items() if k != "block"}) for s in specs]
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def _feature_info(spec: Mapping[str, Any], outputs: Sequence[str], shapes: Mapping[str, torch.Size]) -> FeatureInfo:
    records = []
    for name in outputs:
        shape = shapes[name]
        reduction = None
        if len(shape) == 3:
            ratio = spec["input_size"][0] / shape[1]
            reduction = int(ratio) if ratio == int(ratio) else ratio
        records.append({"module": name, "num_chs": int(shape[0]), "reduction": reduction})
    return FeatureInfo(records)


def _is_chain(layers: Sequence[Layer], outputs: Sequence[str]) -> bool:
    previous = [INPUT] + [layer.name for layer in layers[:-1]]
    return list(outputs) == [layers[-1].name] and all(
        layer.inputs == (before,) for layer, before in zip(layers, previous)
    )


def _named_by_the_key_written(error: ConfigError, written: Mapping[str, Any] | DictConfig) -> ConfigError:
    """``error``, led by the spec key the user wrote when an interpolation brought the bad argument to the layer.

    ``dim=0`` reaching a layer as ``out_channels`` reads ``dim=0 is used by layers[0] 'stem' ...: out_channels=0 ...``.
    """
    key = interpolation_sources(written).get((error.layer, error.argument))
    if key is None:
        return error
    node = written if isinstance(written, DictConfig) else OmegaConf.create(dict(written))
    return about(ConfigError(f"{key}={OmegaConf.select(node, key)!r} is used by {error}"), error.argument, error.layer)


def build_model(spec: Mapping[str, Any] | DictConfig | str | Path, outputs: Sequence[str] | str | None = None) -> ConvNet:
    """Build a network from a model spec (dict, OmegaConf node, or YAML file path).

    ``outputs`` overrides the spec's outputs, e.g. to use a classifier's stages as a backbone;
    layers that no output depends on are then left out. A chain gives a :class:`ConvNet`,
    anything else a :class:`GraphNet`.

    Example:
        >>> from convzoo.config import config_dir
        >>> net = build_model(config_dir() / "model" / "convmixer.yaml")
        >>> sum(p.numel() for p in net.parameters())
        594186
    """
    written = read_spec_file(spec) if isinstance(spec, (str, Path)) else spec
    spec = load_spec(written)
    if outputs is not None:
        spec["outputs"] = [outputs] if isinstance(outputs, str) else list(outputs)
    try:
        layers = parse_layers(spec, prune=outputs is not None)
        if len(layers) < len(spec["layers"]):  # store what was built, names pinned, so the spec rebuilds this network
            spec["layers"] = [{**spec["layers"][layer.index], "name": layer.name} for layer in layers]
        with torch.device("meta"):
            settled, shapes = measure(spec, layers)
    except ConfigError as error:
        raise _named_by_the_key_written(error, written) from None
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    nodes = []
    for layer in layers:
        copies = []
        for node in settled[layer.name]:
            module = BLOCKS.get(layer.block)(**node.args)
            if node.shortcut is not None:
                module = Residual(module, _make(node.shortcut) if node.shortcut else None)
            copies.append(module)
        nodes.extend(settled[layer.name])
        modules[layer.name] = nn.Sequential(*copies) if layer.repeat > 1 else copies[0]
    outputs = spec["outputs"] or [layers[-1].name]
    info = _feature_info(spec, outputs, shapes)
    if _is_chain(layers, outputs):
        return ConvNet(modules, spec, nodes, info)
    return GraphNet(modules, spec, nodes, info, wiring=[(layer.name, layer.inputs) for layer in layers])
