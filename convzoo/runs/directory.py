"""One run per directory: a new run never writes over another run's records.

A run that starts in a directory already holding a run's [`RECORDS`][convzoo.runs.directory.RECORDS] (its checkpoints, final
metrics, CSV log ...) refuses before it writes anything, in one line naming the directory and the
three ways forward: ``resume=<dir>`` to continue that run, a new directory, or ``overwrite=true``,
which deletes those records (and says which) before the new run starts.

While a run trains it holds an exclusive ``fcntl.flock`` on ``<run_dir>/.lock``. The kernel
releases it when the process ends, however it ends (a crash, SIGKILL), so no stale lock is left
behind; a second process started into the same directory meanwhile refuses, ``resume`` included.

Three places apply the rule:

* [`claim_run_directory`][convzoo.runs.directory.claim_run_directory], entered by [`convzoo.training.train`][convzoo.training.run.train] for every run (a single run,
  each job of a sweep or Optuna search, the Python API): it takes the lock, then checks or clears;
* [`RunDirectoryGuard`][convzoo.runs.directory.RunDirectoryGuard], a Hydra callback (``hydra.callbacks`` in ``configs/train.yaml``) that
  refuses before Hydra writes the new run's ``.hydra/`` files over the old run's (which ``resume``
  reads): ``hydra.run.dir`` for a run, every job directory under a reused ``hydra.sweep.dir``;
* [`refuse_to_replace_a_record`][convzoo.runs.directory.refuse_to_replace_a_record], for commands that write a file the user names (``export
  --out``, ``compare -o``).

Only the global-rank-zero process claims a directory: DDP's other processes write into the same one.

Examples:
    >>> import tempfile
    >>> run_dir = Path(tempfile.mkdtemp())
    >>> with claim_run_directory(run_dir):
    ...     _ = (run_dir / "metrics.json").write_text("{}")
    >>> records_in(run_dir)
    ['metrics.json']
    >>> with claim_run_directory(run_dir):  # doctest: +ELLIPSIS
    ...     pass
    Traceback (most recent call last):
    convzoo.errors.RunDirectoryError: ... already holds a run's records (metrics.json); a new run does not ...
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from convzoo.errors import RunDirectoryError, at, report
from convzoo.runs.read import RECORD_FILES

__all__ = ["LOCK_FILE", "RECORDS", "RunDirectoryGuard", "claim_run_directory", "records_in", "refusal",
           "refuse_to_replace_a_record"]

RECORDS = ("checkpoints", "csv", "tensorboard", *RECORD_FILES)
"""What a run writes into its directory, beside Hydra's own ``.hydra/`` and ``train.log``: the checkpoint
callbacks' folder, the loggers' folders (``configs/logger/``) and [`convzoo.training.records.RunRecords`][convzoo.training.records.RunRecords]' files."""
LOCK_FILE = ".lock"
"""The file a running run holds its lock on (kept afterwards: deleting a lock file races with a new locker)."""


def records_in(run_dir: str | Path) -> list[str]:
    """The [`RECORDS`][convzoo.runs.directory.RECORDS] present in ``run_dir``, folders with a trailing ``/``."""
    run_dir = Path(run_dir)
    return [name + "/" if (run_dir / name).is_dir() else name for name in RECORDS if (run_dir / name).exists()]


def _is_global_zero() -> bool:
    # Lightning's rank as set by its launchers (LOCAL_RANK for DDP's child processes, SLURM_PROCID, RANK)
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _holder(run_dir: Path) -> str:
    try:
        pid = (run_dir / LOCK_FILE).read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


def _in_use(run_dir: Path, where: str) -> RunDirectoryError:
    return RunDirectoryError(
        f"{run_dir} is in use: {_holder(run_dir)} is training there (it holds {run_dir / LOCK_FILE}). Wait for it "
        f"to finish, or start this run in a new directory ({where}=<new dir>).")


def _is_locked(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s lock (a lock file alone, left by a finished run, is not)."""
    try:
        handle = open(run_dir / LOCK_FILE)  # flock needs no write access; a missing file is not created
    except OSError:  # no lock file: no run has trained there
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def refusal(run_dir: Path, records: list[str], where: str) -> RunDirectoryError:
    """The one-line error for a new run in ``run_dir``, which holds ``records``; ``where`` is the key
    that chooses the directory (``hydra.run.dir``, ``paths.output_dir``)."""
    shown = ", ".join(records)
    return RunDirectoryError(
        f"{run_dir} already holds a run's records ({shown}); a new run does not write over them. Continue that run "
        f"with resume={run_dir}, start this one in a new directory ({where}=<new dir>), or add overwrite=true to "
        f"delete those records (and nothing else) first.")


def _clear(run_dir: Path, records: list[str]) -> None:
    for name in records:
        path = run_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    print(f"overwrite=true: deleted the earlier run's {', '.join(records)} in {run_dir}")


def _inside(path: str | Path, run_dir: Path, records: list[str]) -> bool:
    resolved = Path(path).expanduser().resolve()
    return any(resolved == (run_dir / name.rstrip("/")).resolve() or
               (run_dir / name.rstrip("/")).resolve() in resolved.parents for name in records)


@contextmanager
def claim_run_directory(run_dir: str | Path, *, overwrite: bool = False, resuming: bool = False,
                        inputs: Iterable[str | Path | None] = (), where: str = "paths.output_dir") -> Iterator[Path]:
    """Hold ``run_dir`` for a run: lock it, then refuse (or with ``overwrite``, delete) an earlier run's records.

    Args:
        run_dir: the run directory (created if missing).
        overwrite: delete the [`RECORDS`][convzoo.runs.directory.RECORDS] found there, printing which, instead of refusing.
        resuming: the run continues the one in ``run_dir`` (``resume=<dir>``): its records are expected.
        inputs: files the run reads (``ckpt_path``, a pretrained init): ``overwrite`` refuses to delete them.
        where: the key that chooses the directory, named in the refusal.

    Raises:
        RunDirectoryError: another process holds the lock, or earlier records are there and neither
            ``resuming`` nor ``overwrite`` is set.
    """
    run_dir = Path(run_dir)
    if not _is_global_zero():  # DDP's other processes: rank zero holds the directory for them all
        yield run_dir
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _in_use(run_dir, where) from None
        except OSError as error:  # a file system without locks (ENOLCK): the records are still checked
            print(f"note: {run_dir} cannot be locked ({error.strerror}); a second run started into it meanwhile "
                  f"would not be refused.")
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # for the refusal's message only; the lock is the flock
        handle.flush()
        records = [] if resuming else records_in(run_dir)
        if records and not overwrite:
            raise refusal(run_dir, records, where)
        if records:
            kept = [str(path) for path in inputs if path and _inside(path, run_dir, records)]
            if kept:
                raise RunDirectoryError(
                    f"overwrite=true would delete {', '.join(kept)}, which this run reads; copy it out of {run_dir} "
                    f"first, or continue that run with resume={run_dir}.")
            _clear(run_dir, records)
        yield run_dir  # the lock is released when the file closes, or by the kernel if the process dies


class RunDirectoryGuard(Callback):
    """Hydra callback: refuse before Hydra writes ``.hydra/`` into a directory holding another run's records.

    Hydra saves the new run's config into the run directory before ``train()`` is called; the
    earlier run's ``.hydra/overrides.yaml`` is what ``resume=<dir>`` continues it with, so the check
    comes first. A sweep (``-m``, an Optuna search) is refused as a whole when its ``hydra.sweep.dir``
    already holds runs; with ``overwrite=true`` their records are deleted first, so that no earlier
    trial is mixed into this sweep's results. The refusal is printed as one ``error:`` line (exit 2):
    Hydra would turn an exception raised here into a warning.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse a single run whose ``hydra.run.dir`` is locked by a running run, or holds another run's records
        (unless ``resume`` or ``overwrite``)."""
        if not _is_global_zero():
            return
        run_dir = Path(str(config.hydra.run.dir))
        if _is_locked(run_dir):
            raise SystemExit(report(_in_use(run_dir, "hydra.run.dir")))
        if config.get("resume") or config.get("overwrite"):
            return  # resuming expects records; overwrite is train()'s to carry out, with the lock held
        records = records_in(run_dir)
        if records:
            raise SystemExit(report(refusal(run_dir, records, "hydra.run.dir")))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """Refuse a sweep whose ``hydra.sweep.dir`` holds a running job or, unless resuming, earlier runs' records
        (deleted first with ``overwrite=true``)."""
        if not _is_global_zero():
            return
        sweep_dir = Path(str(config.hydra.sweep.dir))
        jobs = sorted({path.parent for path in sweep_dir.glob("**/.hydra")}) if sweep_dir.is_dir() else []
        for job in jobs:
            if _is_locked(job):
                raise SystemExit(report(_in_use(job, "hydra.sweep.dir")))
        if config.get("resume"):
            return
        held = {job: records_in(job) for job in jobs if records_in(job)}
        if not held:
            return
        if config.get("overwrite"):
            for job, records in held.items():
                _clear(job, records)
            return
        found = dict.fromkeys(record for records in held.values() for record in records)
        shown = f"{', '.join(str(job.relative_to(sweep_dir)) for job in held)}: {', '.join(found)}"
        raise SystemExit(report(RunDirectoryError(
            f"{sweep_dir} already holds the records of {len(held)} earlier run(s) ({shown}); a new sweep does not "
            f"write over them. Continue one of those runs with resume={sweep_dir}/<job>, start this sweep in a new "
            f"directory (hydra.sweep.dir=<new dir>), or add overwrite=true to delete those records (and nothing "
            f"else) first.")))


def refuse_to_replace_a_record(path: str | Path, option: str) -> Path:
    """``path`` if a command may write it; a checkpoint or a run's record there is never replaced.

    Examples:
        >>> refuse_to_replace_a_record("model.onnx", "--out").name
        'model.onnx'
    """
    path = Path(path)
    if path.exists() and (path.suffix == ".ckpt" or path.name in RECORDS):
        raise at(f"{option} {path}", RunDirectoryError(f"that is a run's {path.name} and is never replaced; "
                                                       f"choose another file name."))
    return path
