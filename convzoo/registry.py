"""Name -> builder registries: the one mechanism behind blocks, norms, activations and inits.

A [`Registry`][convzoo.registry.Registry] maps names (and aliases) to callables, builds them from config dicts and
answers unknown names with the closest registered ones.

Examples:
    >>> from convzoo.registry import Registry
    >>> POOLS = Registry("pool", key="type")
    >>> @POOLS.register("max", "maxpool")
    ... def max_pool(kernel_size: int = 2):
    ...     return ("max", kernel_size)
    >>> POOLS.build({"type": "maxpool", "kernel_size": 3})
    ('max', 3)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from convzoo.errors.arguments import (  # noqa: F401
    ARGUMENT_RANGES,
    Naming,
    Range,
    builder_signature,
    check_arguments,
    fits_annotation,
    out_of_range,
    type_hints,
    type_name,
)
from convzoo.errors import ConfigError, about, at, closest, suggest  # also importable from here, their home before 0.3.0

__all__ = [
    "ConfigError", "Registry", "Resolved", "about", "closest", "suggest", "type_name", "fits_annotation",
    "ARGUMENT_RANGES", "Range", "out_of_range", "BLOCKS", "NORMS", "ACTIVATIONS", "POOLS", "INITS",
]


def _plain(value: Any) -> Any:
    """Mappings (dicts, OmegaConf DictConfigs) to plain dicts, recursively; no omegaconf import is
    needed, as a DictConfig is a Mapping that resolves interpolations on access."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Resolved:
    """What [`Registry.resolve`][convzoo.registry.Registry.resolve] made of a config entry."""

    name: str               #: the canonical registered name (aliases resolved)
    args: dict[str, Any]    #: every argument the builder got, its defaults filled in
    built: Any = field(repr=False, compare=False)  #: what the builder returned


class Registry:
    """A named table of builders (classes or functions) that can be extended by other projects.

    Args:
        kind: what the entries are, used in error messages ("block", "norm", ...).
        key: the config key holding the entry name in [`build`][convzoo.registry.Registry.build] (``{"block": "conv", ...}``).
        entry_point_group: an importlib-metadata entry-point group whose modules are imported on
            first lookup, so installed packages can contribute entries without being imported.
    """

    def __init__(self, kind: str, key: str | None = None, entry_point_group: str | None = None):
        self.kind = kind
        self.key = key or kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, Callable[..., Any]] = {}
        self._aliases: dict[str, str] = {}
        self._entry_points_loaded = entry_point_group is None

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *aliases: str, override: bool = False) -> Callable[[Callable], Callable]:
        """Decorator registering a builder under ``name`` and optional ``aliases``.

        Re-using a taken name is an error unless ``override=True`` (to replace a built-in).
        """

        def decorator(obj: Callable) -> Callable:
            for label in (name, *aliases):
                if not override and (label in self._entries or label in self._aliases):
                    raise ConfigError(
                        f"{self.kind} {label!r} is already registered "
                        f"(by {self._describe(self.get(label))}). "
                        f"Pick another name or pass override=True to replace it."
                    )
            self._entries[name] = obj
            self._aliases.pop(name, None)
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return decorator

    # -- lookup -------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True  # set first: the imported modules call register()
        for entry_point in metadata.entry_points(group=self.entry_point_group):
            entry_point.load()

    def _canonical(self, name: str) -> str | None:
        self._load_entry_points()
        if name in self._entries:
            return name
        return self._aliases.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._canonical(name) is not None

    def __len__(self) -> int:
        self._load_entry_points()
        return len(self._entries)

    def names(self, aliases: bool = False) -> list[str]:
        """Sorted registered names, optionally with their aliases."""
        self._load_entry_points()
        found = list(self._entries) + (list(self._aliases) if aliases else [])
        return sorted(found)

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as ``name`` (or an alias of it)."""
        if not isinstance(name, str):
            raise ConfigError(f"{self.kind} name must be a string, got {name!r}.")
        canonical = self._canonical(name)
        if canonical is None:
            raise ConfigError(
                f"Unknown {self.kind} {name!r}.{suggest(name, self.names(aliases=True))} "
                f"Registered {self.kind}s: {', '.join(self.names())}."
            )
        return self._entries[canonical]

    def canonical_name(self, name: str) -> str:
        """The primary name behind ``name`` (which may be an alias)."""
        self.get(name)
        return self._canonical(name)  # type: ignore[return-value]

    # -- building -----------------------------------------------------------------------------
    def check_arguments(self, name: str, kwargs: Mapping[str, Any], where: str = "",
                        also_accepted: Sequence[str] = (), *, partial: bool | Collection[str] = False) -> None:
        """Raise a [`ConfigError`][convzoo.errors.ConfigError] when ``kwargs`` do not fit the builder's signature
        ([`convzoo.errors.arguments.check_arguments`][convzoo.errors.arguments.check_arguments]: names, required ones, types, ranges).

        ``also_accepted`` names keys the caller takes out of the same mapping itself (listed in the
        suggestions, so a typo of one of them finds it). ``partial`` names the required arguments the
        caller fills in later (``("in_channels",)``, once the shapes are known), or is ``True`` for all.

        Examples:
            >>> BLOCKS.check_arguments("conv", {"kernel_size": 3}, where="layers[0]", partial=True)
            >>> BLOCKS.check_arguments("patch_embed", {"patch_size": 2}, where="layers[0]", partial=["in_channels"])
            Traceback (most recent call last):
            ...
            convzoo.errors.ConfigError: layers[0]: block 'patch_embed' is missing required argument(s) out_channels. It accepts: in_channels, out_channels, patch_size, act, norm.
            >>> BLOCKS.check_arguments("conv", {"kernel_size": 0}, where="layers[0]", partial=True)
            Traceback (most recent call last):
            ...
            convzoo.errors.ConfigError: layers[0]: block 'conv': kernel_size=0 is out of range; it must be >= 1.
        """
        try:
            check_arguments(builder_signature(self.get(name)), kwargs, Naming(f"{self.kind} {name!r}"),
                            partial=partial, also_accepted=also_accepted)
        except ConfigError as error:
            raise at(where, error) from None

    def annotation(self, name: str, argument: str) -> Any:
        """The evaluated type annotation of one of the builder's arguments (``Any`` when unannotated)."""
        return type_hints(self.get(name)).get(argument, Any)

    def split(self, spec: str | Mapping[str, Any], where: str = "") -> tuple[str, dict[str, Any]]:
        """``"name"`` or ``{key: name, **kwargs}`` -> ``(name, kwargs)``; anything else is a ConfigError."""
        if isinstance(spec, str):
            return spec, {}
        if isinstance(spec, Mapping):
            kwargs = _plain(spec)
            if self.key not in kwargs:
                raise at(where, f"{self.kind} config {kwargs!r} has no {self.key!r} key naming the {self.kind} "
                                f"(one of {', '.join(self.names())}).")
            return kwargs.pop(self.key), kwargs
        raise at(where, f"a {self.kind} is a name or a mapping with a {self.key!r} key; got {spec!r}.")

    def resolve(self, spec: str | Mapping[str, Any], where: str = "", also_accepted: Sequence[str] = (),
                **defaults: Any) -> Resolved:
        """The one path from a config entry to a built object.

        ``spec`` is a name or ``{key: name, **kwargs}`` (a dict or an OmegaConf node); its arguments
        win over ``defaults``. The arguments are checked against the builder's signature (unknown
        names with did-you-mean, missing ones, wrong types), the builder is called, and every error,
        the builder's own [`ConfigError`][convzoo.errors.ConfigError]ss included, is prefixed with ``where`` (the config key
        the spec came from). Returns the canonical name, every argument with the builder's defaults
        filled in (so logs say exactly what ran) and the built object.

        Examples:
            >>> ACTIVATIONS.resolve({"act": "leaky_relu", "negative_slope": 0.2}, where="model.act").args
            {'negative_slope': 0.2, 'inplace': False}
            >>> ACTIVATIONS.resolve("gelu_", where="model.act")  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            convzoo.errors.ConfigError: model.act: Unknown activation 'gelu_'. Did you mean 'gelu'...
        """
        try:
            name, kwargs = self.split(spec)
            kwargs = {**defaults, **kwargs}
            self.check_arguments(name, kwargs, also_accepted=also_accepted)  # the name as written, in errors
            builder = self.get(name)
            built = builder(**kwargs)
        except ConfigError as error:
            raise at(where, error) from None
        # every argument in signature order, defaults filled in; then what a **kwargs builder took
        args = {
            key: kwargs.get(key, param.default)
            for key, param in inspect.signature(builder).parameters.items()
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
            and (key in kwargs or param.default is not param.empty)
        }
        args.update((key, value) for key, value in kwargs.items() if key not in args)
        return Resolved(self.canonical_name(name), args, built)

    def build(self, config: Mapping[str, Any] | str, **overrides: Any) -> Any:
        """Build an entry from ``{key: name, **kwargs}`` (or a bare name); ``overrides`` win over the config."""
        name, kwargs = self.split(config)
        return self.resolve({self.key: name, **kwargs, **overrides}).built

    def signature(self, name: str) -> inspect.Signature:
        """The builder's signature, for listings and docs."""
        return inspect.signature(self.get(name))

    @staticmethod
    def _describe(obj: Callable) -> str:
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


BLOCKS = Registry("block", entry_point_group="convzoo.blocks")
NORMS = Registry("norm")
ACTIVATIONS = Registry("activation", key="act")
POOLS = Registry("pool")
INITS = Registry("init scheme", key="scheme")
