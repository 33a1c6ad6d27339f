"""Training callbacks: images/s in the progress bar, the run's curves plot, lookahead."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from convzoo.plots import plot_curves
from convzoo.runs import run_title

__all__ = ["ThroughputProgressBar", "PlotCurves", "plot_curves", "Lookahead"]


class ThroughputProgressBar(TQDMProgressBar):
    """The TQDM bar plus training images/s, averaged over the epoch so far (summed over processes).

    The clock is read on the host without synchronising the device: over an epoch the queue of
    launched kernels is bounded, so the average stays honest without stalling a GPU every step.
    The epoch's rate is also logged as ``train/images_per_s``.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self._images = 0
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._images, self._start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._images += len(batch[0]) * trainer.world_size
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def images_per_second(self) -> float:
        elapsed = time.perf_counter() - self._start
        return self._images / elapsed if elapsed > 0 else 0.0

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        if trainer.training and self._images:
            metrics["img/s"] = f"{self.images_per_second():,.0f}"
        return metrics

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._images:
            pl_module.log("train/images_per_s", self.images_per_second(), rank_zero_only=True)
        super().on_train_epoch_end(trainer, pl_module)


class PlotCurves(Callback):
    """Plot the run's curves next to it (``curves.png``) from its CSV log: when training ends, and
    again after testing with the test accuracy marked.

    The title names the model, data, parameter count and recipe, read from the hyperparameters the
    CSV logger holds (:func:`convzoo.runs.run_title`).
    """

    def __init__(self, filename: str = "curves.png"):
        self.filename = filename

    def _plot(self, trainer: L.Trainer, test_acc: float | None = None) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, L.pytorch.loggers.CSVLogger):
                logger.save()
                metrics_csv = Path(logger.log_dir) / "metrics.csv"
                if metrics_csv.is_file():
                    hparams = logger.experiment.hparams
                    title = run_title(hparams["config"], hparams.get("params")) if "config" in hparams else None
                    steps = trainer.num_training_batches // max(1, trainer.accumulate_grad_batches)
                    plot_curves(metrics_csv, Path(trainer.default_root_dir) / self.filename, title=title,
                                test_acc=test_acc, steps_per_epoch=steps if 0 < steps < float("inf") else None)
                return

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._plot(trainer)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        test_acc = trainer.callback_metrics.get("test/acc")
        self._plot(trainer, float(test_acc) if test_acc is not None else None)


class Lookahead(Callback):
    """airbench's lookahead: every ``every`` steps, move a slow copy of the weights toward the fast
    ones and restart the fast weights from it; after the last step the slow copy is the model.

    The slow copy moves by ``1 - decay * progress**power`` of the gap, so it follows the fast
    weights closely early on and averages more as the learning rate anneals. Float buffers (BN
    running statistics) are averaged too. Unlike ``EMAWeightAveraging``, which only evaluates the
    average, lookahead feeds it back into training.
    """

    def __init__(self, every: int = 5, decay: float = 0.95**5, power: float = 3.0):
        self.every, self.decay, self.power = every, decay, power
        self.slow: dict[str, torch.Tensor] = {}
        self.fast: dict[str, torch.Tensor] = {}

    def _tensors(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pl_module.state_dict(keep_vars=True).items() if v.is_floating_point()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fast = self._tensors(pl_module)  # live references, looked up once rather than every update
        if not self.slow:  # a resumed run brings its slow weights from the checkpoint
            self.slow = {k: v.detach().clone() for k, v in self.fast.items()}
        self.slow = {k: v.to(self.fast[k].device) for k, v in self.slow.items()}

    @torch.no_grad()
    def _update(self, decay: float) -> None:
        for name, tensor in self.fast.items():
            slow = self.slow[name]
            slow.lerp_(tensor.detach(), 1 - decay)
            tensor.data.copy_(slow)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step, total = trainer.global_step, max(1, int(trainer.estimated_stepping_batches))
        if step >= total:  # the last step: the model becomes the slow copy before its final validation
            self._update(1.0)
        elif step % self.every == 0:
            self._update(self.decay * (step / total) ** self.power)

    def state_dict(self) -> dict[str, Any]:
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.slow = state_dict["slow"]
