"""A run's records, written into its directory by one callback, [`RunRecords`][convzoo.training.records.RunRecords].

==========================  ===========================================================================
record                      when, and what
==========================  ===========================================================================
``summary.txt``, ``.csv``   training starts: the per-layer table ([`convzoo.network.summary.summary`][convzoo.network.summary.summary])
``init.csv``                training starts: ``pl_module.init_record``, one line per parameter
``data.json``               training starts: ``trainer.datamodule.describe()`` (classes, statistics, sizes)
hyperparameters             training starts: the config, parameter counts, layers, init and data, to every logger
``curves.png``              training ends, and again after testing with the test score marked
``metrics.json``            training ends, and again after testing: the final metrics
==========================  ===========================================================================

Every file is written by the global-zero process only; the final metrics are known on every process.

Examples:
    >>> records = RunRecords("outputs/run", config={"model": {"name": "convmixer"}})  # doctest: +SKIP
    >>> trainer = L.Trainer(callbacks=[records]); trainer.fit(module, datamodule)  # doctest: +SKIP
    >>> records.metrics["val/acc_best"], records.table.total_params  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from convzoo.runs.plots import plot_curves, marked_test_metric
from convzoo.runs.read import run_title
from convzoo.network.summary import ModelSummary, summary

__all__ = ["RunRecords"]


class RunRecords(Callback):
    """Write a run's records (see the module docstring) into ``output_dir`` and log its hyperparameters.

    The LightningModule must hold the network as ``.model``; ``.init_record`` (an
    [`InitRecord`][convzoo.weight_init.record.InitRecord], complete by ``on_train_start``) and a data module with
    ``describe()`` are recorded when present. Final metrics are read by their stage (``val/*`` after
    training, ``test/*`` after testing), and no metric name is assumed: the best value of the metric
    the trainer's checkpoint callback monitors becomes ``<monitor>_best``, and its test value
    (``val/acc`` -> ``test/acc``) is the score marked on the curves.

    Args:
        output_dir: the run directory.
        config: the run's composed config as plain containers: logged, and the curves' title.
        curves: file name of the curves plot in ``output_dir`` (``None``: no plot).
        started: ``time.perf_counter()`` when the run began, for ``run_minutes`` (default: now).

    Attributes:
        table: the model summary (a [`ModelSummary`][convzoo.network.summary.ModelSummary]), once fitting starts.
        metrics: the final metrics, once the run has them (``metrics.json``).
    """

    def __init__(self, output_dir: str | Path, config: Mapping[str, Any] | None = None,
                 curves: str | None = "curves.png", started: float | None = None):
        self.output_dir = Path(output_dir)
        self.config = dict(config or {})
        self.curves = curves
        self.started = time.perf_counter() if started is None else started
        self.table: ModelSummary | None = None
        self.metrics: dict[str, float] = {}
        self._fit_started = self.started
        self._fit: dict[str, float] | None = None  # set when training ends: the run's final metrics exist
        self._test: dict[str, float] = {}
        self._clock: dict[str, float] = {}

    # -- training starts ------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """When fitting starts, summarise the network (before the strategy moves or compiles it)."""
        if stage == "fit":
            self._fit_started = time.perf_counter()
            if self.table is None:  # before the strategy moves or compiles the network: a plain forward
                self.table = summary(pl_module.model)

    def hyperparameters(self, init_record: Any = None, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What the loggers record: the config, parameter counts, layers, init and data (the class
        names themselves are in ``data.json`` and the checkpoint)."""
        table = self.table
        hparams: dict[str, Any] = {
            "config": self.config,
            "params": {"total": table.total_params, "trainable": table.trainable_params, "flops": table.total_flops},
            "layers": table.records(),
        }
        if init_record is not None:  # "init" is the module's own hyperparameter: the config as given
            hparams["init_applied"] = init_record.config
        if data is not None:
            hparams["data"] = {"num_classes": len(data["classes"]), **{k: v for k, v in data.items() if k != "classes"}}
        return hparams

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write ``summary.txt``, ``summary.csv``, ``init.csv`` and ``data.json``, log the hyperparameters, and print
        the one-line description of the run (global rank 0 only)."""
        if self.table is None:  # driven without setup()
            self.table = summary(pl_module.model)
        if not trainer.is_global_zero:
            return
        init_record = getattr(pl_module, "init_record", None)
        describe = getattr(trainer.datamodule, "describe", None)
        data = describe() if callable(describe) else None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        (self.output_dir / "summary.txt").write_text(str(self.table) + "\n")
        self.table.to_csv(self.output_dir / "summary.csv")
        if init_record is not None:
            init_record.to_csv(self.output_dir / "init.csv")
        if data is not None:
            (self.output_dir / "data.json").write_text(json.dumps(data, indent=2) + "\n")
        for logger in trainer.loggers:
            logger.log_hyperparams(self.hyperparameters(init_record, data))
        name = (self.config.get("model") or {}).get("name", "model")
        scheme = f"; init {init_record.config.get('scheme')}" if init_record is not None else ""
        resuming = f"; resuming from {trainer.ckpt_path}" if trainer.ckpt_path else ""
        print(f"{name}: {self.table.total_params:,} parameters ({self.table.trainable_params:,} trainable), "
              f"{self.table.total_flops / 1e6:,.1f} MFLOPs/image{scheme}; run directory {self.output_dir}{resuming}")

    # -- training and testing end ---------------------------------------------------------------
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Plot the curves."""
        self._plot(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep the final ``val/*`` metrics, the monitored metric's best value and the fit's clock; write
        ``metrics.json``."""
        checkpoint = trainer.checkpoint_callback
        self._fit = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if getattr(checkpoint, "monitor", None) and getattr(checkpoint, "best_model_score", None) is not None:
            self._fit[f"{checkpoint.monitor}_best"] = float(checkpoint.best_model_score)
        self._clock = {"epochs": trainer.current_epoch, "fit_minutes": (time.perf_counter() - self._fit_started) / 60}
        self._write_metrics(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Add the ``test/*`` metrics (to ``metrics.json`` when the run was fitted here) and mark the test score on
        the curves."""
        self._test = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        if self._fit is not None:  # a run's final metrics; a module not fitted here has none
            self._write_metrics(trainer)
        self._plot(trainer, self._test.get(marked_test_metric(getattr(trainer.checkpoint_callback, "monitor", None))))

    def _write_metrics(self, trainer: L.Trainer) -> None:
        self.metrics = {**self._fit, **self._test, **self._clock, "params": self.table.total_params,
                        "run_minutes": (time.perf_counter() - self.started) / 60}
        if trainer.is_global_zero:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            (self.output_dir / "metrics.json").write_text(json.dumps(self.metrics, indent=2) + "\n")

    @rank_zero_only
    def _plot(self, trainer: L.Trainer, test_score: float | None = None) -> None:
        logger = next((logger for logger in trainer.loggers if isinstance(logger, CSVLogger)), None)
        if self.curves is None or logger is None:
            return
        logger.save()
        metrics_csv = Path(logger.log_dir) / "metrics.csv"
        if not metrics_csv.is_file():
            return
        checkpoint = trainer.checkpoint_callback
        monitored = ({"monitor": checkpoint.monitor, "mode": checkpoint.mode} if getattr(checkpoint, "monitor", None)
                     else {"monitor": None})
        title = run_title(self.config, {"total": self.table.total_params}) if self.config and self.table else None
        steps = trainer.num_training_batches // max(1, trainer.accumulate_grad_batches)
        plot_curves(metrics_csv, self.output_dir / self.curves, title=title, test_score=test_score,
                    steps_per_epoch=steps if 0 < steps < float("inf") else None, **monitored)
