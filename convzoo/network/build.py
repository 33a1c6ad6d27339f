"""Model specs -> networks: a meta-device pass that checks and measures, then the real build.

The spec language (layers, ``from``, ``residual``, ``repeat``/``first``, ``outputs``,
``block_defaults``) is described in :mod:`convzoo.spec`. Building happens twice:

1. On PyTorch's ``meta`` device, where no memory is allocated and shapes still propagate, every
   block copy is built and run in order. A bad spec fails here, naming the layer, the block, the
   shapes and the fix; the measured shapes fill in what the spec leaves out (a shortcut's
   channels and stride).
2. The real network is built from the arguments settled in step 1.

A chain (every layer reads the previous one, one output) becomes a :class:`ConvNet`: an
``nn.Sequential`` under ``layers``, as in convzoo 0.1, so its checkpoints load. Anything else
becomes a :class:`GraphNet`, whose ``forward`` follows a plan computed once at build time and
drops each intermediate tensor after its last reader. Both name their submodules
``layers.<layer name>`` (``layers.<name>.<copy>`` for repeats).
"""

from __future__ import annotations

import importlib
import math
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from convzoo.blocks import Residual  # importing the package also registers the built-in blocks
from convzoo.arguments import fits_annotation
from convzoo.errors import ConfigError, about
from convzoo.registry import BLOCKS
from convzoo.spec import (INPUT, LAYER_KEYS, SPEC_KEYS, Layer, interpolation_sources, load_spec, parse_layers,
                          read_spec_file)

__all__ = [
    "ConvNet", "GraphNet", "FeatureInfo", "Node", "build_model", "build_block", "check_imports_allowed", "load_spec",
    "SPEC_KEYS", "LAYER_KEYS",
]

#: The meta-device pass runs a batch of two, so batch norm in training mode accepts 1x1 maps.
_CHECK_BATCH = 2


@dataclass(frozen=True)
class Node:
    """One block copy as the builder made it: where it lives, what it reads, what it is."""

    path: str                  #: submodule path in the network, e.g. ``layers.stage2.0``
    layer: str                 #: the spec layer's name
    block: str                 #: registry name, ``residual(...)`` when wrapped
    inputs: tuple[str, ...]    #: the layers (or earlier copies) it reads; ``input`` is the network input


class FeatureInfo(list):
    """Per output: ``{"module": name, "num_chs": channels, "reduction": input size / output size}``.

    The same records and accessors as timm's ``feature_info``, so detection and segmentation
    code written for timm backbones can read a convzoo network's outputs. ``reduction`` is
    ``None`` for outputs without spatial dimensions (logits).
    """

    def channels(self) -> list[int]:
        return [info["num_chs"] for info in self]

    def reduction(self) -> list[int | float | None]:
        return [info["reduction"] for info in self]

    def module_name(self) -> list[str]:
        return [info["module"] for info in self]


class ConvNet(nn.Module):
    """A chain network built by :func:`build_model`: ``layers`` is an ``nn.Sequential``.

    ``layers`` holds one submodule per spec layer, named by the layer's ``name`` or index; a
    repeated layer is an ``nn.Sequential`` of its copies (``layers.1.0``, ``layers.1.1``, ...).
    ``nodes`` lists every block copy as built, ``feature_info`` the output's channels and reduction.

    Example:
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
        return self.layers(x)


class GraphNet(ConvNet):
    """A network whose layers read any earlier layers, with one or several outputs.

    ``forward`` runs the layers in spec order, feeding each the tensors its ``from`` names and
    dropping every tensor after its last reader. With one output it returns that tensor; with
    several, a dict ``{layer name: tensor}`` in ``outputs`` order (what torchvision's FPN and
    ``IntermediateLayerGetter`` use).

    Example:
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


def build_block(config: Mapping[str, Any], in_channels: int | Sequence[int]) -> nn.Module:
    """Build one block from ``{"block": NAME, **args}`` for ``in_channels`` input channels.

    Example:
        >>> build_block({"block": "separable", "out_channels": 3}, in_channels=3).out_channels
        3
    """
    return BLOCKS.build({**config, "in_channels": in_channels})


def _import_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(
                f"imports: could not import {module!r} ({error}). Install the package that provides it "
                f"or put it on PYTHONPATH."
            ) from None


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


# ---------------------------------------------------------------------------------------------
# the meta-device pass
# ---------------------------------------------------------------------------------------------
@dataclass
class _Copy:
    """What the real build needs for one block copy, settled on the meta device."""

    args: dict[str, Any]                        #: the block's arguments, in_channels included
    shortcut: list[dict[str, Any]] | None       #: None: no residual; []: identity; else shortcut blocks


def _shapes(xs: Sequence[torch.Tensor]) -> str:
    return " and ".join(str(tuple(x.shape[1:])) for x in xs)


def _check_arity(layer: Layer) -> None:
    annotation = BLOCKS.annotation(layer.block, "in_channels")
    where, count = layer.where(), len(layer.inputs)
    if count > 1 and not fits_annotation([1, 1], annotation):
        raise ConfigError(
            f"{where}: the block takes one input but `from` names {count} ({', '.join(layer.inputs)}); "
            f"merge them first with an add or concat layer, or read one of them."
        )
    if count == 1 and not fits_annotation(1, annotation):
        raise ConfigError(
            f"{where}: the block merges several inputs; give it `from: [a, b, ...]` naming at least two earlier layers."
        )
    if count > 1 and layer.shortcut is not None:
        raise ConfigError(f"{where}: residual wraps a single-input block, but `from` names {count} layers; drop residual.")


def _in_channels(where: str, args: Mapping[str, Any], xs: Sequence[torch.Tensor], source: str) -> int | list[int]:
    channels = [int(x.shape[1]) for x in xs]
    inferred: int | list[int] = channels[0] if len(channels) == 1 else channels
    given = args.get("in_channels", inferred)
    if given != inferred:
        raise ConfigError(
            f"{where}: in_channels={given} but {source} {inferred} channels; drop in_channels from the spec "
            f"(it is inferred) or fix the earlier layer's out_channels."
        )
    return inferred


def _build(where: str, block: str, args: dict[str, Any]) -> nn.Module:
    try:
        module = BLOCKS.resolve({BLOCKS.key: block, **args}, where=where).built
    except ConfigError:
        raise  # already names the layer
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{where}: building it with {args} failed: {error}") from error
    if not isinstance(getattr(module, "out_channels", None), int):
        raise ConfigError(
            f"{where}: {type(module).__name__} has no integer `out_channels` attribute; every block must report "
            f"its output channels so the next layer can be built."
        )
    return module


#: Arguments that are a spatial window, in any block: each must fit inside its (padded) input.
_WINDOWS = ("kernel_size", "pool_size", "patch_size")


def _window_too_large(args: Mapping[str, Any], xs: Sequence[torch.Tensor]) -> tuple[str | None, str]:
    """The window argument the block was given that is larger than its padded input, and the accepted range."""
    padding = args.get("padding") or 0
    if len(xs) != 1 or xs[0].dim() != 4 or not isinstance(padding, int):
        return None, ""  # "same" (or inferred) padding fits any window
    height, width = xs[0].shape[2:]
    limit = min(height, width) + 2 * padding
    padded = f" padded by {padding}" if padding else ""
    for name in _WINDOWS:
        window = args.get(name)
        if isinstance(window, int) and window > limit:
            return name, (f"{name}={window} is larger than the {height}x{width} input{padded}: "
                          f"it must be from 1 to {limit}")
    return None, ""


def _run(where: str, module: nn.Module, xs: Sequence[torch.Tensor],
         args: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Run a block (built with ``args``) on meta tensors: shape problems become ConfigErrors; a bug keeps its
    traceback."""
    try:
        y = module(*xs)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    except NotImplementedError as error:
        _add_note(error, f"while running {where} on the meta device (convzoo checks shapes there before building)")
        raise
    except (RuntimeError, ValueError) as error:  # what torch raises for shapes that do not fit
        window, too_large = _window_too_large(args or {}, xs)
        fix = ("inputs merged by one layer must agree in height and width (and in channels for add): resize one "
               "with upsample or pool, or fix the strides" if len(xs) > 1 else too_large or
               "check the earlier layers' strides, kernels and padding or the spec's input_size")
        noun = "inputs of shapes" if len(xs) > 1 else "its input of shape"
        raise about(ConfigError(
            f"{where}: cannot run on {noun} {_shapes(xs)} (channels, height, width): {error}. Fix: {fix}."
        ), window) from None
    except Exception as error:  # a bug in the block itself: show it as one, with the layer named
        _add_note(error, f"while running {where} on inputs of shape {_shapes(xs)}")
        raise
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"{where}: forward returned {type(y).__name__}; a block must return one tensor.")
    if y.dim() == 4 and min(y.shape[2:]) < 1:
        raise ConfigError(
            f"{where}: output would be {y.shape[2]}x{y.shape[3]} for a {_shapes(xs)} input; it must be at least 1x1 "
            f"(reduce the stride/kernel or raise input_size)."
        )
    return y


def _add_note(error: BaseException, note: str) -> None:
    if hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(note)


def _residual(where: str, layer: Layer, x: torch.Tensor, y: torch.Tensor) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The skip path of one copy: the identity where ``block`` keeps the shape, else the shortcut blocks."""
    if y.shape == x.shape:
        return [], x + y
    if not layer.shortcut:
        raise ConfigError(
            f"{where}: residual needs a shape-preserving block, but it maps {tuple(x.shape[1:])} to "
            f"{tuple(y.shape[1:])}; drop `residual: true`, keep out_channels/stride unchanged, or give the skip "
            f"its own blocks: residual: {{block: conv_norm_act, kernel_size: 1, act: none}}."
        )
    if x.dim() != 4 or y.dim() != 4 or y.shape[2] > x.shape[2] or y.shape[3] > x.shape[3]:
        raise ConfigError(f"{where}: cannot infer a shortcut from {tuple(x.shape[1:])} to {tuple(y.shape[1:])}; "
                          f"give the shortcut blocks' stride and out_channels explicitly.")
    stride = math.ceil(x.shape[2] / y.shape[2])
    skip, channels, specs, stride_set = x, int(x.shape[1]), [], False
    for i, entry in enumerate(layer.shortcut):
        args = {k: v for k, v in entry.items() if k != "block"}
        params = BLOCKS.signature(entry["block"]).parameters
        if "out_channels" in params:
            args.setdefault("out_channels", int(y.shape[1]))
        if "stride" in params and not stride_set:
            args.setdefault("stride", stride)
            stride_set = True
        args["in_channels"] = channels
        part = f"{where} residual[{i}] (block {entry['block']!r})"
        module = _build(part, entry["block"], args)
        skip = _run(part, module, [skip], args)
        channels = module.out_channels
        specs.append({"block": entry["block"], **args})
    if skip.shape != y.shape:
        raise ConfigError(
            f"{where}: the shortcut gives {tuple(skip.shape[1:])} but the block gives {tuple(y.shape[1:])}; "
            f"they must match to be added. Give the shortcut blocks out_channels/stride that reproduce the block's "
            f"output (the inferred stride was {stride})."
        )
    return specs, skip + y


def _measure(spec: Mapping[str, Any], layers: Sequence[Layer]) -> tuple[dict[str, list[_Copy]], dict[str, torch.Size]]:
    """Build and run every block copy on meta tensors; the settled arguments and each layer's output shape."""
    values = {INPUT: torch.empty(_CHECK_BATCH, spec["in_channels"], *spec["input_size"])}
    plans: dict[str, list[_Copy]] = {}
    previous = INPUT
    for layer in layers:
        _check_arity(layer)
        xs = [values[name] for name in layer.inputs]
        source = ("the previous layer gives" if layer.inputs == (previous,) else
                  f"{', '.join(map(repr, layer.inputs))} give" if len(layer.inputs) > 1 else f"{layer.inputs[0]!r} gives")
        copies = []
        for copy in range(layer.repeat):
            where = layer.where(copy)
            args = {**layer.args, **(layer.first if copy == 0 else {})}
            args["in_channels"] = _in_channels(where, args, xs, source if copy == 0 else "the previous copy gives")
            try:
                y = _run(where, _build(where, layer.block, args), xs, args)
            except ConfigError as error:
                raise about(error, layer=layer.index)
            shortcut = None
            if layer.shortcut is not None:
                shortcut, y = _residual(where, layer, xs[0], y)
            copies.append(_Copy(args, shortcut))
            xs = [y]
        plans[layer.name] = copies
        values[layer.name] = xs[0]
        previous = layer.name
    return plans, {name: value.shape[1:] for name, value in values.items()}


# ---------------------------------------------------------------------------------------------
# the real build
# ---------------------------------------------------------------------------------------------
def _make(specs: Sequence[Mapping[str, Any]]) -> nn.Module:
    modules = [BLOCKS.get(s["block"])(**{k: v for k, v in s.items() if k != "block"}) for s in specs]
    return modules[0] if len(modules) == 1 else nn.Sequential(*modules)


def _label(block: str, shortcut: list[dict[str, Any]] | None) -> str:
    if shortcut is None:
        return block
    if not shortcut:
        return f"residual({block})"
    return f"residual({block}, shortcut={'+'.join(s['block'] for s in shortcut)})"


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
    _import_modules(spec["imports"])
    try:
        layers = parse_layers(spec, prune=outputs is not None)
        if len(layers) < len(spec["layers"]):  # store what was built, names pinned, so the spec rebuilds this network
            spec["layers"] = [{**spec["layers"][layer.index], "name": layer.name} for layer in layers]
        with torch.device("meta"):
            plans, shapes = _measure(spec, layers)
    except ConfigError as error:
        raise _named_by_the_key_written(error, written) from None
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    nodes = []
    for layer in layers:
        copies = []
        for index, copy in enumerate(plans[layer.name]):
            module = BLOCKS.get(layer.block)(**copy.args)
            if copy.shortcut is not None:
                module = Residual(module, _make(copy.shortcut) if copy.shortcut else None)
            copies.append(module)
            repeated = layer.repeat > 1
            nodes.append(Node(
                path=f"layers.{layer.name}" + (f".{index}" if repeated else ""),
                layer=layer.name,
                block=_label(layer.block, copy.shortcut),
                inputs=layer.inputs if index == 0 else (f"{layer.name}.{index - 1}",),
            ))
        modules[layer.name] = nn.Sequential(*copies) if layer.repeat > 1 else copies[0]
    outputs = spec["outputs"] or [layers[-1].name]
    info = _feature_info(spec, outputs, shapes)
    if _is_chain(layers, outputs):
        return ConvNet(modules, spec, nodes, info)
    return GraphNet(modules, spec, nodes, info, wiring=[(layer.name, layer.inputs) for layer in layers])
