"""Checks on the built pieces of a run, before its first step: what would otherwise fail mid-run.

A config can be valid key by key and still not fit together: a 5-class head on 10-class data
(``IndexError: Target 6 is out of bounds`` at step 1), a 1-channel network on RGB images, a
checkpoint of another model (a wall of missing keys once the trainer loads it), a GPU that is not
there. [`train`][convzoo.training.run.train] runs these checks after building the data, module and
callbacks and before the trainer starts; each raises a [`ConfigError`][convzoo.errors.ConfigError]
naming the key and the fix.

Examples:
    >>> from convzoo.data import SyntheticDataModule
    >>> data = SyntheticDataModule(num_train=64, num_test=16, val_size=16, num_classes=10)
    >>> data.setup("fit")
    >>> from convzoo import build_model
    >>> network = build_model({"num_classes": 5, "layers": [{"block": "conv", "out_channels": 8}, {"block": "classifier"}]})
    >>> check_data_fits_model(data, network)
    Traceback (most recent call last):
    ...
    convzoo.errors.ConfigError: model.num_classes=5 but the data's labels go up to 9 (10 classes); set model.num_classes=10.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from convzoo.errors import CheckpointError, ConfigError, one_line, suggest
from convzoo.training.module import ImageClassifier, check_logits_output, make_optimizer
from convzoo.network.nets import ConvNet
from convzoo.network.weights import read_checkpoint_file

__all__ = [
    "check_accelerator", "check_checkpoint", "check_data_fits_model", "check_monitors", "check_optimizer",
]


def check_data_fits_model(datamodule: L.LightningDataModule, network: ConvNet) -> None:
    """The data's images fit the built network, whose one output is a logit per label.

    ``datamodule`` must be set up; ``network`` is the network the run trains (``module.model``): what it
    reports (``in_channels``, ``input_size``, ``feature_info``) is read, nothing is built or run.
    """
    images, labels = datamodule.train_images, datamodule.train_labels
    _, channels, height, width = images.shape
    if channels != network.in_channels:
        raise ConfigError(f"model.in_channels={network.in_channels} but the data's images have {channels} channels "
                          f"({channels}x{height}x{width}); set model.in_channels={channels}.")
    if tuple(network.input_size) != (height, width):
        raise ConfigError(f"model.input_size={_size(*network.input_size)} but the data's images are {height}x{width}, "
                          f"and the network's shapes were checked at its input size; set "
                          f"model.input_size={_size(height, width)}.")
    check_logits_output(network)  # ImageClassifier asks it of the networks it builds; here of a network passed in
    logits = network.feature_info[0]["num_chs"]
    top = int(torch.cat([labels, datamodule.val_labels]).max()) if len(labels) else -1
    if top >= logits:
        classes = getattr(datamodule, "num_classes", top + 1)
        raise ConfigError(f"model.num_classes={network.num_classes or logits} but the data's labels go up "
                          f"to {top} ({classes} classes); set model.num_classes={classes}.")


def _size(height: int, width: int) -> int | list[int]:
    """An image size as ``model.input_size`` is written: one side, or ``[height, width]``."""
    return height if height == width else [height, width]


def check_training_steps(datamodule: L.LightningDataModule) -> int:
    """The number of training steps per epoch, refusing a run that would train none.

    The training loader drops a last partial batch, so fewer images than ``data.batch_size`` train nothing:
    such a run would test an untrained network and still end as if it had trained.

    Args:
        datamodule: the run's data module, set up.

    Returns:
        Steps per epoch.

    Raises:
        ConfigError: naming the image count, the batch size and the fix.
    """
    steps = len(datamodule.train_dataloader())
    if steps == 0:
        raise ConfigError(f"{len(datamodule.train_images)} training images make no full batch of data.batch_size="
                          f"{datamodule.batch_size} (a last partial batch is dropped), so the run would train 0 steps; "
                          f"lower data.batch_size or train on more images (data.subset).")
    return steps


def check_optimizer(module: ImageClassifier, total_steps: int) -> None:
    """Build the optimizer and LR schedule once on the real parameters, so bad values fail now."""
    if module.optimizer_factory is None:
        return
    try:
        optimizer = make_optimizer(module.optimizer_factory, module.model, module.hparams.norm_bias_lr_scale)
    except ValueError as error:  # torch's own range checks: "Invalid learning rate: -1.0", ...
        raise ConfigError(f"optimizer: {one_line(error)}; fix the optimizer.* value it names "
                          f"(e.g. optimizer.lr=0.001).") from None
    if module.scheduler_factory is not None:
        try:
            module.scheduler_factory(optimizer, total_steps=max(total_steps, 1))
        except ConfigError:  # ours already name the key and the fix
            raise
        except ValueError as error:
            raise ConfigError(f"scheduler: {one_line(error)}; fix the scheduler.* value it names.") from None


def check_accelerator(accelerator: str) -> None:
    """``trainer.accelerator`` names a device this machine has."""
    name = str(accelerator).lower()
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator} but torch sees no CUDA GPU here (torch {torch.__version__}, "
            f"built for CUDA {torch.version.cuda or 'none'}). Train on the CPU with trainer=cpu "
            f"(or trainer.accelerator=cpu), or install a CUDA build of torch on a machine with a GPU."
        )
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator} but this machine has no Apple MPS device; "
                          f"use trainer.accelerator=cpu.")


def check_monitors(callbacks: Mapping[str, Any], names: Iterable[str]) -> None:
    """Every callback's ``monitor`` names a metric the module logs (a typo would fail after an epoch).

    ``callbacks`` maps each callback's config key (``callbacks.model_checkpoint``) to the callback.
    """
    names = list(names)
    for key, callback in callbacks.items():
        monitor = getattr(callback, "monitor", None)
        if isinstance(monitor, str) and monitor not in names:
            raise ConfigError(f"{key}.monitor={monitor!r}: the model logs no such metric.{suggest(monitor, names)} "
                              f"It logs: {', '.join(names)}.")


def _leaf_differences(before: Any, now: Any, path: str) -> list[str]:
    """``path.to.key: <before> in the checkpoint, <now> now`` for every leaf where two specs differ."""
    if isinstance(before, Mapping) and isinstance(now, Mapping):
        keys = dict.fromkeys([*before, *now])
        return [d for k in keys for d in _leaf_differences(before.get(k), now.get(k), f"{path}.{k}")]
    if isinstance(before, list) and isinstance(now, list) and len(before) == len(now):
        return [d for i, (b, n) in enumerate(zip(before, now)) for d in _leaf_differences(b, n, f"{path}[{i}]")]
    return [] if before == now else [f"{path}: {before!r} in the checkpoint, {now!r} now"]


def _spec_differences(before: Any, now: Mapping[str, Any]) -> str:
    if not isinstance(before, Mapping):
        return ""
    shown = "; ".join(_leaf_differences(before, dict(now), "model")[:4])
    return f" ({shown})" if shown else ""


def check_checkpoint(path: str | Path, module: ImageClassifier, key: str = "ckpt_path") -> dict[str, Any]:
    """Load ``path`` (weights-only, on the CPU) and check it can resume training of ``module``.

    Returns the loaded checkpoint. Raises [`CheckpointError`][convzoo.errors.CheckpointError] when the file is missing,
    unreadable, not a full training checkpoint, or holds another network.
    """
    path = Path(path).expanduser()
    checkpoint = read_checkpoint_file(
        path, f"{key}={path}", error=CheckpointError,
        fix=f"Give a run's checkpoints/last.ckpt (or best.ckpt), continue a run with resume=<run_dir>, or start "
            f"without {key}.")
    if "state_dict" not in checkpoint:
        raise CheckpointError(f"{key}={path} is a PyTorch file but not a Lightning checkpoint (no 'state_dict'); "
                              f"pass a .ckpt written by train.py.")
    if "loops" not in checkpoint or "optimizer_states" not in checkpoint:
        raise CheckpointError(f"{key}={path} holds weights only (saved with save_weights_only), so training cannot "
                              f"resume from it; load the weights with convzoo.training.module.load_model instead.")
    ours = {k: v for k, v in module.state_dict().items() if k.startswith("model.")}
    theirs = {k: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    problems = [f"{k} is missing" for k in ours if k not in theirs]
    problems += [f"{k} is not in this model" for k in theirs if k not in ours]
    problems += [f"{k} has shape {list(theirs[k].shape)} in the checkpoint but {list(v.shape)} here"
                 for k, v in ours.items() if k in theirs and theirs[k].shape != v.shape]
    if problems:
        before = checkpoint.get("hyper_parameters", {}).get("model")
        raise CheckpointError(
            f"{key}={path} is from a different model{_spec_differences(before, module.hparams.model)}: "
            f"{'; '.join(problems[:3])}{' ...' if len(problems) > 3 else ''}. Use the model overrides it was "
            f"trained with (python train.py resume=<run_dir> reuses a run's own overrides)."
        )
    if module.optimizer_factory is not None and checkpoint["optimizer_states"]:
        _check_optimizer_state(checkpoint["optimizer_states"][0], module, f"{key}={path}")
    return checkpoint


def _check_optimizer_state(state: Mapping[str, Any], module: ImageClassifier, where: str) -> None:
    """The checkpoint's optimizer has the settings and parameter groups of the one configured now.

    The settings are compared as a training step sees them: with the schedule's own keys added (OneCycleLR
    keeps ``max_lr``, ``base_momentum``, ... in each group), so a resumed one-cycle run compares like with like.
    """
    optimizer = make_optimizer(module.optimizer_factory, module.model, module.hparams.norm_bias_lr_scale)
    if module.scheduler_factory is not None:
        module.scheduler_factory(optimizer, total_steps=100)  # only the keys it adds to the groups matter here
    groups = optimizer.param_groups
    saved = state.get("param_groups", [])
    ignored = {"params", "initial_lr", "lr", "name"}  # name: a group's label (weights, norm_biases), not a setting
    settings_then = sorted(set(saved[0]) - ignored) if saved else []
    settings_now = sorted(set(groups[0]) - ignored)
    if settings_then != settings_now:
        raise CheckpointError(f"{where} was trained with another optimizer (its settings: {', '.join(settings_then)}; "
                              f"now: {', '.join(settings_now)}); resume with the optimizer it was trained with.")
    sizes_then, sizes_now = [len(g["params"]) for g in saved], [len(g["params"]) for g in groups]
    if sizes_then != sizes_now:
        raise CheckpointError(f"{where} has optimizer parameter groups of {sizes_then} tensors, the config gives "
                              f"{sizes_now}; keep module.norm_bias_lr_scale (which splits off the norm biases) as it was.")
