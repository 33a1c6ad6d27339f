"""Weight-initialisation schemes, chosen by name from a config, and :func:`apply_init` to use them.

Each scheme is a *factory* registered in :data:`convzoo.registry.INITS`: it takes the scheme's
arguments (validated by signature, so typos get did-you-mean answers) and returns an initialiser
that fills one tensor in place. All the maths is ``torch.nn.init``; nothing is re-implemented.

=================  ==========================================  ===============================
scheme             arguments (defaults)                        tensor gets
=================  ==========================================  ===============================
pytorch_default    --                                          left alone (torch's own init)
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

``checkpoint=PATH`` (``init=pretrained init.checkpoint=PATH`` in a run) starts from an earlier
run's weights: after the scheme, every tensor whose name and shape match is copied from the
checkpoint (:func:`convzoo.weights.load_weights`); the record names each copied parameter's
source, and the rest (a new head) keep what the scheme gave them.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from convzoo.init import apply_init
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 10))
    >>> record = apply_init(model, "kaiming_normal", linear={"scheme": "normal", "std": 0.01})
    >>> [(entry.name, entry.scheme) for entry in record]  # doctest: +NORMALIZE_WHITESPACE
    [('0.weight', 'kaiming_normal'), ('0.bias', 'constant'), ('1.weight', 'constant'),
     ('1.bias', 'constant'), ('3.weight', 'normal'), ('3.bias', 'constant')]
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor, nn

from convzoo.registry import INITS, ConfigError, suggest

__all__ = [
    "Initializer",
    "InitSpec",
    "InitEntry",
    "InitRecord",
    "resolve_init",
    "apply_init",
    "apply_init_config",
    "apply_data_init",
    "INIT_OPTIONS",
    "PYTORCH_DEFAULT",
    "NORM_TYPES",
    "PRETRAINED",
]

#: A function that fills one tensor in place.
Initializer = Callable[[Tensor], None]
#: How a scheme is named in a config: ``"normal"`` or ``{"scheme": "normal", "std": 0.02}``.
SchemeSpec = Union[str, Mapping[str, Any]]

#: The scheme that means "hands off": layers it covers keep their weights *and* biases.
PYTORCH_DEFAULT = "pytorch_default"
#: What the record says of a parameter copied from a checkpoint (``apply_init(..., checkpoint=...)``).
PRETRAINED = "pretrained"
#: Keys of a flat init config (see :func:`apply_init_config`) that are not scheme arguments.
INIT_OPTIONS = ("conv", "linear", "bias", "norm", "checkpoint")

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
@INITS.register(PYTORCH_DEFAULT, "default", "torch_default")
def pytorch_default() -> Initializer:
    """Keep PyTorch's own initialisation (``reset_parameters`` of each layer).

    The returned function does nothing: a single tensor cannot be "re-defaulted". In
    :func:`apply_init` a layer whose scheme is ``pytorch_default`` is left entirely alone, bias
    included.

    Example:
        >>> INITS.build("pytorch_default")(torch.ones(2))  # no-op
    """

    def init(tensor: Tensor) -> None:
        return None

    return init


@INITS.register("normal", "gaussian")
def normal(mean: float = 0.0, std: float = 0.01) -> Initializer:
    """N(mean, std^2), the classic AlexNet/VGG recipe (std 0.01).

    Example:
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

    Example:
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

    Example:
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

    Example:
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

    Example:
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

    Example:
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

    Example:
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

    Example:
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

    Example:
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

    @property
    def is_default(self) -> bool:
        """True for ``pytorch_default``: layers covered by it are left alone."""
        return self.scheme == PYTORCH_DEFAULT

    def as_config(self) -> dict[str, Any]:
        """``{"scheme": ..., "args": {...}}`` for hyperparameter logging."""
        return {"scheme": self.scheme, "args": dict(self.args)}

    def __call__(self, tensor: Tensor) -> None:
        self.init(tensor)


def _plain(value: Any) -> Any:
    """Mappings (dicts, OmegaConf DictConfigs) to plain dicts, recursively, so that no omegaconf
    import is needed here: DictConfig is a Mapping and resolves interpolations on access."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def resolve_init(spec: SchemeSpec | InitSpec, where: str = "init") -> InitSpec:
    """Turn ``"name"`` or ``{"scheme": name, **args}`` into an :class:`InitSpec`.

    Errors are :class:`ConfigError`\\ s prefixed with ``where`` (the config key the spec came
    from), listing close names and the accepted arguments.

    Example:
        >>> resolve_init({"scheme": "he_normal", "mode": "fan_out"})
        InitSpec(scheme='kaiming_normal', args={'mode': 'fan_out', 'nonlinearity': 'relu', 'a': 0.0})
        >>> resolve_init("kaimng_normal", where="init.conv")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.registry.ConfigError: init.conv: Unknown init scheme 'kaimng_normal'. Did you mean 'kaiming_normal'...
    """
    if isinstance(spec, InitSpec):
        return spec
    if isinstance(spec, str):
        name, kwargs = spec, {}
    elif isinstance(spec, Mapping):
        kwargs = _plain(spec)
        if INITS.key not in kwargs:
            raise ConfigError(
                f"{where}: {kwargs!r} has no {INITS.key!r} key naming the init scheme "
                f"(one of {', '.join(INITS.names())})."
            )
        name = kwargs.pop(INITS.key)
    else:
        raise ConfigError(
            f"{where}: an init scheme is a name or a mapping with a {INITS.key!r} key; got {spec!r}."
        )
    try:
        canonical = INITS.canonical_name(name)
        INITS.check_arguments(canonical, kwargs)
        factory = INITS.get(canonical)
        # Record every argument, defaults included, so logs say exactly what ran.
        bound = inspect.signature(factory).bind(**kwargs)
        bound.apply_defaults()
        args = dict(bound.arguments)
        init = factory(**kwargs)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None  # the prefixed message says it all
    return InitSpec(canonical, args, init)


# ---------------------------------------------------------------------------------------------
# the record of what happened
# ---------------------------------------------------------------------------------------------
@dataclass
class InitEntry:
    """What happened to one parameter. ``mean``/``std`` (std with correction 0) are measured
    after initialisation; ``scheme`` is ``"unchanged"`` when no rule covered the parameter."""

    name: str
    shape: tuple[int, ...]
    numel: int
    layer_type: str
    scheme: str
    args: dict[str, Any]
    mean: float
    std: float

    def as_row(self) -> dict[str, Any]:
        """Flat, scalar-only dict (shape as ``"64x3x3x3"``, args as ``"k=v k=v"``)."""
        return {
            "name": self.name,
            "layer_type": self.layer_type,
            "shape": "x".join(str(s) for s in self.shape) or "scalar",
            "numel": self.numel,
            "scheme": self.scheme,
            "args": " ".join(f"{k}={v}" for k, v in self.args.items()),
            "mean": self.mean,
            "std": self.std,
        }


class InitRecord(list):
    """The list of :class:`InitEntry` returned by :func:`apply_init`, one per parameter, in
    ``model.named_parameters()`` order, plus ``config`` (the choices made, for hparam logging).

    Example:
        >>> from torch import nn
        >>> record = apply_init(nn.Linear(4, 2), "xavier_uniform")
        >>> [row["scheme"] for row in record.as_rows()]
        ['xavier_uniform', 'constant']
        >>> record.config["scheme"], record.config["bias"]
        ('xavier_uniform', 0.0)
    """

    def __init__(self, entries: list[InitEntry] = (), config: dict[str, Any] | None = None):
        super().__init__(entries)
        self.config: dict[str, Any] = config or {}

    def as_rows(self) -> list[dict[str, Any]]:
        """One flat dict per parameter, for loggers and CSV."""
        return [entry.as_row() for entry in self]

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write :meth:`as_rows` to ``path`` (parent folders are created)."""
        path = os.fspath(path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fields = list(InitEntry.__dataclass_fields__)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.as_rows())

    def by_name(self) -> dict[str, InitEntry]:
        """Entries keyed by parameter name."""
        return {entry.name: entry for entry in self}

    def __str__(self) -> str:
        header = ("name", "layer", "shape", "scheme", "args", "mean", "std")
        rows = [
            (r["name"], r["layer_type"], r["shape"], r["scheme"], r["args"], f"{r['mean']:+.4g}", f"{r['std']:.4g}")
            for r in self.as_rows()
        ]
        widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
        lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
                 for line in (header, *rows)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"InitRecord({len(self)} parameters, config={self.config!r})"


# ---------------------------------------------------------------------------------------------
# applying schemes to a model
# ---------------------------------------------------------------------------------------------
# Layer families. _ConvNd covers Conv1d/2d/3d, their transposed and lazy versions and subclasses.
_CONV_TYPES: tuple[type, ...] = (nn.modules.conv._ConvNd,)
_LINEAR_TYPES: tuple[type, ...] = (nn.Linear,)
# _NormBase covers BatchNorm*, SyncBatchNorm and InstanceNorm*; subclasses (e.g. a LayerNorm2d) count.
NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()
)

_UNCHANGED = "unchanged"


def _stats(tensor: Tensor) -> tuple[float, float]:
    if tensor.numel() == 0 or tensor.is_meta:
        return math.nan, math.nan
    # float64 so the record is an accurate check, whatever the parameter dtype.
    values = tensor.detach().to(torch.float64)
    return values.mean().item(), values.std(correction=0).item()


def _initializable(module: nn.Module, attr: str) -> Tensor | None:
    """The parameter ``module.<attr>`` if it can be filled in place, else None (with a warning
    when it exists but cannot: lazy or re-parametrised weights)."""
    tensor = getattr(module, attr, None)
    if tensor is None:
        return None
    if isinstance(tensor, nn.parameter.UninitializedParameter):
        raise ConfigError(
            f"{type(module).__name__}.{attr} is a lazy, uninitialised parameter: run a forward pass "
            f"(or build the model with known shapes) before apply_init."
        )
    if not isinstance(tensor, nn.Parameter):
        # e.g. weight_norm / parametrize: the weight is computed, filling it would do nothing.
        warnings.warn(
            f"apply_init: {type(module).__name__}.{attr} is not a plain parameter (re-parametrised?); "
            f"left unchanged.",
            stacklevel=3,
        )
        return None
    return tensor


def apply_init(
    model: nn.Module,
    scheme: SchemeSpec = PYTORCH_DEFAULT,
    *,
    conv: SchemeSpec | None = None,
    linear: SchemeSpec | None = None,
    bias: float | None = 0.0,
    norm: bool = True,
    checkpoint: str | os.PathLike | None = None,
    where: str = "init",
) -> InitRecord:
    """Initialise the weights of ``model`` in place and report what was done.

    Rules:
        * ``scheme`` initialises the weight of every conv (``nn.Conv1d/2d/3d``, transposed, and
          subclasses) and every ``nn.Linear``; ``conv`` / ``linear`` override it per layer type.
        * Biases of those layers are set to ``bias`` (``None`` leaves them alone).
        * ``pytorch_default`` means hands off: layers it covers keep weight *and* bias. If every
          layer type resolves to it, ``apply_init`` changes nothing at all (norm layers included),
          so the default call is a no-op.
        * Otherwise, with ``norm=True`` the affine parameters of BatchNorm*/InstanceNorm*/GroupNorm/
          LayerNorm/RMSNorm layers are reset to weight 1, bias 0. (Apply model-specific tricks
          such as zero-init of a residual branch's last norm *after* this.)
        * Any other parameter (e.g. a custom module's ``nn.Parameter``) is left alone and recorded
          with scheme ``"unchanged"``.
        * Then, with ``checkpoint``, every parameter and buffer whose name and shape match is
          copied from it; the record says ``pretrained`` with the checkpoint and the source name.

    Args:
        model: the module to initialise, in place.
        scheme: ``"name"`` or ``{"scheme": name, **args}`` (dict or OmegaConf DictConfig).
        conv: scheme for conv weights instead of ``scheme``.
        linear: scheme for linear weights instead of ``scheme``.
        bias: constant for conv/linear biases, or ``None`` to leave them.
        norm: reset norm layers to the identity affine transform.
        checkpoint: a convzoo/Lightning checkpoint or saved state dict to take matching weights from.
        where: config key named in error messages (``"init"`` -> ``"init.conv: ..."``).

    Returns:
        an :class:`InitRecord` with one entry per parameter (measured mean/std) and ``.config``.

    Raises:
        ConfigError: unknown scheme name or bad arguments, naming the key they came from; a
            checkpoint that cannot be read or shares no tensor with the model.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 10))
        >>> record = apply_init(model, {"scheme": "kaiming_normal", "mode": "fan_out"},
        ...                     linear={"scheme": "normal", "std": 0.01})
        >>> record.by_name()["3.weight"].args
        {'mean': 0.0, 'std': 0.01}
    """
    # Resolve everything first so a bad config fails before any tensor is touched.
    main = resolve_init(scheme, where=where)
    conv_spec = resolve_init(conv, where=f"{where}.conv") if conv is not None else main
    linear_spec = resolve_init(linear, where=f"{where}.linear") if linear is not None else main
    if bias is not None:
        try:
            bias = float(bias)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.bias: must be a number or null; got {bias!r}.") from None
    hands_off = conv_spec.is_default and linear_spec.is_default

    # id(parameter) -> (scheme, args); parameters not in here are "unchanged".
    done: dict[int, tuple[str, dict[str, Any]]] = {}

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _CONV_TYPES + _LINEAR_TYPES):
                spec = conv_spec if isinstance(module, _CONV_TYPES) else linear_spec
                weight, layer_bias = _initializable(module, "weight"), _initializable(module, "bias")
                if spec.is_default:
                    for tensor in (weight, layer_bias):
                        if tensor is not None:
                            done[id(tensor)] = (PYTORCH_DEFAULT, {})
                    continue
                if weight is not None:
                    spec(weight)
                    done[id(weight)] = (spec.scheme, dict(spec.args))
                if layer_bias is not None and bias is not None:
                    nn.init.constant_(layer_bias, bias)
                    done[id(layer_bias)] = ("constant", {"value": bias})
            elif isinstance(module, NORM_TYPES) and norm and not hands_off:
                for attr, value in (("weight", 1.0), ("bias", 0.0)):
                    tensor = _initializable(module, attr)  # None when affine=False
                    if tensor is not None:
                        nn.init.constant_(tensor, value)
                        done[id(tensor)] = ("constant", {"value": value})

    entries: list[InitEntry] = []
    seen: set[int] = set()
    # Walk modules, not named_parameters(), to know each parameter's owning layer type; the order
    # (and the de-duplication of shared parameters) is the same as named_parameters().
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            scheme_name, args = done.get(id(param), (_UNCHANGED, {}))
            mean, std = _stats(param)
            entries.append(InitEntry(
                name=f"{module_name}.{param_name}" if module_name else param_name,
                shape=tuple(param.shape),
                numel=param.numel(),
                layer_type=type(module).__name__,
                scheme=scheme_name,
                args=args,
                mean=mean,
                std=std,
            ))

    config = {
        "scheme": main.scheme,
        "args": dict(main.args),
        "conv": conv_spec.as_config() if conv is not None else None,
        "linear": linear_spec.as_config() if linear is not None else None,
        "bias": bias,
        "norm": bool(norm),
    }
    record = InitRecord(entries, config)
    if checkpoint is not None:
        _load_pretrained(model, checkpoint, record, where)
    return record


def _load_pretrained(model: nn.Module, checkpoint: str | os.PathLike, record: InitRecord, where: str) -> None:
    """Overwrite the matching tensors with the checkpoint's and say so in ``record``."""
    from convzoo.weights import load_weights

    try:
        transfer = load_weights(model, checkpoint)
    except ConfigError as error:
        raise ConfigError(f"{where}.checkpoint: {error}") from None
    if not transfer.transferred:
        raise ConfigError(
            f"{where}.checkpoint: {os.fspath(checkpoint)!r} shares no tensor name with this model (its names: "
            f"{', '.join(transfer.unexpected[:3])}, ...); start from a run of the same architecture."
        )
    entries = record.by_name()
    for name in transfer.transferred:
        entry = entries.get(name)  # None for buffers (batch-norm statistics): the record lists parameters
        if entry is not None:
            entry.scheme = PRETRAINED
            entry.args = {"checkpoint": os.fspath(checkpoint), "tensor": transfer.source_names[name]}
            entry.mean, entry.std = _stats(model.get_parameter(name))
    record.config["checkpoint"] = {
        "path": os.fspath(checkpoint),
        "transferred": len(transfer.transferred),
        "skipped": {name: [list(a), list(b)] for name, (a, b) in transfer.skipped.items()},
        "missing": transfer.missing,
        "unexpected": transfer.unexpected,
    }


def apply_init_config(model: nn.Module, config: Mapping[str, Any] | str | None, where: str = "init") -> InitRecord:
    """:func:`apply_init` driven by a flat config, the form of the ``configs/init/*.yaml`` files.

    The mapping holds ``scheme`` and that scheme's arguments at the top level, next to
    apply_init's options ``conv``, ``linear``, ``bias`` and ``norm`` (all optional), so that
    ``init=normal init.std=0.02`` works on the command line. ``None`` means ``pytorch_default``;
    a bare string is a scheme name.

    Example:
        >>> from torch import nn
        >>> cfg = {"scheme": "normal", "std": 0.02, "conv": "kaiming_normal", "linear": None,
        ...        "bias": 0.0, "norm": True}
        >>> record = apply_init_config(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2)), cfg)
        >>> [entry.scheme for entry in record]
        ['kaiming_normal', 'constant', 'normal', 'constant']
    """
    if config is None:
        return apply_init(model, PYTORCH_DEFAULT, where=where)
    if isinstance(config, str):
        return apply_init(model, config, where=where)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'scheme' key; got {config!r}.")
    config = _plain(config)
    options = {key: config.pop(key) for key in INIT_OPTIONS if key in config}
    scheme = config.setdefault(INITS.key, PYTORCH_DEFAULT)
    # Check unknown keys here rather than in the registry so that the suggestion and the list of
    # accepted keys include apply_init's own options (a typo like 'lienar' finds 'linear').
    if isinstance(scheme, str) and scheme in INITS:
        params = INITS.signature(scheme).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            accepted = [INITS.key, *params, *INIT_OPTIONS]
            for key in config:
                if key not in accepted:
                    raise ConfigError(
                        f"{where}: init scheme {INITS.canonical_name(scheme)!r} got an unknown argument "
                        f"{key!r}.{suggest(key, accepted)} It accepts: {', '.join(accepted)}."
                    )
    return apply_init(model, config, where=where, **options)


def apply_data_init(
    model: nn.Module, images: Tensor | Callable[[], Tensor], record: InitRecord | None = None
) -> list[str]:
    """Run ``init_from_data(images)`` on every module that has it (e.g. the whitening stem).

    Data-dependent init comes after :func:`apply_init` (which would overwrite it); the entries of
    ``record`` for the affected parameters are updated to the module's ``data_init_scheme`` with
    their new statistics. ``images`` may be a zero-argument function, called only if some module
    needs data (so a model without such modules never loads any). A module whose parameters all
    came from a checkpoint (``pretrained`` in ``record``) keeps them. Returns the names of the
    modules initialised.

    Example:
        >>> import torch
        >>> from convzoo.blocks.whitening import WhiteningConv
        >>> stem = nn.Sequential(WhiteningConv(3, kernel_size=2))
        >>> apply_data_init(stem, torch.randn(64, 3, 8, 8))
        ['0']
    """
    entries = record.by_name() if record is not None else {}
    done = []
    for name, module in model.named_modules():
        init_from_data = getattr(module, "init_from_data", None)
        if not callable(init_from_data):
            continue
        owned = [entries.get(f"{name}.{param_name}" if name else param_name) for param_name, _ in module.named_parameters()]
        if owned and all(entry is not None and entry.scheme == PRETRAINED for entry in owned):
            continue  # fitted in the run the checkpoint came from
        if callable(images):
            images = images()
        init_from_data(images)
        done.append(name)
        for param_name, param in module.named_parameters():
            entry = entries.get(f"{name}.{param_name}" if name else param_name)
            if entry is not None and not param.requires_grad:
                entry.scheme, entry.args = getattr(module, "data_init_scheme", "data"), {"images": len(images)}
                entry.mean, entry.std = _stats(param)
    if record is not None and done:
        record.config["data_init"] = done
    return done
