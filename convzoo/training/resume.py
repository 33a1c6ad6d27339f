"""What an exact resume needs beyond Lightning's checkpoint: the random state, whole files, one log.

Lightning's checkpoint already holds the weights, optimizer, LR-scheduler position, loop progress,
callback states and (through [`state_dict`][convzoo.data.loader.InMemoryLoader.state_dict]) where the data
order stands. Added here:

* [`RandomState`][convzoo.training.resume.RandomState], a callback whose state is the global random generators (torch, CUDA,
  NumPy, Python), so augmentation, dropout and RandAugment draw after a resume exactly what they
  would have drawn without the interruption;
* [`MidEpochCheckpoint`][convzoo.training.resume.MidEpochCheckpoint], step checkpoints that Lightning can resume from exactly;
* [`AtomicCheckpointIO`][convzoo.training.resume.AtomicCheckpointIO], which writes every checkpoint next to its target and renames it
  into place, so a kill during a save leaves the previous file whole;
* [`continue_csv_log`][convzoo.training.resume.continue_csv_log], which keeps the rows of a run's ``csv/metrics.csv`` that were logged
  up to the checkpoint, so a resumed run's log (and its curves) covers the whole run.

Examples:
    >>> import torch
    >>> state = RandomState()
    >>> saved = state.state_dict(); first = torch.rand(3)
    >>> state.load_state_dict(saved); state.restore()
    >>> torch.equal(torch.rand(3), first)
    True
"""

from __future__ import annotations

import csv
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

__all__ = ["AtomicCheckpointIO", "MidEpochCheckpoint", "RandomState", "continue_csv_log"]


class RandomState(Callback):
    """Checkpoints the global random generators and restores them when a run resumes.

    The state is taken when a checkpoint is written and put back just before the first training
    step of the resumed run. It holds only tensors and plain Python values, so checkpoints still
    load with ``torch.load(weights_only=True)``.
    """

    def __init__(self) -> None:
        self._loaded: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The torch, CUDA, NumPy and Python generators' states, as tensors and plain values."""
        name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's states until [`restore`][convzoo.training.resume.RandomState.restore] puts them back."""
        self._loaded = state_dict

    def restore(self) -> None:
        """Put the loaded state into the generators (once)."""
        state, self._loaded = self._loaded, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        name, keys, position, has_gauss, cached_gaussian = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the last hook before the first step: nothing after it draws from the generators
        """[`restore`][convzoo.training.resume.RandomState.restore] the loaded states: the last hook before the first
        training step."""
        self.restore()


class MidEpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(every_n_train_steps=N)`` that leaves an epoch's last step to the epoch's checkpoint.

    Lightning resumes from a checkpoint taken after an epoch's last step, but before its validation,
    by skipping that validation and the epoch's end: the epoch would be missing from the log and from
    the choice of the best checkpoint. The epoch's own checkpoint comes right after validation anyway.

    Examples:
        >>> MidEpochCheckpoint(dirpath="checkpoints", filename="last", every_n_train_steps=200).filename
        'last'
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any, **kwargs: Any) -> None:
        """Save every ``every_n_train_steps`` steps as ``ModelCheckpoint`` does, except after an epoch's last batch."""
        if not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` that never leaves a half-written checkpoint behind.

    The checkpoint is written and flushed to disk as ``<name>.tmp`` in the target's own folder,
    then renamed over the target (atomic on POSIX and Windows within one filesystem). Lightning's
    own save stages the file in the system temp folder, and where that is another filesystem the
    final move is a plain copy that a kill can cut short.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``<path>.tmp``, flush it to disk and rename it over ``path`` (remote paths:
        Lightning's own save)."""
        if "://" in str(path):  # remote storage: its own transaction semantics apply
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options; got {storage_options!r}.")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)  # left only by a failed save; after the rename it is gone


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _rows_up_to(metrics_csv: Path, step: int) -> list[dict[str, int | float]]:
    """The rows of a CSVLogger file logged at or before ``step``, without their empty cells."""
    if not metrics_csv.is_file():
        return []
    with open(metrics_csv, newline="") as handle:
        rows = [{k: _number(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
    return [row for row in rows if row.get("step", step + 1) <= step]


def continue_csv_log(loggers: list[Any], checkpoint: dict[str, Any]) -> int:
    """Carry the rows logged up to ``checkpoint`` over into every ``CSVLogger``'s new ``metrics.csv``.

    Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; the rows logged
    after the checkpoint (before the run was stopped) are logged again by the resumed run, so
    only those at or before the checkpoint's step are kept. Call before anything is logged.
    Returns the number of rows kept.
    """
    step = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_loop.state_dict", {}).get(
        "_batches_that_stepped", checkpoint.get("global_step", 0))
    kept = 0
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        rows = _rows_up_to(Path(logger.log_dir) / "metrics.csv", step)
        writer = logger.experiment  # creating the writer removes the old file; its rows are in hand
        for row in rows:
            writer.log_metrics({k: v for k, v in row.items() if k != "step"}, step=int(row["step"]))
        writer.save()
        kept = len(rows)
    return kept
