"""``train(cfg)``: everything a run needs, built from one composed Hydra config.

Examples:
    What ``python train.py model=convmixer_tiny data=synthetic trainer.max_epochs=1`` does:

    ```python
    from convzoo.config import compose
    from convzoo.training import train
    cfg = compose(["model=convmixer_tiny", "data=synthetic", "trainer.max_epochs=1",
                   "paths.output_dir=/tmp/run"])
    metrics = train(cfg)   # {"test/acc": ..., "val/acc_best": ..., ...}, also in /tmp/run/metrics.json
    ```
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from convzoo.data import TensorDataModule
from convzoo.ops.depthwise import fast_depthwise
from convzoo.ops.norm_act import fused_norm_act
from convzoo.errors import CheckpointError, ConfigError, at, one_line
from convzoo.specs.resolve import LayerGraph
from convzoo.runs.directory import claim_run_directory
from convzoo.training.allocator import keep_freed_memory
from convzoo.training.module import METRICS, ImageClassifier
from convzoo.training.preflight import (
    check_accelerator, check_checkpoint, check_data_fits_model, check_monitors, check_optimizer, check_training_steps,
)
from convzoo.training.records import RunRecords
from convzoo.training.resume import continue_csv_log
from convzoo.training.tracking import log_run_files
from convzoo.training.config_checks import check_config

__all__ = ["fit_model_to_data", "instantiate", "train"]


def instantiate(node: DictConfig, key: str, **kwargs: Any) -> Any:
    """Hydra's ``instantiate``, with the mistakes a config can cause reported as [`ConfigError`][convzoo.errors.ConfigError]s.

    A [`ConfigError`][convzoo.errors.ConfigError] raised by the target keeps its type and gets the key in front unless it
    names it already (``callbacks.nonfinite_loss: check_every_n_steps=0 ...``); a ``ValueError`` or
    Lightning ``MisconfigurationException`` (how Lightning and torch reject values) becomes one.
    Anything else is a bug and keeps its traceback.
    """
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, ConfigError):  # keeps its type; named by its key unless it names itself
            raise at(key, cause) from None
        if isinstance(cause, (ValueError, MisconfigurationException)):
            raise at(key, f"{one_line(cause)} (fix the {key}.* value it names).") from None
        raise


def _set_on_command_line() -> set[str]:
    """The keys this run's command line set (empty outside ``train.py``, e.g. for a composed config)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    from convzoo.config import override_key

    return {override_key(override) for override in HydraConfig.get().overrides.task}


def fit_model_to_data(model: DictConfig, datamodule: TensorDataModule) -> DictConfig:
    """Set the model config's input channels, input size and classes to the data's; return the config.

    The data decides: a head with fewer outputs than there are classes cannot be trained, and the
    network is built (its shapes checked) for the real image size. The config node is updated before
    it is resolved, so layers that interpolate these keys follow, and the logged config is what ran.
    Each change is printed. A value the user set on the command line (``model.num_classes=5``) is
    theirs: it is left for the pre-flight check, which fails on a mismatch instead of overruling it.
    """
    channels, height, width = datamodule.input_shape
    data_values = {"in_channels": channels, "num_classes": datamodule.num_classes,
                   "input_size": height if height == width else [height, width]}
    explicit = _set_on_command_line()
    with open_dict(model):
        for key, value in data_values.items():
            if model.get(key) != value and f"model.{key}" not in explicit:
                rank_zero_only(print)(f"model.{key}: {model.get(key)} -> {value} (from the data: "
                                      f"{type(datamodule).__name__}, {datamodule.num_classes} classes, "
                                      f"{'x'.join(map(str, datamodule.input_shape))} images)")
                model[key] = value
    return model


class _DropProductTips(logging.Filter):
    """Lightning advertises its cloud products ("💡 Tip: ... try installing litlogger") on every run,
    unconditionally; nothing in a run can act on it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


@contextlib.contextmanager
def _quiet_console() -> Iterator[None]:
    """Hide, while a run trains, the console messages that tell its user nothing they can act on.

    Each is matched narrowly (logger or category, and message); every other warning and log line prints.
    """
    tips = _DropProductTips()
    lightning_log = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    lightning_log.addFilter(tips)
    try:
        with warnings.catch_warnings():
            # Lightning's own pytree helper (lightning/pytorch/utilities/_pytree.py) still builds torch's
            # deprecated LeafSpec
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        lightning_log.removeFilter(tips)


def _test_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if trainer.fast_dev_run or callback is None or not getattr(callback, "best_model_path", ""):
        return None  # test the weights in memory
    return callback.best_model_path


def _checkpoint_to_resume(cfg: DictConfig) -> Path | None:
    """``ckpt_path``, or for ``resume=<run_dir>`` that run's ``checkpoints/last.ckpt``."""
    if cfg.get("ckpt_path"):
        return Path(cfg.ckpt_path)
    if not cfg.get("resume"):
        return None
    last = Path(cfg.resume) / "checkpoints" / "last.ckpt"
    if not last.is_file():
        raise CheckpointError(f"resume={cfg.resume}: the run has no checkpoints/last.ckpt (it stopped before its first "
                              f"checkpoint was written); start it again in a new directory, or in this one with "
                              f"overwrite=true instead of resume.")
    return last


@_quiet_console()
def train(cfg: DictConfig, checked: LayerGraph | None = None) -> dict[str, float]:
    """Train, then test the best checkpoint; return the final metrics (also written to ``metrics.json``).

    Everything that can be checked before the first step is (see [`convzoo.training.config_checks`][convzoo.training.config_checks] and
    [`convzoo.training.preflight`][convzoo.training.preflight]): a mistake in the config raises a [`ConfigError`][convzoo.errors.ConfigError]
    naming the key and the fix; a diverging run raises [`NonFiniteLossError`][convzoo.errors.NonFiniteLossError].
    ``checked`` is the model spec as [`check_config`][convzoo.training.config_checks.check_config] resolved it when the
    caller has checked this config already (``train.py`` checks its command line before Hydra creates the run
    directory): the config is not checked again, and the network is built from it without resolving the spec
    again unless the data changes it (another number of classes, say).
    A directory that holds another run's records is refused (``overwrite=true`` deletes them first),
    as is one another process is training in (see [`convzoo.runs.directory`][convzoo.runs.directory]).
    """
    run_start = time.perf_counter()
    if checked is None:
        checked = check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    with (claim_run_directory(run_dir, overwrite=bool(cfg.get("overwrite")), resuming=bool(cfg.get("resume")),
                              inputs=[cfg.get("ckpt_path"), (cfg.get("init") or {}).get("checkpoint")],
                              where=_directory_key(run_dir)),
          fast_depthwise(cfg.get("fast_depthwise", True)),
          fused_norm_act(cfg.get("fused_norm_act", True))):
        return _fit_and_test(cfg, run_dir, run_start, checked)


def _directory_key(run_dir: Path) -> str:
    """The key that chose ``run_dir``: Hydra's run or sweep directory under ``train.py``, else ``paths.output_dir``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or Path(HydraConfig.get().runtime.output_dir) != run_dir.resolve():
        return "paths.output_dir"
    return "hydra.sweep.dir" if HydraConfig.get().mode == RunMode.MULTIRUN else "hydra.run.dir"


def _fit_and_test(cfg: DictConfig, run_dir: Path, run_start: float, resolved: LayerGraph) -> dict[str, float]:
    """``train()``'s work, in a run directory it holds (see [`convzoo.runs.directory`][convzoo.runs.directory])."""
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    if cfg.get("keep_freed_memory"):
        keep_freed_memory()
    ckpt_path = _checkpoint_to_resume(cfg)

    datamodule: TensorDataModule = instantiate(cfg.data, "data", _convert_="all")
    datamodule.setup("fit")  # the data decides the classes, image size and statistics the model is built for
    data = datamodule.describe()
    as_checked = OmegaConf.to_container(cfg.model, resolve=False)
    model = fit_model_to_data(cfg.model, datamodule)
    if OmegaConf.to_container(model, resolve=False) == as_checked:
        model = resolved  # the spec the static check resolved, built without resolving it again
    optimizer = instantiate(cfg.optimizer, "optimizer")
    scheduler = instantiate(cfg.scheduler, "scheduler")
    module = ImageClassifier(  # builds the network, the run's only build
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        classes=data["classes"],
        input_mean=data["mean"],
        input_std=data["std"],
        init=cfg.init,
        data_init_images=cfg.data_init_images,
        **cfg.module,
    )
    check_data_fits_model(datamodule, module.model)
    check_optimizer(module, total_steps=check_training_steps(datamodule) * max(1, cfg.trainer.get("max_epochs") or 1))
    checkpoint = check_checkpoint(ckpt_path, module) if ckpt_path is not None else None

    records = RunRecords(run_dir, config=OmegaConf.to_container(cfg, resolve=True), started=run_start)
    callbacks = {f"callbacks.{name}": instantiate(node, f"callbacks.{name}")
                 for name, node in (cfg.get("callbacks") or {}).items() if node is not None}
    check_monitors(callbacks, METRICS)
    loggers = [instantiate(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items() if c is not None]
    check_accelerator(cfg.trainer.get("accelerator", "auto"))
    # without a validation split there is nothing to validate: an empty loader would only make Lightning warn
    no_validation = {"limit_val_batches": 0} if data["sizes"]["val"] == 0 else {}
    trainer: L.Trainer = instantiate(cfg.trainer, "trainer", callbacks=[*callbacks.values(), records],
                                     logger=loggers or False, **no_validation)
    if checkpoint is not None and trainer.is_global_zero:
        continue_csv_log(trainer.loggers, checkpoint)
    del checkpoint  # Lightning loads it again itself; do not hold two copies

    # weights_only: Lightning's own load of the checkpoint is data-only too (its default defers to torch's,
    # which an environment variable can turn off)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if cfg.get("test", True):
        trainer.test(module, datamodule=datamodule, ckpt_path=_test_checkpoint(trainer), weights_only=True)
    if trainer.is_global_zero:
        print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in records.metrics.items()))
    log_run_files(trainer.loggers, run_dir, records.metrics)
    return records.metrics
