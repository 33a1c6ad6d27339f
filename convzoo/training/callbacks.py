"""Training callbacks: images/s in the progress bar, lookahead, freezing parameters after some
epochs, and progressive resizing (a run's records, curves included: [`convzoo.training.records`][convzoo.training.records])."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar

from convzoo.errors import ConfigError, suggest

__all__ = ["ThroughputProgressBar", "Lookahead", "FreezeParameters", "ProgressiveResizing"]


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
        """Start the epoch's image count and clock."""
        super().on_train_epoch_start(trainer, pl_module)
        self._images, self._start = 0, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Count the batch's images on every process."""
        self._images += len(batch[0]) * trainer.world_size
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def images_per_second(self) -> float:
        """Training images per second over the epoch so far (0 before any time has passed)."""
        elapsed = time.perf_counter() - self._start
        return self._images / elapsed if elapsed > 0 else 0.0

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """The bar's metrics, with ``img/s`` while training."""
        metrics = super().get_metrics(trainer, pl_module)
        if trainer.training and self._images:
            metrics["img/s"] = f"{self.images_per_second():,.0f}"
        return metrics

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the epoch's rate as ``train/images_per_s``."""
        if self._images:
            pl_module.log("train/images_per_s", self.images_per_second(), rank_zero_only=True)
        super().on_train_epoch_end(trainer, pl_module)


class Lookahead(Callback):
    """airbench's lookahead: every ``every`` steps, move a slow copy of the weights toward the fast
    ones and restart the fast weights from it; after the last step the slow copy is the model.

    The slow copy moves by ``1 - decay * progress**power`` of the gap, so it follows the fast
    weights closely early on and averages more as the learning rate anneals. Float buffers (BN
    running statistics) are averaged too. Unlike ``EMAWeightAveraging``, which only evaluates the
    average, lookahead feeds it back into training.

    Args:
        every: steps between updates.
        decay: the slow copy keeps ``decay * (step / total_steps) ** power`` of itself.
        power: see ``decay``.
        start_epoch: the slow copy is taken at the first update step of this epoch (airbench94: 3);
            before it the fast weights train alone.
        sync_every_epoch: also restart the fast weights from the slow copy after the last step of
            every epoch (airbench94 does), not only after the last step of training.

    Examples:
        >>> Lookahead(every=5, decay=0.95**5, power=3.0, start_epoch=3, sync_every_epoch=True).start_epoch
        3
    """

    def __init__(self, every: int = 5, decay: float = 0.95**5, power: float = 3.0, start_epoch: int = 0,
                 sync_every_epoch: bool = False):
        self.every, self.decay, self.power = every, decay, power
        self.start_epoch, self.sync_every_epoch = start_epoch, sync_every_epoch
        self.slow: dict[str, torch.Tensor] = {}
        self.fast: dict[str, torch.Tensor] = {}

    def _tensors(self, pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {k: v for k, v in pl_module.state_dict(keep_vars=True).items() if v.is_floating_point()}

    def _take_slow_copy(self) -> None:
        self.slow = {k: v.detach().clone() for k, v in self.fast.items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Find the fast weights; take the slow copy now when training starts at or after ``start_epoch`` (a resumed
        run brings its own from the checkpoint)."""
        self.fast = self._tensors(pl_module)  # live references, looked up once rather than every update
        if self.slow:  # a resumed run brings its slow weights from the checkpoint
            self.slow = {k: v.to(self.fast[k].device) for k, v in self.slow.items()}
        elif trainer.current_epoch >= self.start_epoch:
            self._take_slow_copy()

    @torch.no_grad()
    def _update(self, decay: float) -> None:
        for name, tensor in self.fast.items():
            slow = self.slow[name]
            slow.lerp_(tensor.detach(), 1 - decay)
            tensor.data.copy_(slow)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Every ``every`` steps from ``start_epoch`` on, move the slow copy and restart the fast weights from it;
        after the last step (of training, or of each epoch with ``sync_every_epoch``) the model becomes the slow
        copy."""
        step, total = trainer.global_step, max(1, int(trainer.estimated_stepping_batches))
        if trainer.current_epoch < self.start_epoch:
            return
        if step % self.every == 0:
            if not self.slow:
                self._take_slow_copy()
            else:
                self._update(self.decay * (step / total) ** self.power)
        last_of_epoch = batch_idx + 1 >= trainer.num_training_batches
        if self.slow and (step >= total or (self.sync_every_epoch and last_of_epoch)):
            self._update(1.0)  # the model becomes the slow copy (before validation and checkpoints)

    def state_dict(self) -> dict[str, Any]:
        """The slow copy, saved in checkpoints so a resumed run continues it."""
        return {"slow": self.slow}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the slow copy from a checkpoint."""
        self.slow = state_dict["slow"]


class FreezeParameters(Callback):
    """Stop training the parameters whose names match ``patterns`` once epoch ``epoch`` starts.

    airbench94 trains the whitening stem's bias for the first 3 epochs only. From ``epoch`` on,
    the parameters get ``requires_grad=False``: no gradient is computed, and the optimizer skips
    them (no momentum or weight decay either). Patterns are ``fnmatch`` globs over the
    LightningModule's parameter names (``model.layers.whiten.conv.bias``); one that matches
    nothing is an error naming the parameters there are.

    Examples:
        >>> FreezeParameters(["model.layers.whiten.*bias"], epoch=3).epoch
        3
    """

    def __init__(self, patterns: Sequence[str], epoch: int):
        if isinstance(patterns, str):
            patterns = [patterns]
        self.patterns, self.epoch = list(patterns), epoch
        self.targets: list[torch.nn.Parameter] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Find the parameters each pattern matches; a pattern that matches none is a
        [`ConfigError`][convzoo.errors.ConfigError]."""
        named = dict(pl_module.named_parameters())
        self.targets = []
        for pattern in self.patterns:
            matched = [p for name, p in named.items() if fnmatch.fnmatchcase(name, pattern)]
            if not matched:
                hint = suggest(pattern, list(named))
                raise ConfigError(f"FreezeParameters: pattern {pattern!r} matches no parameter.{hint} "
                                  f"Parameters: {', '.join(named)}.")
            self.targets += matched

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Freeze the matched parameters from epoch ``epoch`` on (they train before it, a resumed run included)."""
        trainable = trainer.current_epoch < self.epoch
        for parameter in self.targets:
            parameter.requires_grad_(trainable)


class ProgressiveResizing(Callback):
    """Train the early epochs on smaller images: epoch ``e`` sees ``sizes[e]`` x ``sizes[e]``
    (the last size for every later epoch), as fast ImageNet training does; validation and test
    always see the full images.

    It sets the ``size`` of the data module's ``train_transform``
    ([`BatchAugment`][convzoo.data.augment.BatchAugment]), which resizes each augmented batch; the network
    must accept any input size (global pooling before the head).

    Examples:
        >>> ProgressiveResizing([24, 28, 32]).size(epoch=5)
        32
    """

    def __init__(self, sizes: Sequence[int]):
        sizes = [sizes] if isinstance(sizes, int) else list(sizes)
        if not sizes or not all(isinstance(s, int) and s >= 1 for s in sizes):
            raise ConfigError(f"ProgressiveResizing: sizes must be a non-empty list of positive integers, got {sizes!r}.")
        self.sizes = sizes

    def size(self, epoch: int) -> int:
        """The training image size of ``epoch`` (the last size for every later epoch)."""
        return self.sizes[min(epoch, len(self.sizes) - 1)]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Set the data module's training transform to this epoch's size."""
        transform = getattr(trainer.datamodule, "train_transform", None)
        if not hasattr(transform, "size"):
            raise ConfigError(f"ProgressiveResizing needs a data module whose train_transform has a `size` "
                              f"(convzoo's BatchAugment); {type(trainer.datamodule).__name__} has {transform!r}.")
        transform.size = self.size(trainer.current_epoch)
