"""Faults injected into training runs: a SIGKILL that no Python code survives, weights turned to NaN."""

import os
import signal

import lightning as L
import torch


class KillSwitch(L.Callback):
    """Kill the process at the start of ``epoch``, of the batch after ``step`` optimizer steps, or of
    the validation after ``validation_step`` steps."""

    def __init__(self, epoch: int | None = None, step: int | None = None, validation_step: int | None = None):
        self.epoch, self.step, self.validation_step = epoch, step, validation_step

    def on_train_epoch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_batch_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_validation_start(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.validation_step:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonWeights(L.Callback):
    """Fill every weight with NaN after ``step`` optimizer steps: the run diverges right there.

    ``PoisonWeights.last_step_seen`` is the last step any instance saw end (how far the run went).
    """

    last_step_seen = 0

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        PoisonWeights.last_step_seen = trainer.global_step
        if trainer.global_step == self.step:
            with torch.no_grad():
                for parameter in pl_module.parameters():
                    parameter.fill_(float("nan"))
