"""``train(cfg)``: everything a run needs, built from one composed Hydra config.

Example (what ``python train.py model=convmixer_tiny data=synthetic trainer.max_epochs=1`` does)::

    from convzoo.config import compose
    from convzoo.training import train
    cfg = compose(["model=convmixer_tiny", "data=synthetic", "trainer.max_epochs=1",
                   "paths.output_dir=/tmp/run"])
    metrics = train(cfg)   # {"test/acc": ..., "val/acc_best": ..., ...}, also in /tmp/run/metrics.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from convzoo.data import TensorDataModule
from convzoo.errors import CheckpointError
from convzoo.classifier import METRICS, ImageClassifier
from convzoo.preflight import check_accelerator, check_checkpoint, check_data_fits_model, check_monitors, check_optimizer
from convzoo.resume import continue_csv_log
from convzoo.summary import ModelSummary, summary
from convzoo.tracking import log_run_files
from convzoo.validation import check_config, instantiate
from convzoo.weight_init import InitRecord

__all__ = ["fit_model_to_data", "train", "write_run_records"]


@rank_zero_only
def write_run_records(run_dir: Path, table: ModelSummary, data: dict[str, Any]) -> None:
    """The per-layer summary (text and CSV) and the data's classes, statistics and sizes (``data.json``),
    beside the config."""
    (run_dir / "data.json").write_text(json.dumps(data, indent=2) + "\n")
    (run_dir / "summary.txt").write_text(str(table) + "\n")
    table.to_csv(run_dir / "summary.csv")


def run_hyperparameters(cfg: DictConfig, table: ModelSummary, init_record: InitRecord,
                        data: dict[str, Any]) -> dict[str, Any]:
    """What the loggers record for a run: the composed config, parameter counts, layers, init and data
    (the class names themselves are in ``data.json`` and the checkpoint)."""
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "params": {"total": table.total_params, "trainable": table.trainable_params, "flops": table.total_flops},
        "layers": table.records(),
        "init_applied": init_record.config,  # "init" is the module's hyperparameter: the config as given
        "data": {"num_classes": len(data["classes"]), **{k: v for k, v in data.items() if k != "classes"}},
    }


class _RecordsAtTrainStart(L.Callback):
    """``init.csv`` and the logged hyperparameters, written when training starts: only then is the
    module's init record complete (data-dependent init happens on fit start)."""

    def __init__(self, cfg: DictConfig, run_dir: Path, table: ModelSummary, data: dict[str, Any]):
        self.cfg, self.run_dir, self.table, self.data = cfg, run_dir, table, data

    def on_train_start(self, trainer: L.Trainer, pl_module: ImageClassifier) -> None:
        if trainer.is_global_zero:
            pl_module.init_record.to_csv(self.run_dir / "init.csv")
        for logger in trainer.loggers:
            logger.log_hyperparams(run_hyperparameters(self.cfg, self.table, pl_module.init_record, self.data))


def _set_on_command_line() -> set[str]:
    """The keys this run's command line set (empty outside ``train.py``, e.g. for a composed config)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {override.split("=", 1)[0].lstrip("+~") for override in HydraConfig.get().overrides.task}


def fit_model_to_data(model: DictConfig, datamodule: TensorDataModule) -> DictConfig:
    """Set the model config's input channels, input size and classes to the data's; return the config.

    The data decides: a head with fewer outputs than there are classes cannot be trained, and the
    meta-device check and the summary need the real image size. The config node is updated before
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
                              f"checkpoint was written); start it again without resume.")
    return last


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, then test the best checkpoint; return the final metrics (also written to ``metrics.json``).

    Everything that can be checked before the first step is (see :mod:`convzoo.validation` and
    :mod:`convzoo.preflight`): a mistake in the config raises a :class:`~convzoo.errors.ConfigError`
    naming the key and the fix; a diverging run raises :class:`~convzoo.errors.NonFiniteLossError`.
    """
    run_start = time.perf_counter()
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    ckpt_path = _checkpoint_to_resume(cfg)

    datamodule: TensorDataModule = instantiate(cfg.data, "data", _convert_="all")
    datamodule.setup("fit")  # the data decides the classes, image size and statistics the model is built for
    data = datamodule.describe()
    module = ImageClassifier(
        model=fit_model_to_data(cfg.model, datamodule),
        optimizer=instantiate(cfg.optimizer, "optimizer"),
        scheduler=instantiate(cfg.scheduler, "scheduler"),
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        classes=data["classes"],
        input_mean=data["mean"],
        input_std=data["std"],
        init=cfg.init,
        data_init_images=cfg.data_init_images,
        **cfg.module,
    )
    check_data_fits_model(datamodule, module.hparams.model)
    check_optimizer(module, total_steps=len(datamodule.train_dataloader()) * max(1, cfg.trainer.get("max_epochs") or 1))
    checkpoint = check_checkpoint(ckpt_path, module) if ckpt_path is not None else None
    table = summary(module.model)
    write_run_records(run_dir, table, data)

    callbacks = {f"callbacks.{name}": instantiate(node, f"callbacks.{name}")
                 for name, node in (cfg.get("callbacks") or {}).items() if node is not None}
    check_monitors(callbacks, METRICS)
    records = _RecordsAtTrainStart(cfg, run_dir, table, data)
    loggers = [instantiate(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items() if c is not None]
    check_accelerator(cfg.trainer.get("accelerator", "auto"))
    trainer: L.Trainer = instantiate(cfg.trainer, "trainer", callbacks=[*callbacks.values(), records],
                                   logger=loggers or False)
    if checkpoint is not None and trainer.is_global_zero:
        continue_csv_log(trainer.loggers, checkpoint)
    rank_zero_only(print)(f"{cfg.model.get('name', 'model')}: {table.total_params:,} parameters "
                          f"({table.trainable_params:,} trainable), {table.total_flops / 1e6:,.1f} MFLOPs/image; "
                          f"init {module.init_record.config['scheme']}; run directory {run_dir}"
                          + (f"; resuming from {ckpt_path}" if ckpt_path is not None else ""))
    del checkpoint  # Lightning loads it again itself; do not hold two copies

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.perf_counter() - start
    metrics: dict[str, float] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    best = trainer.checkpoint_callback
    if best is not None and getattr(best, "best_model_score", None) is not None:
        metrics["val/acc_best"] = float(best.best_model_score)
    if cfg.get("test", True):
        trainer.test(module, datamodule=datamodule, ckpt_path=_test_checkpoint(trainer))
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
    metrics.update(epochs=trainer.current_epoch, fit_minutes=fit_seconds / 60, params=table.total_params,
                   run_minutes=(time.perf_counter() - run_start) / 60)
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    log_run_files(trainer.loggers, run_dir, metrics)
    return metrics
