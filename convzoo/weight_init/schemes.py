"""Weight-initialisation schemes, chosen by name from a config.

Each scheme is a *factory* registered in [`convzoo.registry.INITS`][convzoo.registry.INITS]: it takes the scheme's
arguments (validated by signature, so typos get did-you-mean answers) and returns an initialiser
that fills one tensor in place. All the maths is ``torch.nn.init``; nothing is re-implemented.

=================  ==========================================  ===============================
scheme             arguments (defaults)                        tensor gets
=================  ==========================================  ===============================
normal             mean=0.0, std=0.01                          N(mean, std^2)
trunc_normal       mean=0.0, std=0.02, a=-2.0, b=2.0           N(mean, std^2) cut to [a, b]
kaiming_normal     mode=fan_in, nonlinearity=relu, a=0.0       N(0, (gain / sqrt(fan))^2)
kaiming_uniform    mode=fan_in, nonlinearity=relu, a=0.0       U(+-gain * sqrt(3 / fan))
xavier_normal      gain=1.0                                    N(0, gain^2 * 2 / (in + out))
xavier_uniform     gain=1.0                                    U(+-gain * sqrt(6 / (in + out)))
orthogonal         gain=1.0                                    (semi-)orthogonal rows * gain
dirac              a=sqrt(5), mode=fan_in,                     kaiming_uniform, then its first
                   nonlinearity=leaky_relu                     in_channels filters = identity
constant           value=0.0                                   value everywhere
=================  ==========================================  ===============================

``gain`` may also be a nonlinearity name (``"relu"``, ``"tanh"``, ...), turned into a number by
``torch.nn.init.calculate_gain``.

"Leave the layer to PyTorch's own init" is no scheme at all: [`resolve_init`][convzoo.weight_init.schemes.resolve_init] turns ``None``
and the config name ``pytorch_default`` into ``None``, and [`convzoo.weight_init.apply_init`][convzoo.weight_init.apply.apply_init]
leaves the layers without a scheme alone.

Examples:
    >>> import torch
    >>> weight = torch.empty(64, 64)
    >>> resolve_init({"scheme": "orthogonal", "gain": 2.0})(weight)
    >>> torch.allclose(weight @ weight.T, 4 * torch.eye(64), atol=1e-4)
    True
    >>> resolve_init("pytorch_default") is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor, nn

from convzoo.errors import ConfigError, at, suggest
from convzoo.registry import INITS

__all__ = ["Initializer", "SchemeSpec", "InitSpec", "resolve_init", "PYTORCH_DEFAULT"]

Initializer = Callable[[Tensor], None]
"""A function that fills one tensor in place."""
SchemeSpec = Union[str, Mapping[str, Any], None]
"""How a scheme is named in a config: ``"normal"``, ``{"scheme": "normal", "std": 0.02}``, or
``None`` / ``"pytorch_default"`` for none."""

PYTORCH_DEFAULT = "pytorch_default"
"""The config name for "no scheme": the layers keep PyTorch's own init, weights *and* biases. It is
also what the record says of their parameters."""
_NO_SCHEME = (PYTORCH_DEFAULT, "default", "torch_default")

_MODES = ("fan_in", "fan_out")
# What torch.nn.init.calculate_gain understands; listed for error messages only.
_NONLINEARITIES = (
    "linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu",
)


# ---------------------------------------------------------------------------------------------
# argument checks shared by the schemes: fail when the config is read, not mid-way through a model
# ---------------------------------------------------------------------------------------------
def _check_choice(scheme: str, arg: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        hint = suggest(value, choices) if isinstance(value, str) else ""
        raise ConfigError(
            f"init scheme {scheme!r}: {arg} must be one of {', '.join(choices)}; got {value!r}.{hint}"
        )


def _gain(scheme: str, gain: float | str, param: float | None = None) -> float:
    """A number, or a nonlinearity name turned into torch's recommended gain."""
    if isinstance(gain, str):
        _check_choice(scheme, "gain", gain, _NONLINEARITIES)
        return float(nn.init.calculate_gain(gain, param))
    return float(gain)


def _check_nonneg(scheme: str, arg: str, value: float) -> None:
    if not value >= 0:  # also catches NaN
        raise ConfigError(f"init scheme {scheme!r}: {arg} must be >= 0; got {value!r}.")


# ---------------------------------------------------------------------------------------------
# the schemes (factories returning an in-place initialiser)
# ---------------------------------------------------------------------------------------------
@INITS.register("normal", "gaussian")
def normal(mean: float = 0.0, std: float = 0.01) -> Initializer:
    """N(mean, std^2), the classic AlexNet/VGG recipe (std 0.01).

    Examples:
        >>> weight = torch.empty(256, 256)
        >>> INITS.build({"scheme": "normal", "std": 0.02})(weight)
        >>> round(weight.std().item(), 2)
        0.02
    """
    _check_nonneg("normal", "std", std)

    def init(tensor: Tensor) -> None:
        nn.init.normal_(tensor, mean=float(mean), std=float(std))

    return init


@INITS.register("trunc_normal", "truncated_normal")
def trunc_normal(mean: float = 0.0, std: float = 0.02, a: float = -2.0, b: float = 2.0) -> Initializer:
    """N(mean, std^2) redrawn into ``[a, b]``, the ViT/timm recipe.

    ``a`` and ``b`` are *absolute* bounds (as in timm and ``torch.nn.init.trunc_normal_``), not
    multiples of ``std``: with the defaults (std 0.02, bounds +-2) nothing is effectively cut. To
    truncate at two standard deviations, pass ``a=-2 * std, b=2 * std``.

    Examples:
        >>> weight = torch.empty(256, 256)
        >>> INITS.build({"scheme": "trunc_normal", "std": 1.0, "a": -1.0, "b": 1.0})(weight)
        >>> bool(weight.abs().max() <= 1.0)
        True
    """
    _check_nonneg("trunc_normal", "std", std)
    if not a < b:
        raise ConfigError(f"init scheme 'trunc_normal': needs a < b; got a={a!r}, b={b!r}.")

    def init(tensor: Tensor) -> None:
        nn.init.trunc_normal_(tensor, mean=float(mean), std=float(std), a=float(a), b=float(b))

    return init


def _check_kaiming(scheme: str, mode: str, nonlinearity: str, a: float) -> None:
    _check_choice(scheme, "mode", mode, _MODES)
    _check_choice(scheme, "nonlinearity", nonlinearity, _NONLINEARITIES)


@INITS.register("kaiming_normal", "he_normal")
def kaiming_normal(mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> Initializer:
    """He et al. (2015) normal init: std = gain / sqrt(fan).

    ``mode="fan_out"`` with ``nonlinearity="relu"`` is the torchvision ResNet convention. ``a`` is
    the negative slope used for the gain when ``nonlinearity="leaky_relu"``. Fans are computed by
    torch (for transposed convs torch's "fan_in" counts the *output* channels).

    Examples:
        >>> weight = torch.empty(512, 512)
        >>> INITS.build({"scheme": "kaiming_normal", "mode": "fan_in"})(weight)
        >>> round(weight.std().item() * 512 ** 0.5, 1)  # ~ sqrt(2), the ReLU gain
        1.4
    """
    _check_kaiming("kaiming_normal", mode, nonlinearity, a)

    def init(tensor: Tensor) -> None:
        nn.init.kaiming_normal_(tensor, a=float(a), mode=mode, nonlinearity=nonlinearity)

    return init


@INITS.register("kaiming_uniform", "he_uniform")
def kaiming_uniform(mode: str = "fan_in", nonlinearity: str = "relu", a: float = 0.0) -> Initializer:
    """He et al. (2015) uniform init: U(-bound, bound) with bound = gain * sqrt(3 / fan).

    (PyTorch's own conv/linear default is this scheme with ``nonlinearity="leaky_relu", a=sqrt(5)``.)

    Examples:
        >>> weight = torch.empty(64, 100)
        >>> INITS.build("kaiming_uniform")(weight)
        >>> bool(weight.abs().max() <= 2 ** 0.5 * (3 / 100) ** 0.5)
        True
    """
    _check_kaiming("kaiming_uniform", mode, nonlinearity, a)

    def init(tensor: Tensor) -> None:
        nn.init.kaiming_uniform_(tensor, a=float(a), mode=mode, nonlinearity=nonlinearity)

    return init


@INITS.register("xavier_normal", "glorot_normal")
def xavier_normal(gain: float | str = 1.0) -> Initializer:
    """Glorot & Bengio (2010) normal init: std = gain * sqrt(2 / (fan_in + fan_out)).

    Examples:
        >>> weight = torch.empty(300, 500)
        >>> INITS.build({"scheme": "xavier_normal", "gain": "tanh"})(weight)
    """
    value = _gain("xavier_normal", gain)

    def init(tensor: Tensor) -> None:
        nn.init.xavier_normal_(tensor, gain=value)

    return init


@INITS.register("xavier_uniform", "glorot_uniform")
def xavier_uniform(gain: float | str = 1.0) -> Initializer:
    """Glorot & Bengio (2010) uniform init: U(+-gain * sqrt(6 / (fan_in + fan_out))).

    Examples:
        >>> weight = torch.empty(300, 500)
        >>> INITS.build("xavier_uniform")(weight)
        >>> bool(weight.abs().max() <= (6 / 800) ** 0.5)
        True
    """
    value = _gain("xavier_uniform", gain)

    def init(tensor: Tensor) -> None:
        nn.init.xavier_uniform_(tensor, gain=value)

    return init


@INITS.register("orthogonal")
def orthogonal(gain: float | str = 1.0) -> Initializer:
    """Saxe et al. (2014): the weight, flattened to (out, -1), gets orthonormal rows (or columns
    when it is wider than tall), scaled by ``gain``.

    Examples:
        >>> weight = torch.empty(64, 64)
        >>> INITS.build("orthogonal")(weight)
        >>> torch.allclose(weight @ weight.T, torch.eye(64), atol=1e-4)
        True
    """
    value = _gain("orthogonal", gain)

    def init(tensor: Tensor) -> None:
        nn.init.orthogonal_(tensor, gain=value)

    return init


@INITS.register("dirac", "identity")
def dirac(a: float = math.sqrt(5), mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> Initializer:
    """airbench's conv init: kaiming-uniform (the defaults are PyTorch's own conv init), then the
    first ``in_channels`` filters set to the identity (``torch.nn.init.dirac_``; ``eye_`` for a
    linear weight), so every layer starts out passing its input through: an implicit residual
    that lets a plain chain train fast from step 1. Output channels beyond ``in_channels`` keep
    their random filters; a layer with fewer outputs than inputs passes the first ones through.

    Examples:
        >>> weight = torch.empty(8, 4, 3, 3)
        >>> INITS.build("dirac")(weight)
        >>> x = torch.randn(1, 4, 5, 5)
        >>> torch.allclose(torch.nn.functional.conv2d(x, weight, padding=1)[:, :4], x)
        True
    """
    _check_kaiming("dirac", mode, nonlinearity, a)

    def init(tensor: Tensor) -> None:
        nn.init.kaiming_uniform_(tensor, a=float(a), mode=mode, nonlinearity=nonlinearity)
        identity = tensor[: tensor.size(1)]
        if tensor.dim() >= 3:
            nn.init.dirac_(identity)
        else:
            nn.init.eye_(identity)

    return init


@INITS.register("constant", "zeros")
def constant(value: float = 0.0) -> Initializer:
    """Every element set to ``value`` (e.g. ``linear: {scheme: constant}`` zero-inits a classifier).

    Examples:
        >>> weight = torch.empty(3)
        >>> INITS.build({"scheme": "constant", "value": 0.5})(weight)
        >>> weight.tolist()
        [0.5, 0.5, 0.5]
    """

    def init(tensor: Tensor) -> None:
        nn.init.constant_(tensor, float(value))

    return init


# ---------------------------------------------------------------------------------------------
# resolving a config entry
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InitSpec:
    """A scheme resolved from a config: canonical name, all arguments (defaults filled in), and
    the initialiser built from them."""

    scheme: str
    args: dict[str, Any]
    init: Initializer = field(repr=False, compare=False)

    def as_config(self) -> dict[str, Any]:
        """``{"scheme": ..., "args": {...}}`` for hyperparameter logging."""
        return {"scheme": self.scheme, "args": dict(self.args)}

    def __call__(self, tensor: Tensor) -> None:
        self.init(tensor)


def resolve_init(spec: SchemeSpec | InitSpec, where: str = "init", also_accepted: Sequence[str] = ()) -> InitSpec | None:
    """Turn ``"name"`` or ``{"scheme": name, **args}`` into an [`InitSpec`][convzoo.weight_init.schemes.InitSpec]; ``None`` for no
    scheme (``None`` or ``pytorch_default``).

    Errors are [`ConfigError`][convzoo.errors.ConfigError]ss prefixed with ``where`` (the config key the spec came
    from), listing close names and the accepted arguments (plus ``also_accepted``: keys the caller
    reads from the same mapping).

    Examples:
        >>> resolve_init({"scheme": "he_normal", "mode": "fan_out"})
        InitSpec(scheme='kaiming_normal', args={'mode': 'fan_out', 'nonlinearity': 'relu', 'a': 0.0})
        >>> resolve_init("kaimng_normal", where="init.conv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.errors.ConfigError: init.conv: Unknown init scheme 'kaimng_normal'. Did you mean 'kaiming_normal'...
    """
    if isinstance(spec, InitSpec):
        return spec
    if spec is None or spec in _NO_SCHEME:
        return None
    if isinstance(spec, Mapping) and spec.get(INITS.key) in _NO_SCHEME:
        for key in spec:
            if key != INITS.key:
                raise at(where, f"{PYTORCH_DEFAULT} (PyTorch's own init) takes no arguments; got {key!r}."
                                f"{suggest(key, also_accepted)} The config also accepts: "
                                f"{', '.join(also_accepted) or 'nothing'}.")
        return None
    resolved = INITS.resolve(spec, where=where, also_accepted=also_accepted)
    return InitSpec(resolved.name, resolved.args, resolved.built)
