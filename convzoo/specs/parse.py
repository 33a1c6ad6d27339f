"""Parsing a spec, the first stage of building a network: a YAML file, dict or OmegaConf node ->
a plain, checked spec (top-level keys, their types, interpolations resolved and every variable used).
No registry and no torch: nothing here knows what a block is.

Examples:
    >>> spec = load_spec({"num_classes": 10, "dim": 8, "layers": [
    ...     {"name": "stem", "block": "conv", "out_channels": "${...dim}"}, {"block": "classifier"}]})
    >>> spec["layers"][0]["out_channels"], "dim" in spec, spec["input_size"]
    (8, False, [32, 32])
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import convzoo.specs.calc  # noqa: F401  (registers the calc and lookup resolvers the spec may use)
from convzoo.arguments import fits_annotation, type_name
from convzoo.errors import ConfigError, at, one_line, suggest

__all__ = ["SPEC_KEYS", "interpolation_sources", "load_spec", "read_spec_file", "upgrade_legacy_spec"]


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
"""Top-level keys: (annotation, default, what it means)."""

_INTERPOLATION = re.compile(r"\$\{([^${}]*)\}")


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

    Examples:
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
    return str(at(str(getattr(error, "full_key", None) or ""), message))


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

    Examples:
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
