"""Stopping a run whose training loss is no longer finite, without slowing the ones that are fine.

Examples:
    ``python train.py data=synthetic model=convmixer_tiny optimizer.lr=1e12`` ends like this,
    with exit code 3:

    ```text
    error: the training loss became nan at epoch 0, step 2 (batch 1 of the epoch) with learning rate
    9.698e+11; the run was stopped there. Try a lower optimizer.lr (e.g. 10x lower), a longer warm-up
    (scheduler.warmup), gradient clipping (trainer.gradient_clip_val=1.0) or full precision
    (trainer.precision=32-true) to rule out overflow. No checkpoint was written before it.
    ```
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from convzoo.errors import ConfigError, NonFiniteLossError

__all__ = ["NonFiniteLossGuard"]


class NonFiniteLossGuard(Callback):
    """Raise [`NonFiniteLossError`][convzoo.errors.NonFiniteLossError] once the training loss is NaN or infinite.

    Reading a loss on the host makes it wait for the device, so the guard only keeps each step's
    loss tensor (no kernel, no wait) and looks at them together every ``check_every_n_steps``
    steps -- one wait per check, at the progress bar's cadence by default -- and before every
    checkpoint is written, so no checkpoint of a diverged run replaces the last good one. A run
    therefore stops at most ``check_every_n_steps`` steps after its loss goes bad, and the message
    names the first bad step. Under DDP the ranks decide together, so all of them stop.

    Examples:
        >>> guard = NonFiniteLossGuard(check_every_n_steps=10)
        >>> guard.check_every_n_steps
        10
    """

    def __init__(self, check_every_n_steps: int = 10):
        if not isinstance(check_every_n_steps, int) or check_every_n_steps < 1:
            raise ConfigError(f"check_every_n_steps={check_every_n_steps!r} must be a positive integer (e.g. 10).")
        self.check_every_n_steps = check_every_n_steps
        self._losses: list[torch.Tensor] = []
        self._where: list[tuple[int, int, int, float]] = []  # (epoch, step, batch, lr) of each kept loss
        self._lr = float("nan")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        """Note the learning rate the step runs with (for the message)."""
        self._lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Keep the step's loss tensor; every ``check_every_n_steps`` kept losses,
        [`check`][convzoo.training.divergence.NonFiniteLossGuard.check] them."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        self._losses.append(loss.detach())
        self._where.append((trainer.current_epoch, trainer.global_step, batch_idx, self._lr))
        if len(self._losses) >= self.check_every_n_steps:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        # Runs before the file is written: raising here keeps the previous checkpoint. A step can
        # also leave inf/NaN weights behind a still-finite loss, so the weights are looked at too.
        """Check the kept losses and the weights before a checkpoint is written; raising here keeps the previous
        checkpoint."""
        self.check(trainer)
        finite = torch.stack([torch.isfinite(p).all() for p in pl_module.parameters()]).all()
        if not trainer.strategy.reduce_boolean_decision(bool(finite), all=True):
            raise NonFiniteLossError(
                f"the weights became NaN or infinite at epoch {trainer.current_epoch}, step {trainer.global_step} "
                f"(the training loss was still finite); the run was stopped before writing a checkpoint of them. "
                f"{_ADVICE} {_last_checkpoint(trainer)}"
            )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check the losses kept since the last check."""
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Look at the losses kept since the last check (one host-device wait) and raise if one is not finite."""
        if not self._losses:
            return
        losses, where = torch.stack(self._losses).float().cpu(), self._where
        self._losses, self._where = [], []
        finite = torch.isfinite(losses)
        if trainer.strategy.reduce_boolean_decision(bool(finite.all()), all=True):
            return
        if bool(finite.all()):  # another rank diverged; this one stops with it
            raise NonFiniteLossError("the training loss became NaN or infinite on another process; the run was stopped.")
        first = int((~finite).nonzero()[0])
        epoch, step, batch, lr = where[first]
        raise NonFiniteLossError(
            f"the training loss became {losses[first].item()} at epoch {epoch}, step {step} (batch {batch} of the epoch) "
            f"with learning rate {lr:.4g}; the run was stopped there. {_ADVICE} {_last_checkpoint(trainer)}"
        )


_ADVICE = ("Try a lower optimizer.lr (e.g. 10x lower), a longer warm-up (scheduler.warmup), gradient clipping "
           "(trainer.gradient_clip_val=1.0) or full precision (trainer.precision=32-true) to rule out overflow.")


def _last_checkpoint(trainer: L.Trainer) -> str:
    written = [Path(path) for callback in trainer.checkpoint_callbacks
               for path in (getattr(callback, "last_model_path", ""), getattr(callback, "best_model_path", ""))
               if path and Path(path).is_file()]
    newest = max(written, key=lambda path: path.stat().st_mtime, default=None)
    return f"The last good checkpoint is {newest}." if newest else "No checkpoint was written before it."
