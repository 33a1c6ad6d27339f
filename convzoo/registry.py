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

from convzoo.arguments import (  # noqa: F401
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
    """What [`Registry.resolve`][convzoo.registry.Registry.resolve] made of a config entry.

    Attributes:
        name: the canonical registered name (aliases resolved).
        args: every argument the builder got, its defaults filled in.
        built: what the builder returned.

    Examples:
        >>> resolved = NORMS.resolve({"norm": "groupnorm", "num_groups": 4}, num_channels=8)
        >>> resolved.name, resolved.built
        ('groupnorm', GroupNorm(4, 8, eps=1e-05, affine=True, bias=True))
    """

    name: str
    args: dict[str, Any]
    built: Any = field(repr=False, compare=False)


class Registry:
    """A named table of builders (classes or functions) that can be extended by other projects.

    convzoo's registries are [`BLOCKS`][convzoo.registry.BLOCKS], [`NORMS`][convzoo.registry.NORMS], [`ACTIVATIONS`][convzoo.registry.ACTIVATIONS],
    [`POOLS`][convzoo.registry.POOLS] and [`INITS`][convzoo.registry.INITS]; ``name in registry`` says whether a name (or alias) is
    registered, ``len(registry)`` counts the entries.

    Args:
        kind: what the entries are, used in error messages ("block", "norm", ...).
        key: the config key holding the entry name in [`build`][convzoo.registry.Registry.build] (``{"block": "conv", ...}``);
            defaults to ``kind``.
        entry_point_group: an importlib-metadata entry-point group whose modules are imported on
            first lookup, so installed packages can contribute entries without being imported.
        requires: arguments the caller passes to every entry (a block always gets ``in_channels``), so
            registering a builder that cannot take one fails at once rather than at its first build.

    Attributes:
        kind: what the entries are.
        key: the config key naming the entry.
        entry_point_group: the entry-point group, or ``None``.
        requires: the arguments every entry must accept.

    Examples:
        >>> SHAPES = Registry("shape")
        >>> @SHAPES.register("square", "sq")
        ... def square(side: int = 1):
        ...     return side * side
        >>> SHAPES.build({"shape": "sq", "side": 3}), "square" in SHAPES, SHAPES.names(aliases=True)
        (9, True, ['sq', 'square'])
        >>> SHAPES.build("squre")
        Traceback (most recent call last):
        ...
        convzoo.errors.ConfigError: Unknown shape 'squre'. Did you mean 'square' or 'sq'? Registered shapes: square.
    """

    def __init__(self, kind: str, key: str | None = None, entry_point_group: str | None = None,
                 requires: Sequence[str] = ()):
        self.kind = kind
        self.key = key or kind
        self.entry_point_group = entry_point_group
        self.requires = tuple(requires)
        self._entries: dict[str, Callable[..., Any]] = {}
        self._aliases: dict[str, str] = {}
        self._entry_points_loaded = entry_point_group is None

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, *aliases: str, override: bool = False) -> Callable[[Callable], Callable]:
        """Decorator registering a builder under ``name`` and optional ``aliases``.

        Re-using a taken name is an error unless ``override=True`` (to replace a built-in).

        Args:
            name: the primary name, the one listings and logs show.
            *aliases: other names for the same entry.
            override: replace an entry registered under any of these names.

        Returns:
            A decorator that registers a class or function and returns it unchanged.

        Raises:
            ConfigError: (when decorating) a name is taken and ``override`` is false, or the builder cannot
                take an argument of ``requires``.

        Examples:
            >>> from torch import nn
            >>> MY_NORMS = Registry("norm")
            >>> @MY_NORMS.register("identity", "no_norm")
            ... def identity(num_channels: int) -> nn.Module:
            ...     return nn.Identity()
            >>> MY_NORMS.build("no_norm", num_channels=8)
            Identity()
            >>> MY_NORMS.register("identity")(identity)
            Traceback (most recent call last):
            ...
            convzoo.errors.ConfigError: norm 'identity' is already registered (by convzoo.registry.identity). Pick another name or pass override=True to replace it.
        """

        def decorator(obj: Callable) -> Callable:
            for label in (name, *aliases):
                if not override and (label in self._entries or label in self._aliases):
                    raise ConfigError(
                        f"{self.kind} {label!r} is already registered "
                        f"(by {self._describe(self.get(label))}). "
                        f"Pick another name or pass override=True to replace it."
                    )
            params, _, open_ended = builder_signature(obj) if self.requires else ({}, {}, True)
            missing = [arg for arg in self.requires if arg not in params and not open_ended]
            if missing:
                raise ConfigError(
                    f"{self.kind} {name!r} ({self._describe(obj)}) must accept {', '.join(missing)}: every "
                    f"{self.kind} is built with {', '.join(self.requires)}. Add {', '.join(missing)} to its signature."
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
    def check_call(self, name: str, kwargs: Mapping[str, Any], where: str = "",
                        also_accepted: Sequence[str] = (), *, partial: bool | Collection[str] = False) -> None:
        """Raise a [`ConfigError`][convzoo.errors.ConfigError] when ``kwargs`` do not fit the builder's signature
        ([`convzoo.arguments.check_arguments`][convzoo.arguments.check_arguments]: names, required ones, types, ranges).

        ``also_accepted`` names keys the caller takes out of the same mapping itself (listed in the
        suggestions, so a typo of one of them finds it). ``partial`` names the required arguments the
        caller fills in later (``("in_channels",)``, once the shapes are known), or is ``True`` for all.

        Examples:
            >>> BLOCKS.check_call("conv", {"kernel_size": 3}, where="layers[0]", partial=True)
            >>> BLOCKS.check_call("patch_embed", {"patch_size": 2}, where="layers[0]", partial=["in_channels"])
            Traceback (most recent call last):
            ...
            convzoo.errors.ConfigError: layers[0]: block 'patch_embed' is missing required argument(s) out_channels. It accepts: in_channels, out_channels, patch_size, act, norm.
            >>> BLOCKS.check_call("conv", {"kernel_size": 0}, where="layers[0]", partial=True)
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
            self.check_call(name, kwargs, also_accepted=also_accepted)  # the name as written, in errors
            builder = self.get(name)
            built = builder(**kwargs)
        except ConfigError as error:
            raise at(where, error) from None
        # every argument in signature order, defaults filled in; then what a **kwargs builder took
        args = {
            key: kwargs.get(key, param.default)
            for key, param in builder_signature(builder)[0].items()
            if key in kwargs or param.default is not param.empty
        }
        args.update((key, value) for key, value in kwargs.items() if key not in args)
        return Resolved(self.canonical_name(name), args, built)

    def build(self, config: Mapping[str, Any] | str, **overrides: Any) -> Any:
        """Build an entry from ``{key: name, **kwargs}`` (or a bare name); ``overrides`` win over the config."""
        name, kwargs = self.split(config)
        return self.resolve({self.key: name, **kwargs, **overrides}).built

    def signature(self, name: str) -> inspect.Signature:
        """The arguments the entry takes by name (``**kwargs`` aside), with defaults and annotations: for
        listings and docs, read as the checks read them ([`builder_signature`][convzoo.arguments.builder_signature]).

        Examples:
            >>> list(BLOCKS.signature("patch_embed").parameters)
            ['in_channels', 'out_channels', 'patch_size', 'act', 'norm']
        """
        return inspect.Signature(list(builder_signature(self.get(name))[0].values()))

    @staticmethod
    def _describe(obj: Callable) -> str:
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


BLOCKS = Registry("block", entry_point_group="convzoo.blocks", requires=("in_channels",))
"""The conv blocks a spec layer's ``block:`` names (``conv_norm_act``, ``basic``, ``convmixer``, ...).

Importing [`convzoo.blocks`][convzoo.blocks] registers the built-in ones; ``convzoo.register_block`` adds
your own. Installed packages that declare an entry point in the ``convzoo.blocks`` group are imported
on the first lookup, so their blocks can be named without an ``imports:`` line.

Attributes:
    kind: ``"block"`` (in messages).
    key: ``"block"``: ``{"block": "conv", "out_channels": 16}``.
    entry_point_group: ``"convzoo.blocks"``.

Examples:
    >>> import convzoo
    >>> "conv_norm_act" in BLOCKS, BLOCKS.canonical_name("se")
    (True, 'squeeze_excite')
"""
NORMS = Registry("norm")
"""The normalisation layers a block's ``norm`` argument names (``batchnorm``, ``groupnorm``, ``layernorm``, ``none``, ...).

Each builder takes the channel count first; [`make_norm`][convzoo.layers.make_norm] builds from a name or mapping.

Attributes:
    kind: ``"norm"`` (in messages).
    key: ``"norm"``: ``{"norm": "groupnorm", "num_groups": 8}``.

Examples:
    >>> import convzoo
    >>> norm = NORMS.build({"norm": "batchnorm"}, num_channels=16)
    >>> type(norm).__name__, norm.num_features
    ('BatchNorm2d', 16)
"""
ACTIVATIONS = Registry("activation", key="act")
"""The activations a block's ``act`` argument names (``relu``, ``gelu``, ``silu``, ``none``, ...).

[`make_act`][convzoo.layers.make_act] builds one from a name or mapping.

Attributes:
    kind: ``"activation"`` (in messages).
    key: ``"act"``: ``{"act": "leaky_relu", "negative_slope": 0.2}``.

Examples:
    >>> import convzoo
    >>> ACTIVATIONS.build("gelu")
    GELU(approximate='none')
"""
POOLS = Registry("pool")
"""The pooling layers a ``pool`` argument names (``max``, ``avg``); [`make_pool`][convzoo.layers.make_pool] builds them.

Attributes:
    kind: ``"pool"`` (in messages).
    key: ``"pool"``.

Examples:
    >>> import convzoo
    >>> POOLS.build("max", pool_size=2)
    MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
"""
INITS = Registry("init scheme", key="scheme")
"""The weight-init schemes an init config names (``kaiming_normal``, ``normal``, ``zeros``, ...).

Each builder returns a function that fills one tensor in place; [`resolve_init`][convzoo.weight_init.schemes.resolve_init]
looks schemes up, [`apply_init`][convzoo.weight_init.apply.apply_init] applies them to a network.

Attributes:
    kind: ``"init scheme"`` (in messages).
    key: ``"scheme"``: ``{"scheme": "normal", "std": 0.02}``.

Examples:
    >>> import convzoo
    >>> "kaiming_normal" in INITS
    True
"""
