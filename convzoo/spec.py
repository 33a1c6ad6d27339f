"""Model specs: a YAML file, dict or OmegaConf node -> a checked spec and its graph of layers.

A spec is a mapping (every key but ``layers`` optional)::

    name: resnet_stage        # a label for logs
    in_channels: 3            # image channels
    num_classes: 10           # given to every block whose signature takes num_classes
    input_size: 32            # int or [H, W]: the size the meta-device check runs at
    width_multiplier: 1.0     # scales every out_channels (rounded to channel_divisor)
    depth_multiplier: 1.0     # scales every explicit repeat (rounded up)
    channel_divisor: 1
    imports: [my_project.blocks]           # modules imported first, so their blocks can be named
    block_defaults: {norm: batchnorm, act: relu}   # given to every block that takes the key,
                                                   # unless the layer sets it
    layers:
      - {name: stem, block: conv_norm_act, out_channels: 16}
      - {name: down, block: conv_norm_act, out_channels: 32, stride: 2,
         residual: {block: conv_norm_act, kernel_size: 1, act: none}}   # projection shortcut
      - {name: side, block: pool, from: stem, kind: avg}
      - {name: merged, block: concat, from: [down, side]}              # in_channels [32, 16]
      - {name: head, block: classifier}
    outputs: [head]           # default: the last layer; several -> forward returns a dict

Layer keys besides the block's own arguments:

- ``name``: the submodule name, and how other layers refer to this one (default: its index,
  which cannot be referred to: layers are referenced by name, never by position).
- ``from``: the layer(s) it reads, by name; ``input`` is the network input. Default: the
  previous layer. Several names give the block ``in_channels`` as a list and the tensors as
  positional arguments, in that order.
- ``repeat``: stacked copies (each reading the previous one); ``first: {...}`` gives the first
  copy different arguments (``first: {stride: 2}`` makes a repeated layer a ResNet stage).
- ``residual``: ``true`` adds the identity (``x + block(x)``); a block spec or a list of them is the
  shortcut path, built where the block changes the shape (its ``in_channels``, ``out_channels``
  and ``stride`` inferred from the measured shapes unless given) and the identity elsewhere.

Any other top-level key is a variable for interpolation (``dim: 256`` with ``out_channels:
${...dim}``; three dots: the layer, the list, then the spec) and must be used by one: an
unknown, unused key is a typo and fails with the closest valid keys. Two resolvers serve model
families: :func:`calc` (``${calc:16 * ${...widen}}``) and :func:`lookup` (a row of a table).

Example:
    >>> spec = load_spec({"num_classes": 10, "dim": 8, "layers": [
    ...     {"name": "stem", "block": "conv", "out_channels": "${...dim}"},
    ...     {"block": "classifier"}]})
    >>> spec["layers"][0]["out_channels"], "dim" in spec, spec["input_size"]
    (8, False, [32, 32])
    >>> [(layer.name, layer.inputs) for layer in parse_layers(spec)]
    [('stem', ('input',)), ('1', ('stem',))]
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from convzoo.arguments import fits_annotation, type_name
from convzoo.errors import ConfigError, about, one_line, suggest
from convzoo.registry import BLOCKS

__all__ = [
    "INPUT", "LAYER_KEYS", "SPEC_KEYS", "Layer", "calc", "interpolation_sources", "load_spec", "lookup",
    "parse_layers", "read_spec_file", "upgrade_legacy_spec",
]

#: The name under which layers read the network input in ``from``.
INPUT = "input"

#: Top-level keys: (annotation, default, what it means).
SPEC_KEYS: dict[str, tuple[Any, Any, str]] = {
    "name": (str, None, "a label for logs"),
    "in_channels": (int, 3, "image channels"),
    "num_classes": (int | None, None, "given to every block that takes num_classes"),
    "input_size": (int | list[int], 32, "the input's height and width"),
    "width_multiplier": (float, 1.0, "scales every out_channels"),
    "depth_multiplier": (float, 1.0, "scales every explicit repeat"),
    "channel_divisor": (int, 1, "scaled channels are rounded to a multiple of it"),
    "imports": (list[str], [], "modules to import so their blocks can be named"),
    "block_defaults": (dict, {}, "arguments given to every block that takes them"),
    "layers": (list, None, "the layers"),
    "outputs": (str | list[str] | None, None, "the layers the network returns (default: the last)"),
}
#: Keys of a layer that are not arguments of its block.
LAYER_KEYS = ("block", "name", "from", "repeat", "first", "residual")

_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")
_RESERVED = set(dir(nn.Sequential())) | {INPUT}


def _exact_division(a: float, b: float) -> float:
    if isinstance(a, int) and isinstance(b, int):
        if a % b:
            raise ConfigError(f"{a} / {b} = {a / b:.4g} is not a whole number")
        return a // b
    return a / b


_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _exact_division,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


def calc(expression: Any) -> int | float:
    """Arithmetic inside a spec: ``${calc:16 * ${...widen}}``, ``"${calc:'(${...depth} - 2) / 6'}"``.

    Numbers, ``+ - * / // % **`` and parentheses (quote the argument when it has parentheses).
    ``/`` between whole numbers must come out whole, so a depth that does not fit the family's
    formula fails instead of being rounded.

    Example:
        >>> calc("16 * 10"), calc("(56 - 2) / 6"), calc("64 * 0.5")
        (160, 9, 32.0)
    """

    def evaluate(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = evaluate(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ConfigError("it may only hold numbers, + - * / // % ** and parentheses")

    try:
        return evaluate(ast.parse(str(expression).strip(), mode="eval").body)
    except (ConfigError, SyntaxError, ZeroDivisionError) as error:
        raise ConfigError(f"calc: cannot evaluate {str(expression)!r}: {error}.") from None


def lookup(table: Any, *keys: Any) -> Any:
    """Pick from a table in the spec: ``${lookup:${...layouts},${...depth},0}`` is ``layouts[depth][0]``.

    An unknown key fails with the keys the table has.

    Example:
        >>> lookup({18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}, 34, 1)
        4
    """
    value = table
    for key in keys:
        options = list(value.keys()) if hasattr(value, "keys") else list(range(len(value)))
        if key not in options:
            raise ConfigError(f"lookup: {key!r} is not one of the table's keys ({', '.join(map(str, options))})")
        value = value[key]
    return value


for _name, _resolver in (("calc", calc), ("lookup", lookup)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)


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


def _referenced_names(node: Any) -> set[str]:
    """Every key name that an interpolation anywhere in ``node`` (unresolved) points through."""
    found: set[str] = set()
    if isinstance(node, Mapping):
        for value in node.values():
            found |= _referenced_names(value)
    elif isinstance(node, list):
        for value in node:
            found |= _referenced_names(value)
    elif isinstance(node, str):
        for expression in _INTERPOLATION.findall(node):
            if ":" not in expression:  # ${oc.env:...} and other resolvers name no key
                found |= {part for part in re.split(r"[.\[\]]", expression) if part}
    return found


def interpolation_sources(spec: Mapping[str, Any] | DictConfig) -> dict[tuple[int, str], str]:
    """The spec key each interpolated layer argument comes from: ``{(layer index, argument): key}``.

    Interpolations are followed to the key the user sets (``repeat: ${...layers_per_block}`` with
    ``layers_per_block: ${calc:'(${.depth} - 4) / 6'}`` comes from ``depth``); where they read
    several keys, the one scalar among them (not a table) is the source, else there is none.
    Arguments from ``block_defaults`` count for every layer that does not set them itself.

    Example:
        >>> interpolation_sources({"dim": 8, "layers": [{"block": "patch_embed", "out_channels": "${...dim}"}]})
        {(0, 'out_channels'): 'dim'}
    """
    raw = OmegaConf.to_container(spec, resolve=False) if isinstance(spec, DictConfig) else spec
    if not isinstance(raw, Mapping) or not isinstance(raw.get("layers"), list):
        return {}
    defaults = raw.get("block_defaults") if isinstance(raw.get("block_defaults"), Mapping) else {}
    sources: dict[tuple[int, str], str] = {}
    for index, entry in enumerate(raw["layers"]):
        if isinstance(entry, Mapping):
            first = entry.get("first") if isinstance(entry.get("first"), Mapping) else {}
            for argument, value in {**defaults, **first, **entry}.items():
                if (key := _written_source(raw, value)) is not None:
                    sources[(index, argument)] = key
    return sources


def _written_source(raw: Mapping[str, Any], value: Any) -> str | None:
    """The top-level key of the (unresolved) spec ``raw`` that an interpolated ``value`` comes from, if one."""

    def roots(value: Any, seen: frozenset[str]) -> set[str]:
        found: set[str] = set()
        for expression in _INTERPOLATION.findall(value) if isinstance(value, str) else ():
            key = re.split(r"[.\[]", expression.lstrip("."), maxsplit=1)[0]
            if ":" not in expression and key in raw and key not in seen:
                found |= roots(raw[key], seen | {key}) or {key}
        return found

    found = roots(value, frozenset())
    scalars = {key for key in found if not isinstance(raw[key], (Mapping, list))}
    chosen = scalars if len(scalars) == 1 else found
    return next(iter(chosen)) if len(chosen) == 1 else None


def _interpolation_message(error: Exception) -> str:
    """OmegaConf's message on one line: the key, then what went wrong (a resolver's own words if it raised)."""
    message = (getattr(error, "msg", None) or str(error)).strip().splitlines()[0]  # then full_key/object_type lines
    message = re.sub(r"^\w+ raised while resolving interpolation: ", "", message)
    key = getattr(error, "full_key", None)
    return f"{key}: {message}" if key else message


def _check_value(key: str, value: Any, annotation: Any) -> None:
    if not fits_annotation(value, annotation):
        raise ConfigError(f"model spec: {key}={value!r} must be {type_name(annotation)} ({SPEC_KEYS[key][2]}).")


def _at(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(error: Exception) -> str:
    """PyYAML's error as ``", line L, column C: is not valid YAML: <problem> (<context> at line L', column C')."``."""
    mark, context, context_mark = (getattr(error, name, None) for name in ("problem_mark", "context", "context_mark"))
    problem = getattr(error, "problem", None) or str(error)
    where = f", {_at(mark)}" if mark is not None else ""
    started = f" ({context} at {_at(context_mark)})" if context and context_mark is not None else ""
    return f"{where}: is not valid YAML: {one_line(problem)}{started}."


def read_spec_file(path: str | Path) -> DictConfig:
    """A spec file's YAML as an (unresolved) OmegaConf node; a missing or unparsable file is a one-line ConfigError.

    Example:
        >>> read_spec_file("broken.yaml")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        convzoo.errors.ConfigError: model spec file 'broken.yaml', line 4, column 5: is not valid YAML: expected ',' or '}' ...
    """
    import yaml

    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model spec file {str(path)!r} does not exist.")
    try:
        return OmegaConf.load(path)
    except yaml.YAMLError as error:
        raise ConfigError(f"model spec file {str(path)!r}{_yaml_problem(error)} Fix the YAML there (an unclosed "
                          f"bracket or quote and a tab in the indentation are the usual causes).") from None
    except (OmegaConfBaseException, UnicodeDecodeError) as error:
        raise ConfigError(f"model spec file {str(path)!r} cannot be read as a config: "
                          f"{one_line(error)}") from None


def load_spec(spec: Mapping[str, Any] | DictConfig | str | Path) -> dict[str, Any]:
    """A spec (YAML path, OmegaConf node or dict) resolved to a plain dict with defaults filled in.

    Interpolation variables are resolved and dropped, so the result is self-contained: it is what a
    network stores as ``spec`` and what a checkpoint carries.
    """
    if isinstance(spec, (str, Path)):
        spec = read_spec_file(spec)
    if not isinstance(spec, (Mapping, DictConfig)):
        raise ConfigError(f"a model spec must be a mapping with a 'layers' list, got {type(spec).__name__}.")
    node = spec if isinstance(spec, DictConfig) else OmegaConf.create(dict(spec))
    variables = _referenced_names(OmegaConf.to_container(node, resolve=False))
    try:
        resolved = OmegaConf.to_container(node, resolve=True)
    except Exception as error:  # OmegaConf's interpolation errors name the key; keep that, drop the traceback
        raw = OmegaConf.to_container(node, resolve=False)
        variable = str(getattr(error, "full_key", None) or "").rsplit(".", 1)[-1]
        written = _written_source(raw, raw[variable]) if variable in raw else None
        if written is not None:  # a variable computed from what the user set: name that first
            raise ConfigError(f"{written}={raw[written]!r} is used by {_interpolation_message(error)}") from None
        raise ConfigError(f"model spec: {_interpolation_message(error)}") from None
    if "defaults" in resolved:
        raise ConfigError(
            "model spec: 'defaults' is Hydra's defaults list, so this file is a config to compose, not a spec to "
            "load: build it with convzoo.create_model(NAME, ...) or `python -m convzoo summary model=NAME`. "
            "(Arguments for every block go under block_defaults.)"
        )
    unknown = [key for key in resolved if key not in SPEC_KEYS and key not in variables]
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"model spec: unknown key {key!r}.{suggest(key, SPEC_KEYS)} A spec takes {', '.join(SPEC_KEYS)}; "
            f"any other key must be a variable used by an interpolation such as ${{...{key}}}."
        )
    canonical = {key: value for key, value in resolved.items() if key in SPEC_KEYS}
    layers = canonical.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError("model spec needs a non-empty 'layers' list of {block: NAME, ...} entries.")
    for key, (annotation, default, _) in SPEC_KEYS.items():
        value = canonical.setdefault(key, default)
        if value is not None or default is not None:
            _check_value(key, value, annotation)
    size = canonical["input_size"]
    canonical["input_size"] = list(size) if isinstance(size, list) else [size, size]
    if len(canonical["input_size"]) != 2 or min(canonical["input_size"]) < 1 or canonical["in_channels"] < 1:
        raise ConfigError(
            f"model spec: input_size={size!r} must be a positive int or [height, width], and in_channels "
            f"(={canonical['in_channels']}) positive."
        )
    for key in ("width_multiplier", "depth_multiplier", "channel_divisor"):
        if not canonical[key] > 0:
            raise ConfigError(f"model spec: {key} must be > 0, got {canonical[key]!r}.")
    if isinstance(canonical["outputs"], str):
        canonical["outputs"] = [canonical["outputs"]]
    return canonical


def upgrade_legacy_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved spec stored in a checkpoint by an earlier convzoo, in today's form (idempotent).

    0.1 stored specs resolved but kept their variables (``dim: 256`` beside layers that had used
    it); with the variables' values already substituted, dropping them changes nothing. Up to 0.2
    the pool block took ``kind`` and ``kernel_size``; it now speaks the one pooling vocabulary,
    ``pool`` and ``pool_size``.
    """
    upgraded = {key: value for key, value in spec.items() if key in SPEC_KEYS}
    if isinstance(upgraded.get("layers"), list):
        upgraded["layers"] = [_upgrade_layer(layer) for layer in upgraded["layers"]]
    return upgraded


_POOL_RENAMES = {"kind": "pool", "kernel_size": "pool_size"}


def _upgrade_layer(layer: Any) -> Any:
    if not isinstance(layer, Mapping) or layer.get("block") != "pool":
        return layer
    return {_POOL_RENAMES.get(key, key): value for key, value in layer.items()}


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


def parse_layers(spec: Mapping[str, Any], prune: bool = False) -> list[Layer]:
    """The spec's layers as checked :class:`Layer` records, in order.

    Checks names (unique, referable), ``from`` references (earlier layers only, by name), outputs,
    repeats and residual specs, and applies ``width_multiplier``, ``depth_multiplier`` and the
    block defaults. Layers that no output depends on are an error, or dropped with ``prune=True``
    (what ``build_model(spec, outputs=...)`` does to cut a backbone out of a classifier).
    """
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
