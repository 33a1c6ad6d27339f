"""``train(cfg)``: everything a run needs, built from one composed Hydra config.

Example (what ``python train.py model=convmixer_tiny data=synthetic trainer.max_epochs=1`` does)::

    from convzoo.config import compose
    from convzoo.training import train
    cfg = compose(["model=convmixer_tiny", "data=synthetic", "trainer.max_epochs=1",
                   "paths.output_dir=/tmp/run"])
    metrics = train(cfg)   # {"test/acc": ..., "val/acc_best": ..., ...}, also in /tmp/run/metrics.json
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from convzoo.errors import CheckpointError
from convzoo.init import InitRecord, apply_data_init, apply_init_config
from convzoo.lightning import METRICS, ImageClassifier
from convzoo.preflight import check_accelerator, check_checkpoint, check_data_fits_model, check_monitors, check_optimizer
from convzoo.resume import continue_csv_log
from convzoo.summary import ModelSummary, summary
from convzoo.validation import check_config, instantiate

__all__ = ["train", "write_run_records"]


@rank_zero_only
def write_run_records(run_dir: Path, table: ModelSummary, init_record: InitRecord) -> None:
    """The per-layer summary (text and CSV) and the per-parameter init record, beside the config."""
    (run_dir / "summary.txt").write_text(str(table) + "\n")
    with open(run_dir / "summary.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table.rows[0]))
        writer.writeheader()
        writer.writerows({**row, "output_shape": "x".join(map(str, row["output_shape"]))} for row in table.rows)
    init_record.to_csv(run_dir / "init.csv")


def run_hyperparameters(cfg: DictConfig, table: ModelSummary, init_record: InitRecord) -> dict[str, Any]:
    """What the loggers record for a run: the composed config, parameter counts, layers and init."""
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "params": {"total": table.total_params, "trainable": table.trainable_params, "flops": table.total_flops},
        "layers": [{**row, "output_shape": list(row["output_shape"])} for row in table.rows],
        "init": init_record.config,
    }


def _test_checkpoint(trainer: L.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    if trainer.fast_dev_run or callback is None or not getattr(callback, "best_model_path", ""):
        return None  # test the weights in memory
    return callback.best_model_path


def _init_images(datamodule: L.LightningDataModule, count: int) -> torch.Tensor:
    """The first ``count`` training images, normalised as the network will see them."""
    datamodule.setup("fit")
    return datamodule.eval_transform(datamodule.train_images[:count])


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
    check_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    ckpt_path = _checkpoint_to_resume(cfg)

    datamodule: L.LightningDataModule = instantiate(cfg.data, "data", _convert_="all")
    module = ImageClassifier(
        model=OmegaConf.to_container(cfg.model, resolve=True),
        optimizer=instantiate(cfg.optimizer, "optimizer"),
        scheduler=instantiate(cfg.scheduler, "scheduler"),
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        **cfg.module,
    )
    datamodule.setup("fit")
    check_data_fits_model(datamodule, module.hparams.model)
    check_optimizer(module, total_steps=len(datamodule.train_dataloader()) * max(1, cfg.trainer.get("max_epochs") or 1))
    checkpoint = check_checkpoint(ckpt_path, module) if ckpt_path is not None else None
    init_record = apply_init_config(module.model, cfg.init)
    if checkpoint is None:  # a resumed run takes every weight from its checkpoint
        apply_data_init(module.model, lambda: _init_images(datamodule, cfg.data_init_images), init_record)
    table = summary(module.model)
    write_run_records(run_dir, table, init_record)

    callbacks = {f"callbacks.{name}": instantiate(node, f"callbacks.{name}")
                 for name, node in (cfg.get("callbacks") or {}).items() if node is not None}
    check_monitors(callbacks, METRICS)
    loggers = [instantiate(c, f"logger.{name}") for name, c in (cfg.get("logger") or {}).items() if c is not None]
    check_accelerator(cfg.trainer.get("accelerator", "auto"))
    trainer: L.Trainer = instantiate(cfg.trainer, "trainer", callbacks=list(callbacks.values()), logger=loggers or False)
    if checkpoint is not None and trainer.is_global_zero:
        continue_csv_log(trainer.loggers, checkpoint)
    for logger in trainer.loggers:
        logger.log_hyperparams(run_hyperparameters(cfg, table, init_record))
    rank_zero_only(print)(f"{cfg.model.get('name', 'model')}: {table.total_params:,} parameters "
                          f"({table.trainable_params:,} trainable), {table.total_flops / 1e6:,.1f} MFLOPs/image; "
                          f"init {init_record.config['scheme']}; run directory {run_dir}"
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
    metrics.update(epochs=trainer.current_epoch, fit_minutes=fit_seconds / 60, params=table.total_params)
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics
