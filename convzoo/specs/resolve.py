"""Resolving a parsed spec into its layer graph, the second stage of building a network: block
lookup, ``block_defaults``, width and depth multipliers, names, ``from``, ``repeat``/``first``,
``residual``, outputs and pruning, each decided once, into one :class:`Layer` record per spec layer.

Example:
    >>> from convzoo.specs.parse import load_spec
    >>> spec = load_spec({"layers": [{"name": "stem", "block": "conv", "out_channels": 8}, {"block": "classifier"}]})
    >>> [(layer.name, layer.inputs) for layer in parse_layers(spec)]
    [('stem', ('input',)), ('1', ('stem',))]
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from convzoo.errors import ConfigError, about, suggest
from convzoo.registry import BLOCKS

__all__ = ["INPUT", "LAYER_KEYS", "Layer", "parse_layers"]


#: The name under which layers read the network input in ``from``.
INPUT = "input"

#: Keys of a layer that are not arguments of its block.
LAYER_KEYS = ("block", "name", "from", "repeat", "first", "residual")

_RESERVED = set(dir(nn.Sequential())) | {INPUT}


@dataclass(frozen=True)
class Layer:
    """One spec layer, checked: its block, arguments (defaults applied), inputs and wiring."""

    index: int
    name: str
    block: str
    args: dict[str, Any]
    inputs: tuple[str, ...]
    repeat: int = 1
    first: dict[str, Any] = field(default_factory=dict)
    #: ``None``: no residual; ``()``: the identity; else the shortcut path's block specs.
    shortcut: tuple[dict[str, Any], ...] | None = None
    named: bool = True

    def where(self, copy: int | None = None) -> str:
        """How error messages name this layer: ``layers[3] 'stage2' copy 1 (block 'basic')``."""
        label = f" {self.name!r}" if self.named else ""
        copy_part = f" copy {copy}" if copy is not None and self.repeat > 1 else ""
        return f"layers[{self.index}]{label}{copy_part} (block {self.block!r})"


def _scaled_channels(channels: Any, spec: Mapping[str, Any]) -> Any:
    multiplier, divisor = spec["width_multiplier"], spec["channel_divisor"]
    if not isinstance(channels, int) or isinstance(channels, bool) or multiplier == 1.0:
        return channels
    return max(divisor, int(round(channels * multiplier / divisor)) * divisor)


def _scale_args(args: dict[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    if "out_channels" in args:
        args["out_channels"] = _scaled_channels(args["out_channels"], spec)
    return args


def _with_defaults(block: str, args: dict[str, Any], defaults: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    """``args`` plus every default the block's signature takes and the layer does not set."""
    params = BLOCKS.signature(block).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    merged = dict(args)
    for key, value in defaults.items():
        if key in params or takes_any:
            used.add(key)
            merged.setdefault(key, value)
    return merged


def _block_spec(where: str, entry: Any, spec: Mapping[str, Any], defaults: Mapping[str, Any], used: set[str]) -> dict[str, Any]:
    if not isinstance(entry, Mapping) or "block" not in entry:
        raise ConfigError(f"{where}: expected a mapping with a 'block' key, got {entry!r}.")
    try:
        BLOCKS.get(entry["block"])
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    args = _scale_args({k: v for k, v in entry.items() if k != "block"}, spec)
    return {"block": entry["block"], **_with_defaults(entry["block"], args, defaults, used)}


def _shortcut(where: str, residual: Any, spec: Mapping[str, Any], defaults: Mapping[str, Any],
              used: set[str]) -> tuple[dict[str, Any], ...] | None:
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
    return tuple(_block_spec(f"{where} residual[{i}]", e, spec, defaults, used) for i, e in enumerate(entries))


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
    """The spec's layers as checked :class:`Layer` records, in order.

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
        if not isinstance(entry, Mapping) or "block" not in entry:
            raise ConfigError(f"layers[{index}]: expected a mapping with a 'block' key, got {entry!r}.")
        block = entry["block"]
        try:
            BLOCKS.get(block)
        except ConfigError as error:
            raise ConfigError(f"layers[{index}]: {error}") from None
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
            block=block,
            args=_with_defaults(block, args, defaults, used),
            inputs=inputs,
            repeat=repeat,
            first=_scale_args(dict(first), spec),
            shortcut=_shortcut(where, entry.get("residual"), spec, defaults, used),
            named=explicit[index] is not None,
        ))
        names[name], named[name] = index, explicit[index] is not None
    unused = [key for key in spec.get("block_defaults") or {} if key not in used]
    if unused:
        accepted = sorted({p for layer in layers for p in BLOCKS.signature(layer.block).parameters} - {"in_channels"})
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
