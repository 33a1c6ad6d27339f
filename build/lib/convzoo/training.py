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
from omegaconf import DictConfig, OmegaConf

from convzoo.init import InitRecord, apply_data_init, apply_init_config
from convzoo.lightning import ImageClassifier
from convzoo.summary import ModelSummary, summary

__all__ = ["train", "write_run_records"]


@rank_zero_only
def write_run_records(run_dir: Path, table: ModelSummary, init_record: InitRecord) -> None:
    """The per-layer summary (text and CSV) and the per-parameter init record, beside the config."""
    (run_dir / "summary.txt").write_text(str(table) + "\n")
    table.to_csv(run_dir / "summary.csv")
    init_record.to_csv(run_dir / "init.csv")


def run_hyperparameters(cfg: DictConfig, table: ModelSummary, init_record: InitRecord) -> dict[str, Any]:
    """What the loggers record for a run: the composed config, parameter counts, layers and init."""
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "params": {"total": table.total_params, "trainable": table.trainable_params, "flops": table.total_flops},
        "layers": table.records(),
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


def train(cfg: DictConfig) -> dict[str, float]:
    """Train, then test the best checkpoint; return the final metrics (also written to ``metrics.json``)."""
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.get("float32_matmul_precision"):
        torch.set_float32_matmul_precision(cfg.float32_matmul_precision)

    datamodule: L.LightningDataModule = instantiate(cfg.data, _convert_="all")
    module = ImageClassifier(
        model=cfg.model,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler),
        channels_last=cfg.channels_last,
        compile=cfg.compile,
        **cfg.module,
    )
    init_record = apply_init_config(module.model, cfg.init)
    if not cfg.get("ckpt_path"):  # a resumed run takes every weight from its checkpoint
        apply_data_init(module.model, lambda: _init_images(datamodule, cfg.data_init_images), init_record)
    table = summary(module.model)
    write_run_records(run_dir, table, init_record)

    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for logger in trainer.loggers:
        logger.log_hyperparams(run_hyperparameters(cfg, table, init_record))
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
    metrics.update(epochs=trainer.current_epoch, fit_minutes=fit_seconds / 60, params=table.total_params)
    if trainer.is_global_zero:
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print("final metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return metrics
