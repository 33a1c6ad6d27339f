"""The init policy: which scheme each parameter of a model gets ([`apply_init`][convzoo.weight_init.apply.apply_init]), from a flat
config ([`apply_init_config`][convzoo.weight_init.apply.apply_init_config]), from a checkpoint, and from data ([`apply_data_init`][convzoo.weight_init.apply.apply_data_init]).

Examples:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8, 10))
    >>> record = apply_init(model, "kaiming_normal", linear={"scheme": "normal", "std": 0.01})
    >>> [(entry.name, entry.scheme) for entry in record]  # doctest: +NORMALIZE_WHITESPACE
    [('0.weight', 'kaiming_normal'), ('0.bias', 'constant'), ('1.weight', 'constant'),
     ('1.bias', 'constant'), ('3.weight', 'normal'), ('3.bias', 'constant')]
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.layers import NORM_TYPES
from convzoo.errors import ConfigError, at, suggest
from convzoo.registry import INITS
from convzoo.weight_init.record import PRETRAINED, InitRecord, tensor_stats
from convzoo.weight_init.schemes import PYTORCH_DEFAULT, InitSpec, SchemeSpec, resolve_init

__all__ = ["apply_init", "apply_init_config", "apply_data_init", "INIT_OPTIONS"]

INIT_OPTIONS = ("conv", "linear", "bias", "norm", "checkpoint", "weights")
"""Keys of a flat init config (see [`apply_init_config`][convzoo.weight_init.apply.apply_init_config]) that are not scheme arguments."""

# Layer families. _ConvNd covers Conv1d/2d/3d, their transposed and lazy versions and subclasses.
_CONV_TYPES: tuple[type, ...] = (nn.modules.conv._ConvNd,)
_LINEAR_TYPES: tuple[type, ...] = (nn.Linear,)


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
    scheme: SchemeSpec | InitSpec = None,
    *,
    conv: SchemeSpec | InitSpec = None,
    linear: SchemeSpec | InitSpec = None,
    bias: float | None = 0.0,
    norm: bool = True,
    checkpoint: str | os.PathLike | None = None,
    weights: str | None = None,
    where: str = "init",
) -> InitRecord:
    """Initialise the weights of ``model`` in place and report what was done.

    Rules:
        * ``scheme`` initialises the weight of every conv (``nn.Conv1d/2d/3d``, transposed, and
          subclasses) and every ``nn.Linear``; ``conv`` / ``linear`` override it per layer type.
        * Biases of those layers are set to ``bias`` (``None`` leaves them alone).
        * No scheme (``None``, or the config name ``pytorch_default``) means hands off: the layers
          keep PyTorch's own init, weight *and* bias. If no layer type has a scheme, ``apply_init``
          changes nothing at all (norm layers included), so the default call is a no-op.
        * Otherwise, with ``norm=True`` the affine parameters of ``BatchNorm*``, ``InstanceNorm*``, ``GroupNorm``,
          ``LayerNorm`` and ``RMSNorm`` layers are reset to weight 1, bias 0. (Apply model-specific tricks
          such as zero-init of a residual branch's last norm *after* this.)
        * Any other parameter (e.g. a custom module's ``nn.Parameter``) is left alone and recorded
          with scheme ``"unchanged"``.
        * Then, with ``checkpoint``, every parameter and buffer whose name and shape match is
          copied from it; the record says ``pretrained`` with the checkpoint and the source name.
        * ``weights`` does the same from one of convzoo's shipped weight sets, by name; every tensor
          of the network must come from it but those of another shape (a new head).

    Args:
        model: the module to initialise, in place.
        scheme: ``"name"`` or ``{"scheme": name, **args}`` (dict or OmegaConf DictConfig); ``None``
            or ``"pytorch_default"`` for no scheme.
        conv: scheme for conv weights instead of ``scheme`` (``"pytorch_default"``: leave them).
        linear: scheme for linear weights instead of ``scheme`` (``"pytorch_default"``: leave them).
        bias: constant for conv/linear biases, or ``None`` to leave them.
        norm: reset norm layers to the identity affine transform.
        checkpoint: a convzoo/Lightning checkpoint, saved state dict or safetensors file to take
            matching weights from.
        weights: the name of a shipped weight set (``convzoo.list_pretrained()``, e.g. ``"resnet20"``)
            to start from instead of ``checkpoint``.
        where: config key named in error messages (``"init"`` -> ``"init.conv: ..."``).

    Returns:
        an [`InitRecord`][convzoo.weight_init.record.InitRecord] with one entry per parameter (measured mean/std) and ``.config``.

    Raises:
        ConfigError: unknown scheme name or bad arguments, naming the key they came from; a
            checkpoint that cannot be read or shares no tensor with the model.

    Examples:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 10))
        >>> record = apply_init(model, {"scheme": "kaiming_normal", "mode": "fan_out"},
        ...                     linear={"scheme": "normal", "std": 0.01})
        >>> record.by_name()["3.weight"].args
        {'mean': 0.0, 'std': 0.01}
    """
    # Resolve everything first so a bad config fails before any tensor is touched.
    if weights is not None:
        if checkpoint is not None:
            raise at(where, f"checkpoint={os.fspath(checkpoint)!r} and weights={weights!r} both name weights to start "
                            f"from; set one of them.")
        checkpoint = _shipped_weights(weights, where)
    main = resolve_init(scheme, where=where)
    conv_spec = resolve_init(conv, where=f"{where}.conv") if conv is not None else main
    linear_spec = resolve_init(linear, where=f"{where}.linear") if linear is not None else main
    if bias is not None:
        try:
            bias = float(bias)
        except (TypeError, ValueError):
            raise at(f"{where}.bias", f"must be a number or null; got {bias!r}.") from None
    hands_off = conv_spec is None and linear_spec is None

    # id(parameter) -> (scheme, args); parameters not in here are "unchanged".
    done: dict[int, tuple[str, dict[str, Any]]] = {}
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, _CONV_TYPES + _LINEAR_TYPES):
                spec = conv_spec if isinstance(module, _CONV_TYPES) else linear_spec
                weight, layer_bias = _initializable(module, "weight"), _initializable(module, "bias")
                if spec is None:  # PyTorch's own init, kept
                    done.update((id(t), (PYTORCH_DEFAULT, {})) for t in (weight, layer_bias) if t is not None)
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

    def described(spec: InitSpec | None) -> dict[str, Any]:
        return spec.as_config() if spec is not None else {"scheme": PYTORCH_DEFAULT, "args": {}}

    config = {
        **described(main),
        "conv": described(conv_spec) if conv is not None else None,
        "linear": described(linear_spec) if linear is not None else None,
        "bias": bias,
        "norm": bool(norm),
    }
    record = InitRecord.measure(model, done, config)
    if checkpoint is not None:
        _load_pretrained(model, checkpoint, record, f"{where}.weights" if weights else f"{where}.checkpoint",
                         whole=weights is not None)
    return record


def _shipped_weights(name: str, where: str) -> os.PathLike:
    """The checked file of the shipped weight set ``name``."""
    from convzoo.network.pretrained import list_pretrained, pretrained_file

    entries = {entry["name"]: entry for entry in list_pretrained()}
    if name not in entries:
        raise at(f"{where}.weights", f"no shipped weight set is named {name!r}.{suggest(str(name), entries)} "
                                     f"Weight sets: {', '.join(sorted(entries)) or 'none'}.")
    return pretrained_file(entries[name])


def _load_pretrained(model: nn.Module, checkpoint: str | os.PathLike, record: InitRecord, where: str,
                     whole: bool = False) -> None:
    """Overwrite the matching tensors with the checkpoint's and say so in ``record``; ``whole``: every
    tensor but those of another shape must come from it (a shipped set of another architecture fails)."""
    from convzoo.network.weights import load_weights

    try:
        transfer = load_weights(model, checkpoint)
    except ConfigError as error:
        raise at(where, error) from None
    if whole and (transfer.missing or transfer.unexpected):
        names = (transfer.missing + transfer.unexpected)[:3]
        raise at(where, f"the weights of {os.fspath(checkpoint)!r} were trained for another architecture: "
                        f"{len(transfer.missing)} of the network's tensors are not in them and {len(transfer.unexpected)} "
                        f"of theirs have no place in it ({', '.join(names)}, ...). Build the model they were trained as "
                        f"(convzoo.list_pretrained() gives its model and overrides).")
    if not transfer.transferred:
        raise at(where,
                 f"{os.fspath(checkpoint)!r} shares no tensor name with this model (its names: "
                 f"{', '.join(transfer.unexpected[:3])}, ...); start from a run of the same architecture.")
    entries = record.by_name()
    for name in transfer.transferred:
        entry = entries.get(name)  # None for buffers (batch-norm statistics): the record lists parameters
        if entry is not None:
            entry.scheme = PRETRAINED
            entry.args = {"checkpoint": os.fspath(checkpoint), "tensor": transfer.source_names[name]}
            entry.mean, entry.std = tensor_stats(model.get_parameter(name))
    record.config["checkpoint"] = {
        "path": os.fspath(checkpoint),
        "transferred": len(transfer.transferred),
        "skipped": {name: [list(a), list(b)] for name, (a, b) in transfer.skipped.items()},
        "missing": transfer.missing,
        "unexpected": transfer.unexpected,
    }


def apply_init_config(model: nn.Module, config: Mapping[str, Any] | str | None, where: str = "init") -> InitRecord:
    """[`apply_init`][convzoo.weight_init.apply.apply_init] driven by a flat config, the form of the ``configs/init/*.yaml`` files.

    The mapping holds ``scheme`` and that scheme's arguments at the top level, next to
    apply_init's options ``conv``, ``linear``, ``bias``, ``norm`` and ``checkpoint`` (all optional),
    so that ``init=normal init.std=0.02`` works on the command line. ``None`` (and a mapping
    without ``scheme``) means no scheme; a bare string is a scheme name.

    Examples:
        >>> from torch import nn
        >>> cfg = {"scheme": "normal", "std": 0.02, "conv": "kaiming_normal", "linear": None,
        ...        "bias": 0.0, "norm": True}
        >>> record = apply_init_config(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2)), cfg)
        >>> [entry.scheme for entry in record]
        ['kaiming_normal', 'constant', 'normal', 'constant']
    """
    if config is None or isinstance(config, str):
        return apply_init(model, config, where=where)
    if not isinstance(config, Mapping):
        raise at(where, f"expected a mapping with a 'scheme' key; got {config!r}.")
    scheme = {key: value for key, value in config.items() if key not in INIT_OPTIONS}
    options = {key: config[key] for key in INIT_OPTIONS if key in config}
    scheme.setdefault(INITS.key, PYTORCH_DEFAULT)
    # The options share the mapping with the scheme's arguments: a typo like 'lienar' finds 'linear'.
    main = resolve_init(scheme, where=where, also_accepted=INIT_OPTIONS)
    return apply_init(model, main, where=where, **options)


def apply_data_init(
    model: nn.Module, images: Tensor | Callable[[], Tensor], record: InitRecord | None = None
) -> list[str]:
    """Run ``init_from_data(images)`` on every module that has it (e.g. the whitening stem).

    Data-dependent init comes after [`apply_init`][convzoo.weight_init.apply.apply_init] (which would overwrite it); the entries of
    ``record`` for the affected parameters are updated to the module's ``data_init_scheme`` with
    their new statistics. ``images`` may be a zero-argument function, called only if some module
    needs data (so a model without such modules never loads any). A module whose parameters all
    came from a checkpoint (``pretrained`` in ``record``) keeps them. Returns the names of the
    modules initialised.

    Examples:
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
                entry.mean, entry.std = tensor_stats(param)
    if record is not None and done:
        record.config["data_init"] = done
    return done
