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
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from convzoo.data import TensorDataModule
from convzoo.init import InitRecord, apply_data_init, apply_init_config
from convzoo.lightning import ImageClassifier
from convzoo.summary import ModelSummary, summary
from convzoo.tracking import log_run_files

__all__ = ["fit_model_to_data", "train", "write_run_records"]


@rank_zero_only
def write_run_records(run_dir: Path, table: ModelSummary, init_record: InitRecord, data: dict[str, Any]) -> None:
    """The per-layer summary (text and CSV), the per-parameter init record and the data's classes,
    statistics and sizes (``data.json``), beside the config."""
    (run_dir / "data.json").write_text(json.dumps(data, indent=2) + "\n")
    (run_dir / "summary.txt").write_text(str(table) + "\n")
    table.to_csv(run_dir / "summary.csv")
    init_record.to_csv(run_dir / "init.csv")


def run_hyperparameters(cfg: DictConfig, table: ModelSummary, init_record: InitRecord,
                        data: dict[str, Any]) -> dict[str, Any]:
    """What the loggers record for a run: the composed config, parameter counts, layers, init and data
    (the class names themselves are in ``data.json`` and the checkpoint)."""
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "params": {"total": table.total_params, "trainable": table.trainable_params, "flops": table.total_flops},
        "layers": table.records(),
        "init": init_record.config,
        "data": {"num_classes": len(data["classes"]), **{k: v for k, v in data.items() if k != "classes"}},
    }


def fit_model_to_data(model: DictConfig, datamodule: TensorDataModule) -> DictConfig:
    """Set the model config's input channels, input size and classes to the data's; return the config.

    The data decides: a head with fewer outputs than there are classes cannot be trained, and the
    meta-device check and the summary need the real image size. The config node is updated before
    it is resolved, so layers that interpolate these keys follow, and the logged config is what ran.
    Each change is printed.
    """
    channels, height, width = datamodule.input_shape
    data_values = {"in_channels": channels, "num_classes": datamodule.num_classes,
                   "input_size": height if height == width else [height, width]}
    with open_dict(model):
        for key, value in data_values.items():
            if model.get(key) != value:
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


def _init_images(datamodule: TensorDataModule, count: int) -> torch.Tensor:
    """The first ``count`` training images (of a set-up data module), normalised as the network will see them."""
    return datamodule.eval_transform(datamodule.train_images[:count])


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, then test the best checkpoint; return the final metrics (also written to ``metrics.json``)."""
    run_start = time.perf_counter()
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    datamodule: TensorDataModule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")  # the data decides the classes, image size and statistics the model is built for
    data = datamodule.describe()
    module = ImageClassifier(
        model=fit_model_to_data(cfg.model, datamodule),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        classes=data["classes"],
        input_mean=data["mean"],
        input_std=data["std"],
        **cfg.module,
    )
    init_record = apply_init_config(module.model, cfg.init)
    if not cfg.get("ckpt_path"):  # a resumed run takes every weight from its checkpoint
        apply_data_init(module.model, lambda: _init_images(datamodule, cfg.data_init_images), init_record)
    table = summary(module.model)
    write_run_records(run_dir, table, init_record, data)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in trainer.loggers:
        logger.log_hyperparams(run_hyperparameters(cfg, table, init_record, data))
    rank_zero_only(print)(f"{cfg.model.get('name', 'model')}: {table.total_params:,} parameters "
                          f"({table.trainable_params:,} trainable), {table.total_flops / 1e6:,.1f} MFLOPs/image; "
                          f"init {init_record.config['scheme']}; run directory {run_dir}")

    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - start
    metrics: dict[str, float] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and getattr(checkpoint, "best_model_score", None) is not None:
        metrics["val/acc_best"] = float(checkpoint.best_model_score)
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
