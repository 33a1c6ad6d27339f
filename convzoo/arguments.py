"""What a builder accepts, read from its signature: the one argument checker ([`check_arguments`][convzoo.arguments.check_arguments]),
and the one place that knows how a config value (plain YAML types) fits a Python annotation, the
numbers each argument name accepts, and how a mismatch reads. The block registry
([`Registry.check_call`][convzoo.registry.Registry.check_call]) and the training-config checks
([`convzoo.training.config_checks.check_target`][convzoo.training.config_checks.check_target]) both judge arguments with it; each names the
arguments its own way ([`Naming`][convzoo.arguments.Naming]).

Examples:
    >>> fits_annotation([16, 32], list[int]), type_name(int | None), out_of_range("kernel_size", 0)
    (True, 'int | None', Range(low=1, high=None, low_open=False))
    >>> def conv(out_channels: int, kernel_size: int = 3): ...
    >>> check_arguments(builder_signature(conv), {"out_channels": 8, "kernel_size": 0}, Naming("block 'conv'"))
    Traceback (most recent call last):
    ...
    convzoo.errors.ConfigError: block 'conv': kernel_size=0 is out of range; it must be >= 1.
"""

from __future__ import annotations

import collections.abc
import inspect
import types
import typing
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from convzoo.errors.policy import ConfigError, about, suggest

__all__ = ["ARGUMENT_RANGES", "Naming", "Range", "Signature", "builder_signature", "check_arguments",
           "fits_annotation", "mismatch", "out_of_range", "target_signature", "type_hints", "type_name"]


_SEQUENCES = (list, tuple, collections.abc.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping)


def fits_annotation(value: Any, annotation: Any) -> bool:
    """Whether a config ``value`` (plain YAML types) fits a type annotation.

    Understands the annotations blocks use: ``int``, ``float`` (ints fit), ``bool`` (ints do not),
    ``str``, ``None``, unions/``Optional``, ``list``/``tuple``/``Sequence`` of an item type,
    ``dict``/``Mapping``, ``Literal`` and classes; anything else fits (it is not ours to judge).

    Examples:
        >>> fits_annotation(3, int | None), fits_annotation("abc", int), fits_annotation(True, int)
        (True, False, False)
        >>> fits_annotation([16, 32], list[int]), fits_annotation(2, float)
        (True, True)
    """
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is None or annotation is type(None):
        return value is None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(fits_annotation(value, arm) for arm in args)
    if origin is typing.Literal:
        return value in args
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(fits_annotation(v, a) for v, a in zip(value, args))
        return not args or all(fits_annotation(v, args[0]) for v in value)
    if origin in _MAPPINGS or annotation in _MAPPINGS:
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


@dataclass(frozen=True)
class Range:
    """The numbers an argument accepts: ``low`` (excluded when ``low_open``) up to ``high`` (``None``: no limit).

    Examples:
        >>> 0 in Range(1), 0.5 in Range(0, 1), str(Range(0, low_open=True)), str(Range(0, 1))
        (False, True, '> 0', 'from 0 to 1')
    """

    low: float
    high: float | None = None
    low_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.high is not None:
            return f"from {self.low} to {self.high}"
        return f"{'>' if self.low_open else '>='} {self.low}"


ARGUMENT_RANGES: dict[str, Range] = {
    **dict.fromkeys(("kernel_size", "stride", "dilation", "patch_size", "pool_size", "groups", "out_channels",
                     "num_classes", "growth_rate", "expansion", "mlp_ratio", "reduction", "se_reduction",
                     "rd_channels", "num_groups"), Range(1)),
    **dict.fromkeys(("padding", "bottleneck", "layer_scale"), Range(0)),
    **dict.fromkeys(("dropout", "drop_path", "momentum"), Range(0, 1)),
    **dict.fromkeys(("eps", "scale_factor", "compression"), Range(0, low_open=True)),
}
"""What an argument of each name accepts, in every block, norm, pool or activation that takes it:
one table instead of a check in each block, so a new block gets them by naming its arguments
as the others do. Values the type allows but no layer can use (a kernel of 0, a stride of -1)
are refused here, before anything is built. Sequences (``kernel_size: [3, 5]``) are checked
item by item; ``None`` and strings (``padding: same``) are left to the annotation."""


def out_of_range(name: str, value: Any, ranges: Mapping[str, Range] = ARGUMENT_RANGES) -> Range | None:
    """The range ``value`` of an argument called ``name`` misses (``None``: it fits, or nothing is known).

    Examples:
        >>> out_of_range("kernel_size", 0), out_of_range("kernel_size", [3, 3]), out_of_range("padding", "same")
        (Range(low=1, high=None, low_open=False), None, None)
    """
    accepted = ranges.get(name)
    values = value if isinstance(value, (list, tuple)) else [value]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return accepted if accepted is not None and any(v not in accepted for v in numbers) else None


def type_name(annotation: Any) -> str:
    """How an annotation reads in an error message: ``int``, ``int | None``, ``list[int]``, ``mapping``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is None or annotation is type(None):
        return "None"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arm) for arm in args)
    if origin is typing.Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin in _SEQUENCES or annotation in _SEQUENCES:
        return f"list[{', '.join(type_name(a) for a in args if a is not Ellipsis)}]" if args else "list"
    if origin in _MAPPINGS or annotation in _MAPPINGS:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def type_hints(builder: Callable) -> dict[str, Any]:
    """The builder's evaluated annotations; empty when they cannot be evaluated (then nothing is checked)."""
    target = builder.__init__ if isinstance(builder, type) else builder
    try:
        return typing.get_type_hints(target)
    except Exception:  # an annotation naming something not importable here: skip the type checks
        return {}


Signature = tuple[dict[str, inspect.Parameter], dict[str, Any], bool]
"""``(parameters by name, type hints, takes **kwargs)``: what [`check_arguments`][convzoo.arguments.check_arguments] checks against."""


def builder_signature(builder: Callable) -> Signature:
    """The builder's own [`Signature`][convzoo.arguments.Signature] (a registry entry: its ``**kwargs`` are its own business).

    Examples:
        >>> params, hints, open_ended = builder_signature(lambda size, color="red", **extra: None)
        >>> list(params), open_ended
        (['size', 'color'], True)
    """
    params = inspect.signature(builder).parameters
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, type_hints(builder), any(p.kind is p.VAR_KEYWORD for p in params.values())


def target_signature(target: Callable) -> Signature:
    """``(parameters, type hints, takes **kwargs)``, following ``**kwargs`` up a class's bases.

    ``CIFAR10DataModule(root, download, **kwargs)`` hands ``kwargs`` to ``TensorDataModule``, so the
    arguments it accepts are both classes' together. Only the target's own parameters can be
    required: a subclass may fill its bases' required ones itself.
    """
    owners = [klass for klass in target.__mro__ if "__init__" in vars(klass)] if isinstance(target, type) else [target]
    params: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for owner in owners:
        function = owner.__init__ if isinstance(owner, type) else owner
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
            return params, hints, True
        for name, param in signature.parameters.items():
            if name != "self" and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                params.setdefault(name, param if owner is owners[0] else param.replace(default=None))
        for name, hint in type_hints(owner).items():
            hints.setdefault(name, hint)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()) or owner is object:
            return params, hints, False
    return params, hints, True


def _choices(hint: Any) -> list[Any]:
    """The values a ``Literal`` (or a union holding ``Literal`` types) allows."""
    if typing.get_origin(hint) is Literal:
        return list(typing.get_args(hint))
    return [c for arm in typing.get_args(hint) for c in _choices(arm)] if typing.get_args(hint) else []


#: Where a message's did-you-mean goes, until it is filled in (the closest names come last, from convzoo.errors).
_NEAR = "\x00"


def _mismatch(key: str, value: Any, hint: Any) -> tuple[str, tuple[str, list[str]] | None]:
    """[`mismatch`][convzoo.arguments.mismatch]'s message with a ``_NEAR`` mark where the closest choices go,
    and what to look them up with (``None``: no choices to suggest)."""
    choices = _choices(hint)
    if choices and any(isinstance(value, type(c)) for c in choices if c is not None):
        near = (value, [c for c in choices if isinstance(c, str)]) if isinstance(value, str) else None
        return f"{key}={value!r} is not one of {type_name(hint).replace(' | ', ', ')}.{_NEAR if near else ''}", near
    return f"{key}={value!r} has the wrong type ({type(value).__name__}); it must be {type_name(hint)}.", None


def _filled(message: str, near: tuple[str, Sequence[str]] | None) -> str:
    """``message`` with its did-you-mean filled in."""
    return message.replace(_NEAR, suggest(*near)) if near else message


def mismatch(key: str, value: Any, hint: Any) -> str:
    """Why ``key=value`` does not fit ``hint``: a choice not on the list (with the closest), or a wrong type.

    Examples:
        >>> mismatch("trainer.precision", "bf16_mixed", Literal["32-true", "bf16-mixed"] | None)
        "trainer.precision='bf16_mixed' is not one of '32-true', 'bf16-mixed', None. Did you mean 'bf16-mixed'?"
    """
    return _filled(*_mismatch(key, value, hint))


@dataclass(frozen=True)
class Naming:
    """How [`check_arguments`][convzoo.arguments.check_arguments]' messages name the arguments they are about.

    As a registry entry's, by default: ``block 'conv' got an unknown argument 'k'``,
    ``block 'conv': kernel_size=0 ...``. As config keys, when ``key`` is given (the key the arguments
    sit under): ``trainer.foo is not an argument of Trainer``, ``trainer.max_epochs='abc' ...``.

    Attributes:
        owner: what takes the arguments: ``block 'conv'``, ``Trainer``.
        key: the config key the arguments sit under (``None``: named as the owner's).

    Examples:
        >>> Naming("block 'conv'").argument("stride"), Naming("Trainer", key="trainer").argument("max_epochs")
        ("block 'conv': stride", 'trainer.max_epochs')
    """

    owner: str
    key: str | None = None

    def argument(self, name: str) -> str:
        """How a message names one argument (a value follows: ``=0 is out of range``)."""
        return f"{self.owner}: {name}" if self.key is None else f"{self.key}.{name}"

    def unknown(self, name: str, accepted: Sequence[str]) -> str:
        """The message for an argument ``name`` the owner does not take, with the closest of ``accepted``."""
        return _filled(self._unknown(name, accepted), (name, accepted))

    def _unknown(self, name: str, accepted: Sequence[str]) -> str:
        listing = f"{_NEAR} It accepts: {', '.join(accepted)}."
        if self.key is None:
            return f"{self.owner} got an unknown argument {name!r}.{listing}"
        return f"{self.key}.{name} is not an argument of {self.owner}.{listing}"

    def missing(self, names: Sequence[str], accepted: Sequence[str]) -> str:
        """The message for required arguments ``names`` that were not given."""
        if self.key is None:
            return f"{self.owner} is missing required argument(s) {', '.join(names)}. It accepts: {', '.join(accepted)}."
        return f"{self.key} is missing the required argument(s) {', '.join(names)} of {self.owner}."

    def supplied(self, name: str) -> str:
        """The message for an argument convzoo sets itself that the config set too."""
        return f"{self.argument(name)} is set by convzoo itself; remove it from the config."


def check_arguments(signature: Signature, arguments: Mapping[str, Any], naming: Naming, *,
                    supplied: Iterable[str] = (), partial: bool | Collection[str] = False,
                    also_accepted: Sequence[str] = (),
                    ranges: Mapping[str, Range] = ARGUMENT_RANGES,
                    judged_later: Callable[[Any], bool] = lambda value: False) -> None:
    """Raise a [`ConfigError`][convzoo.errors.ConfigError] when ``arguments`` do not fit ``signature``.

    In order: every name must be a parameter (unless the builder takes ``**kwargs``; the closest
    accepted names are suggested, ``also_accepted`` among them: keys the caller takes out of the same
    mapping itself) and not one the caller ``supplied`` itself; every required parameter must be
    given (or ``supplied``), but those ``partial`` names (all if it is ``True``: the caller fills them in later); every value must fit its annotation (but those
    ``judged_later``, e.g. a node built later) and the ``ranges`` of its name. An error about one
    argument says which ([`about`][convzoo.errors.about]).

    Examples:
        >>> def box(size: int, color: str = "red"): ...
        >>> check_arguments(builder_signature(box), {"color": "blue"}, Naming("thing 'box'"), partial=True)
        >>> check_arguments(builder_signature(box), {"colour": "blue"}, Naming("Box", key="cfg.box"))
        Traceback (most recent call last):
        ...
        convzoo.errors.ConfigError: cfg.box.colour is not an argument of Box. Did you mean 'color'? It accepts: size, color.
    """
    problem = _first_problem(signature, arguments, naming, tuple(supplied), partial, also_accepted, ranges, judged_later)
    if problem is not None:  # reported last, in one place: the message, the argument it is about, its did-you-mean
        message, argument, near = problem
        error = ConfigError(_filled(message, near))
        raise about(error, argument) if argument is not None else error


def _first_problem(signature: Signature, arguments: Mapping[str, Any], naming: Naming, supplied: tuple[str, ...],
                   partial: bool | Collection[str], also_accepted: Sequence[str], ranges: Mapping[str, Range],
                   judged_later: Callable[[Any], bool]) -> tuple[str, str | None, tuple[str, Sequence[str]] | None] | None:
    """What [`check_arguments`][convzoo.arguments.check_arguments] reports, in its order: ``(message with a
    did-you-mean mark, the argument it is about, the names to look the closest up in)``, or ``None``."""
    params, hints, open_ended = signature
    accepted = [name for name in params if name not in supplied]
    for name in arguments:
        if name not in params and not open_ended:
            return naming._unknown(name, [*accepted, *also_accepted]), name, (name, [*accepted, *also_accepted])
        if name in supplied:
            return naming.supplied(name), name, None
    later = () if partial is False else params if partial is True else tuple(partial)
    missing = [n for n, p in params.items()
               if p.default is p.empty and n not in arguments and n not in supplied and n not in later]
    if missing:
        return naming.missing(missing, accepted), None, None
    for name, value in arguments.items():
        hint = hints.get(name)
        if hint is not None and not judged_later(value) and not fits_annotation(value, hint):
            message, near = _mismatch(naming.argument(name), value, hint)
            return message, name, near
        accepted_range = out_of_range(name, value, ranges)
        if accepted_range is not None:
            return f"{naming.argument(name)}={value!r} is out of range; it must be {accepted_range}.", name, None
    return None
