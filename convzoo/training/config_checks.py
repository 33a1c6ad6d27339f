"""Checking a composed training config before anything is built: keys, types and choices.

Every config group with a ``_target_`` (data, optimizer, scheduler, trainer, each callback and
logger) is checked against the signature of what it builds -- by the checker the block registry
applies to model specs ([`convzoo.arguments.check_arguments`][convzoo.arguments.check_arguments]) -- so ``trainer.max_epochs=abc``,
``optimizer.lr=abc`` or ``trainer.precision=bf16_mixed`` fail here, naming the key, instead of as
``'<' not supported between 'str' and 'int'`` somewhere inside Lightning or torch. Ranges are
checked where the values are used (each class raises [`ConfigError`][convzoo.errors.ConfigError]);
[`instantiate`][convzoo.training.run.instantiate] prefixes those messages with the config key.

Examples:
    >>> from omegaconf import OmegaConf
    >>> node = OmegaConf.create({"_target_": "torch.optim.SGD", "_partial_": True, "lr": "abc"})
    >>> check_target(node, "optimizer")
    Traceback (most recent call last):
    ...
    convzoo.errors.ConfigError: optimizer.lr='abc' has the wrong type (str); it must be float | Tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import convzoo.config  # noqa: F401 -- registers the configs' resolvers (${mixed_precision:...}) before any is read
from convzoo.arguments import Naming, fits_annotation, mismatch, target_signature
from convzoo.arguments import check_arguments as check_against_signature
from convzoo.errors import ConfigError, at, one_line, suggest

if TYPE_CHECKING:
    from convzoo.specs.resolve import LayerGraph

__all__ = ["check_config", "check_target"]

# Keys Hydra reads itself when instantiating a node; they are not arguments of the target.
_HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")

# The top-level switches of configs/train.yaml and what each accepts.
_TOP_LEVEL: dict[str, Any] = {
    "seed": int,
    "ckpt_path": str | None,
    "resume": str | None,
    "overwrite": bool,
    "test": bool,
    "channels_last": bool,
    "compile": bool,
    "float32_matmul_precision": Literal["highest", "high", "medium"] | None,
    "keep_freed_memory": bool,
    "fast_depthwise": bool,
    "fused_norm_act": bool,
    "data_init_images": int,
    "optimized_metric": str,
}
_SEED_RANGE = (0, 2**32 - 1)  # what numpy (and so Lightning's seed_everything) accepts

# Lower bounds that the targets themselves do not check (a negative clip value flips the gradients).
_MINIMUM = {
    "trainer.gradient_clip_val": (0, " (or null: no clipping)"),
    "trainer.accumulate_grad_batches": (1, ""),
    "trainer.log_every_n_steps": (1, ""),
}

# Arguments that train() passes itself, per group: the config must not (and need not) set them.
_SUPPLIED = {"trainer": ("callbacks", "logger")}


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _has_target(value: Any) -> bool:
    """Whether a value is (or holds) a node Hydra will instantiate: its type is checked when it is built."""
    if isinstance(value, Mapping):
        return "_target_" in value or any(_has_target(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_target(v) for v in value)
    return False


def _check_target_arguments(target: Callable, arguments: Mapping[str, Any], key: str,
                    supplied: Iterable[str] = (), partial: bool = False) -> None:
    """Raise a [`ConfigError`][convzoo.errors.ConfigError] naming ``key.<argument>`` when ``arguments`` do not fit ``target``.

    [`convzoo.arguments.check_arguments`][convzoo.arguments.check_arguments] with the arguments named as config keys and the
    target's signature followed up its bases: unknown names get the closest accepted ones; values must
    fit the annotations (nested ``_target_`` nodes are checked when they are built); without
    ``partial``, every required argument not in ``supplied`` must be given.
    """
    check_against_signature(
        target_signature(target),
        {name: value for name, value in arguments.items() if name not in _HYDRA_KEYS},
        Naming(getattr(target, "__qualname__", repr(target)), key=key),
        # ARGUMENT_RANGES are what layers accept; a config target judges its own numbers when built
        supplied=supplied, partial=partial, ranges={}, judged_later=_has_target,
    )


def _resolved(node: DictConfig, name: str, key: str) -> Any:
    """``node[name]`` as plain Python, interpolations resolved; a broken interpolation names its key."""
    try:
        return _plain(node[name])
    except OmegaConfBaseException as error:
        raise at(f"{key}.{name}" if key else name, one_line(error)) from None


def _resolved_items(node: DictConfig, key: str) -> dict[str, Any]:
    return {str(name): _resolved(node, str(name), key) for name in node}


def check_target(node: DictConfig, key: str, supplied: Iterable[str] = ()) -> None:
    """Check a ``_target_`` node: the target can be imported and the other keys fit its signature."""
    target_name = node.get("_target_")
    try:
        target = get_object(target_name)
    except Exception as error:  # ImportError, AttributeError, ...: the name is wrong either way
        raise ConfigError(
            f"{key}._target_={target_name!r} cannot be imported ({one_line(error)}); "
            f"give the full dotted path of a class or function, e.g. lightning.pytorch.callbacks.ModelCheckpoint."
        ) from None
    supplied = (*supplied, *_SUPPLIED.get(key, ()))
    _check_target_arguments(target, _resolved_items(node, key), key, supplied, partial=bool(node.get("_partial_")))


def _check_top_level(cfg: DictConfig) -> None:
    for name, hint in _TOP_LEVEL.items():
        if name not in cfg:
            continue
        value = _resolved(cfg, name, "")
        if not fits_annotation(value, hint):
            raise ConfigError(mismatch(name, value, hint))
    seed = cfg.get("seed")
    if seed is not None and not _SEED_RANGE[0] <= seed <= _SEED_RANGE[1]:
        raise ConfigError(f"seed={seed} is out of range; use an integer from {_SEED_RANGE[0]} to {_SEED_RANGE[1]}.")
    if cfg.get("resume") and cfg.get("ckpt_path"):
        raise ConfigError(
            f"resume={cfg.resume} and ckpt_path={cfg.ckpt_path} are both set; resume continues the run "
            f"from its own checkpoints/last.ckpt, so drop ckpt_path (or drop resume to start a new run from the "
            f"checkpoint)."
        )
    if cfg.get("resume") and cfg.get("overwrite"):
        raise ConfigError(
            f"resume={cfg.resume} and overwrite=true are both set; resume continues the run in its directory, "
            f"overwrite deletes that run's records: drop one."
        )


def _check_init(init: Any) -> None:
    """The init config's names and arguments (applied to an empty module), and that a pretrained checkpoint exists.

    The checkpoint itself is read once, when the run applies it to the real network.
    """
    import torch

    from convzoo.weight_init import apply_init_config

    if isinstance(init, DictConfig):
        init = OmegaConf.to_container(init, resolve=True)
    sources = {key: init.get(key) for key in ("checkpoint", "weights")} if isinstance(init, dict) else {}
    if any(value is not None for value in sources.values()) or (isinstance(init, dict) and "weights" in init):
        init = {k: v for k, v in init.items() if k not in sources}
        checkpoint, weights = sources.get("checkpoint"), sources.get("weights")
        if checkpoint is None and weights is None:
            raise ConfigError("init=pretrained needs the weights to start from: add init.weights=<name> (a shipped weight "
                              "set: python -m convzoo list models) or init.checkpoint=<run>/checkpoints/best.ckpt.")
        if checkpoint is not None and weights is not None:
            raise ConfigError(f"init.checkpoint={checkpoint} and init.weights={weights} both name weights to start from; "
                              f"set one of them.")
        if weights is not None:
            from convzoo.network.pretrained import list_pretrained

            names = sorted(entry["name"] for entry in list_pretrained())
            if weights not in names:
                raise ConfigError(f"init.weights={weights}: no shipped weight set has that name.{suggest(str(weights), names)} "
                                  f"Weight sets: {', '.join(names) or 'none'}.")
        elif not Path(str(checkpoint)).expanduser().is_file():
            raise ConfigError(f"init.checkpoint={checkpoint}: no such file. Give a run's checkpoints/best.ckpt "
                              f"(or another checkpoint, state dict or safetensors file) to start from.")
    apply_init_config(torch.nn.Module(), init)  # checks names and arguments; nothing to initialise


def check_config(cfg: DictConfig) -> LayerGraph:
    """Check a composed training config (``configs/train.yaml`` and its groups) before anything is built.

    Raises the first problem found as a [`ConfigError`][convzoo.errors.ConfigError] naming the key. Checks the top-level
    switches, every ``_target_`` group against its target's signature, ``module.*`` against
    [`ImageClassifier`][convzoo.training.module.ImageClassifier], the init config, and the model spec: its layers,
    wiring and every block's arguments ([`resolve`][convzoo.specs.resolve.resolve]). Whether its shapes fit
    is known once the network is built for the data's images (by the run's ``ImageClassifier``).

    Returns:
        The model spec resolved, for the run to build from (``train(cfg, checked=...)``) instead of
        resolving it again.
    """
    from convzoo.specs.resolve import resolve
    from convzoo.training.module import ImageClassifier, model_error

    _check_top_level(cfg)
    for group in ("data", "optimizer", "scheduler", "trainer"):
        if cfg.get(group) is not None:
            check_target(cfg[group], group)
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if node is not None:
                check_target(node, f"{group}.{name}")
    for key, (low, note) in _MINIMUM.items():
        value = OmegaConf.select(cfg, key)
        if isinstance(value, (int, float)) and value < low:
            raise ConfigError(f"{key}={value} must be at least {low}{note}.")
    _check_target_arguments(ImageClassifier, _resolved_items(cfg.get("module") or DictConfig({}), "module"), "module",
                    supplied=("model", "optimizer", "scheduler", "channels_last", "compile", "init",
                              "data_init_images"))
    _check_init(cfg.get("init"))
    try:
        return resolve(cfg.model)
    except ConfigError as error:
        raise model_error(error) from None
