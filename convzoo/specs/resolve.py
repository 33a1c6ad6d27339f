"""Resolving a spec into its layer graph, the second stage of building a network: the spec's
imports, block lookup, ``block_defaults``, width and depth multipliers, names, ``from``,
``repeat``/``first``, ``residual``, arity, arguments, outputs and pruning, each decided once,
into one [`Layer`][convzoo.specs.resolve.Layer] record per spec layer. Nothing is built here: the layers' arguments are
checked against their blocks' signatures, not run.

Examples:
    >>> graph = resolve({"num_classes": 10, "layers": [
    ...     {"name": "stem", "block": "conv", "out_channels": 8}, {"block": "classifier"}]})
    >>> [(layer.name, layer.inputs) for layer in graph.layers], graph.outputs
    ([('stem', ('input',)), ('1', ('stem',))], ('1',))
    >>> resolve({"layers": [{"block": "conv", "out_channels": 8, "kernel_size": 0}]})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    convzoo.errors.ConfigError: layers[0] (block 'conv'): block 'conv': kernel_size=0 is out of range; it must be >= 1.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from convzoo.arguments import builder_signature, fits_annotation, type_hints
from convzoo.errors import ConfigError, about, at, suggest
from convzoo.registry import BLOCKS
from convzoo.specs.parse import interpolation_sources, load_spec, read_spec_file

__all__ = ["INPUT", "LAYER_KEYS", "BlockCall", "Layer", "LayerGraph", "parse_layers", "resolve"]


INPUT = "input"
"""The name under which layers read the network input in ``from``."""

LAYER_KEYS = ("block", "name", "from", "repeat", "first", "residual")
"""Keys of a layer that are not arguments of its block."""

_RESERVED = set(dir(nn.Sequential())) | {INPUT}


@dataclass(frozen=True)
class BlockCall:
    """A registered block and the arguments it is called with: the one record of a call, from the spec
    (resolve) through the shapes (which settle ``in_channels`` and the inferred arguments) to the module.

    Attributes:
        block: the registry name as the spec wrote it (an alias stays one).
        builder: the registered class or function.
        args: its arguments (``block_defaults`` applied; ``in_channels`` comes with the shapes).

    Examples:
        >>> from convzoo import BLOCKS
        >>> call = BlockCall("conv", BLOCKS.get("conv"), {"out_channels": 8})
        >>> call.settled(in_channels=3).args
        {'out_channels': 8, 'in_channels': 3}
    """

    block: str
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    args: dict[str, Any] = field(default_factory=dict)
    #: the argument names the builder takes (read once, from its signature, when the call is made)
    accepts: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def settled(self, **args: Any) -> BlockCall:
        """The same call with ``args`` added or replaced (what a copy's ``first`` and the shapes decide)."""
        return replace(self, args={**self.args, **args})


@dataclass(frozen=True)
class Layer:
    """One spec layer, checked: its call (block, builder, arguments) and what resolve decided around it.

    Attributes:
        index: its position in the spec's ``layers``.
        name: its ``name``, or its index as a string.
        call: the block and its arguments (``block_defaults`` applied; ``in_channels`` comes with the shapes).
        inputs: the layers it reads (``from``); ``input`` is the network input.
        repeat: how many stacked copies.
        first: the arguments the first copy takes instead (``first:``).
        shortcut: ``None``: no residual; ``()``: the identity; else the shortcut path's calls.
        named: whether the spec gave the layer a ``name`` (errors then quote it).
    """

    index: int
    name: str
    call: BlockCall
    inputs: tuple[str, ...]
    repeat: int = 1
    first: dict[str, Any] = field(default_factory=dict)
    shortcut: tuple[BlockCall, ...] | None = None
    named: bool = True

    @property
    def block(self) -> str:
        """The registry name of its block, as the spec wrote it."""
        return self.call.block

    def where(self, copy: int | None = None) -> str:
        """How error messages name this layer: ``layers[3] 'stage2' copy 1 (block 'basic')``."""
        label = f" {self.name!r}" if self.named else ""
        copy_part = f" copy {copy}" if copy is not None and self.repeat > 1 else ""
        return f"layers[{self.index}]{label}{copy_part} (block {self.block!r})"

    def copy_call(self, copy: int) -> BlockCall:
        """The call of one copy: ``first`` wins for the first."""
        return self.call.settled(**(self.first if copy == 0 else {}))


@dataclass(frozen=True)
class LayerGraph:
    """A spec resolved (what [`resolve`][convzoo.specs.resolve.resolve] returns and shape inference reads): its layers in order and its outputs.

    Attributes:
        spec: the plain spec the network stores; after pruning only the kept layers, names pinned, so
            that it rebuilds them.
        layers: the checked layers, in order.
        outputs: the output layers' names.
        written: the spec as the user wrote it, interpolations unresolved: errors name the key that was set.
    """

    spec: dict[str, Any]
    layers: tuple[Layer, ...]
    outputs: tuple[str, ...]
    written: Mapping[str, Any] | DictConfig = field(repr=False, compare=False)

    def named(self, error: ConfigError) -> ConfigError:
        """``error``, led by the spec key the user wrote when an interpolation brought the bad argument to the layer.

        ``dim=0`` reaching a layer as ``out_channels`` reads ``dim=0 is used by layers[0] 'stem' ...: out_channels=0 ...``.
        """
        key = interpolation_sources(self.written).get((error.layer, error.argument))
        if key is None:
            return error
        node = self.written if isinstance(self.written, DictConfig) else OmegaConf.create(dict(self.written))
        return about(ConfigError(f"{key}={OmegaConf.select(node, key)!r} is used by {error}"), error.argument, error.layer)


def _scaled_channels(channels: Any, spec: Mapping[str, Any]) -> Any:
    multiplier, divisor = spec["width_multiplier"], spec["channel_divisor"]
    if not isinstance(channels, int) or isinstance(channels, bool) or multiplier == 1.0:
        return channels
    return max(divisor, int(round(channels * multiplier / divisor)) * divisor)


def _scale_args(args: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    if "out_channels" in args:
        args["out_channels"] = _scaled_channels(args["out_channels"], spec)
    return args


def _with_defaults(builder: Callable, args: dict[str, Any], defaults: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    """``args`` plus every default the block's signature takes and the layer does not set."""
    params, _, takes_any = builder_signature(builder)
    merged = dict(args)
    for key, value in defaults.items():
        if key in params or takes_any:
            used.add(key)
            merged.setdefault(key, value)
    return merged


def _lookup(where: str, entry: Any) -> tuple[str, Callable[..., nn.Module]]:
    """A layer's (or shortcut part's) block name and builder; a missing or unknown block names the layer."""
    if not isinstance(entry, Mapping) or "block" not in entry:
        raise ConfigError(f"{where}: expected a mapping with a 'block' key, got {entry!r}.")
    try:
        return entry["block"], BLOCKS.get(entry["block"])
    except ConfigError as error:
        raise at(where, error) from None


def _block_call(where: str, entry: Any, spec: Mapping[str, Any], defaults: Mapping[str, Any], used: set[str]) -> BlockCall:
    block, builder = _lookup(where, entry)
    args = _scale_args({k: v for k, v in entry.items() if k != "block"}, spec)
    return BlockCall(block, builder, _with_defaults(builder, args, defaults, used), frozenset(builder_signature(builder)[0]))


def _shortcut(where: str, residual: Any, spec: Mapping[str, Any], defaults: Mapping[str, Any],
              used: set[str]) -> tuple[BlockCall, ...] | None:
    if residual is None or residual is False:
        return None
    if residual is True:
        return ()
    entries = residual if isinstance(residual, list) else [residual]
    if not entries or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError(
            f"{where}: residual must be true, a shortcut block spec ({{block: conv_norm_act, kernel_size: 1, "
            f"act: none}}) or a list of them; got {residual!r}."
        )
    return tuple(_block_call(f"{where} residual[{i}]", e, spec, defaults, used) for i, e in enumerate(entries))


def _check_name(index: int, name: Any, seen: dict[str, int]) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", name):
        raise ConfigError(
            f"layers[{index}]: name={name!r} must be a word of letters, digits, '_' or '-' (it becomes the "
            f"submodule name), e.g. 'stage2'."
        )
    if name in _RESERVED:
        raise ConfigError(f"layers[{index}]: name {name!r} is reserved (the network input or an nn.Module attribute); "
                          f"pick another, e.g. {name + '_layer'!r}.")
    if name in seen:
        raise ConfigError(
            f"layers[{index}]: name {name!r} is already used by layers[{seen[name]}]; every layer needs its own name."
        )
    return name


def _inputs(where: str, own: str, source: Any, names: dict[str, int], named: dict[str, bool],
            later: set[str], previous: str) -> tuple[str, ...]:
    if source is None:
        return (previous,)
    sources = source if isinstance(source, list) else [source]
    if not sources:
        raise ConfigError(f"{where}: `from` is an empty list; name the layer(s) it reads, or drop `from` to read the previous one.")
    for ref in sources:
        if isinstance(ref, int) and not isinstance(ref, bool):
            raise ConfigError(
                f"{where}: from: {ref} refers to a layer by position; layers are referenced by name, never by index "
                f"(an index shifts when a layer is inserted). Give that layer a `name:` and write the name here."
            )
        if not isinstance(ref, str):
            raise ConfigError(f"{where}: from: {ref!r} must be a layer name or a list of them.")
        if ref == INPUT or (ref in names and named[ref]):
            continue
        if ref == own:
            raise ConfigError(f"{where}: from names the layer itself; a layer reads earlier layers (or input).")
        if ref in later:
            raise ConfigError(
                f"{where}: from names {ref!r}, which comes later in the spec; a layer can only read earlier layers "
                f"(so the graph has no cycles). Move it, or read another layer."
            )
        earlier = [n for n in names if named[n]] + [INPUT]
        raise ConfigError(
            f"{where}: from names {ref!r}, which is not an earlier layer.{suggest(ref, earlier)} "
            f"Earlier named layers: {', '.join(earlier)}."
        )
    return tuple(sources)


def _import_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(
                f"imports: could not import {module!r} ({error}). Install the package that provides it "
                f"or put it on PYTHONPATH."
            ) from None


def parse_layers(spec: Mapping[str, Any], prune: bool = False) -> list[Layer]:
    """The spec's layers as checked [`Layer`][convzoo.specs.resolve.Layer] records, in order.

    Checks names (unique, referable), ``from`` references (earlier layers only, by name), outputs,
    repeats and residual specs, and applies ``width_multiplier``, ``depth_multiplier`` and the
    block defaults. Layers that no output depends on are an error, or dropped with ``prune=True``
    (what ``build_model(spec, outputs=...)`` does to cut a backbone out of a classifier). The spec's
    ``imports:`` are imported first, so that their blocks can be named.
    """
    _import_modules(spec.get("imports") or [])
    defaults = dict(spec.get("block_defaults") or {})
    if spec.get("num_classes") is not None:
        defaults.setdefault("num_classes", spec["num_classes"])
    entries = spec["layers"]
    explicit = [e.get("name") if isinstance(e, Mapping) else None for e in entries]
    names: dict[str, int] = {}
    named: dict[str, bool] = {}
    layers: list[Layer] = []
    used: set[str] = set()
    for index, entry in enumerate(entries):
        block, builder = _lookup(f"layers[{index}]", entry)
        name = _check_name(index, explicit[index], names) if explicit[index] is not None else str(index)
        if name in names:
            raise ConfigError(f"layers[{index}]: its default name {name!r} is already used by layers[{names[name]}]; "
                              f"give one of them another name.")
        where = f"layers[{index}]" + (f" {name!r}" if explicit[index] is not None else "") + f" ({block})"
        repeat = entry.get("repeat", 1)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or repeat < 1:
            raise about(ConfigError(f"{where}: repeat must be a positive integer, got {repeat!r}."), "repeat", index)
        if "repeat" in entry:  # only stacks scale with depth, never a stem or a head
            repeat = math.ceil(repeat * spec["depth_multiplier"])
        first = entry.get("first") or {}
        if not isinstance(first, Mapping):
            raise ConfigError(f"{where}: first must be a mapping of arguments for the first copy, got {first!r}.")
        later = {n for n in explicit[index:] if isinstance(n, str)}
        previous = layers[-1].name if layers else INPUT
        inputs = _inputs(where, name, entry.get("from"), names, named, later, previous)
        args = _scale_args({k: v for k, v in entry.items() if k not in LAYER_KEYS}, spec)
        layers.append(Layer(
            index=index,
            name=name,
            call=BlockCall(block, builder, _with_defaults(builder, args, defaults, used), frozenset(builder_signature(builder)[0])),
            inputs=inputs,
            repeat=repeat,
            first=_scale_args(dict(first), spec),
            shortcut=_shortcut(where, entry.get("residual"), spec, defaults, used),
            named=explicit[index] is not None,
        ))
        names[name], named[name] = index, explicit[index] is not None
    unused = [key for key in spec.get("block_defaults") or {} if key not in used]
    if unused:
        accepted = sorted({p for layer in layers for p in builder_signature(layer.call.builder)[0]} - {"in_channels"})
        raise ConfigError(
            f"model spec: block_defaults key {unused[0]!r} is taken by no block in this spec.{suggest(unused[0], accepted)} "
            f"The blocks here take: {', '.join(accepted)}."
        )
    return _connected(layers, spec, prune)


def _connected(layers: list[Layer], spec: Mapping[str, Any], prune: bool) -> list[Layer]:
    """Check the outputs and keep the layers they depend on."""
    by_name = {layer.name: layer for layer in layers}
    outputs = spec.get("outputs") or [layers[-1].name]
    for output in outputs:
        if not isinstance(output, str) or output not in by_name or (not by_name[output].named and output != layers[-1].name):
            candidates = [layer.name for layer in layers if layer.named]
            raise ConfigError(
                f"model spec: outputs names {output!r}, which is not a named layer.{suggest(str(output), candidates)} "
                f"Named layers: {', '.join(candidates) or '(none: add name: to the layers to return)'}."
            )
    if len(set(outputs)) != len(outputs):
        raise ConfigError(f"model spec: outputs {outputs} names a layer twice.")
    needed = set(outputs)
    for layer in reversed(layers):
        if layer.name in needed:
            needed.update(layer.inputs)
    dead = [layer for layer in layers if layer.name not in needed]
    if dead and not prune:
        raise ConfigError(
            f"model spec: {dead[0].where()} feeds no output ({', '.join(outputs)}), so it would be built and never run. "
            f"Add it to outputs, read it from a later layer, or remove it."
        )
    return [layer for layer in layers if layer.name in needed]


#: What shape inference fills in for a shortcut part unless the spec gives it.
_SHORTCUT_INFERRED = ("in_channels", "out_channels", "stride")


def _check_layer(layer: Layer) -> None:
    """Every copy's and shortcut part's arguments against its block's signature (names, types, ranges), then
    the number of inputs against what the block takes.

    What depends on shapes (``in_channels``, a shortcut's inferred ``out_channels`` and ``stride``, a
    window larger than its input) is checked by shape inference, which runs the blocks.
    """
    copies = (0, 1) if layer.first and layer.repeat > 1 else (0,)
    calls = [(layer.where(), layer.block, layer.copy_call(copy).args, ("in_channels",)) for copy in copies]
    calls += [(f"{layer.where()} residual[{i}] (block {part.block!r})", part.block, part.args, _SHORTCUT_INFERRED)
              for i, part in enumerate(layer.shortcut or ())]
    for where, block, args, inferred in calls:
        try:
            BLOCKS.check_call(block, args, where=where, partial=inferred)
        except ConfigError as error:
            raise about(error, layer=layer.index) from None
    takes = type_hints(layer.call.builder).get("in_channels", Any)
    where, count = layer.where(), len(layer.inputs)
    if count > 1 and not fits_annotation([1, 1], takes):
        raise ConfigError(
            f"{where}: the block takes one input but `from` names {count} ({', '.join(layer.inputs)}); "
            f"merge them first with an add or concat layer, or read one of them."
        )
    if count == 1 and not fits_annotation(1, takes):
        raise ConfigError(
            f"{where}: the block merges several inputs; give it `from: [a, b, ...]` naming at least two earlier layers."
        )
    if count > 1 and layer.shortcut is not None:
        raise ConfigError(f"{where}: residual wraps a single-input block, but `from` names {count} layers; drop residual.")


def resolve(spec: Mapping[str, Any] | DictConfig | str | Path, outputs: Sequence[str] | str | None = None) -> LayerGraph:
    """Parse a spec (YAML path, OmegaConf node or dict) and resolve it into its [`LayerGraph`][convzoo.specs.resolve.LayerGraph]; nothing is built.

    ``outputs`` overrides the spec's outputs; the layers no output depends on are then left out,
    and the graph's ``spec`` keeps only the others (names pinned), so that it rebuilds this graph.
    Every error is one [`ConfigError`][convzoo.errors.ConfigError], led by the key the user wrote where an interpolation
    brought the bad value (``dim=0 is used by layers[0] 'stem' ...``).
    """
    written = read_spec_file(spec) if isinstance(spec, (str, Path)) else spec
    plain = load_spec(written)
    if outputs is not None:
        plain["outputs"] = [outputs] if isinstance(outputs, str) else list(outputs)
    graph = LayerGraph(plain, (), (), written)
    try:
        layers = parse_layers(plain, prune=outputs is not None)
        for layer in layers:
            _check_layer(layer)
    except ConfigError as error:
        raise graph.named(error) from None
    if len(layers) < len(plain["layers"]):
        plain["layers"] = [{**plain["layers"][layer.index], "name": layer.name} for layer in layers]
    return LayerGraph(plain, tuple(layers), tuple(plain["outputs"] or [layers[-1].name]), written)
