"""Reading run directories back: per-epoch and per-step curves, logged hyperparameters, final metrics.

A run directory is what ``train.py`` leaves (docs: Training): ``csv/metrics.csv`` and
``csv/hparams.yaml`` from Lightning's ``CSVLogger``, ``metrics.json``, ``data.json``, ``.hydra/``.
The curves plot and ``python -m convzoo compare`` both read runs through this module.

Examples:
    >>> runs = find_runs(["multirun/2026-11-23/12-00-00"])  # doctest: +SKIP
    >>> [(run.name, run.metrics.get("val/acc_best")) for run in runs]  # doctest: +SKIP
    [('0', 0.853), ('1', 0.871)]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convzoo.errors import ConfigError

__all__ = [
    "RECORD_FILES",
    "Run",
    "distinguishing_overrides",
    "epoch_curves",
    "find_runs",
    "format_count",
    "load_run",
    "run_title",
    "step_curves",
]

METRICS_CSV = Path("csv") / "metrics.csv"
RECORD_FILES = ("metrics.json", "curves.png", "summary.txt", "summary.csv", "init.csv", "data.json")
"""The files [`convzoo.training.records.RunRecords`][convzoo.training.records.RunRecords] writes into a run directory, beside the checkpoints and loggers' folders."""
HPARAMS_YAML = Path("csv") / "hparams.yaml"


def epoch_curves(metrics_csv: Path) -> dict[str, dict[int, float]]:
    """``{metric: {epoch: value}}`` from a Lightning ``CSVLogger`` file (one row per log call).

    Rows without an epoch (the learning-rate monitor's) are left to [`step_curves`][convzoo.runs.read.step_curves].

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = path.write_text("epoch,step,val/acc\\n0,9,0.5\\n1,19,0.6\\n")
        >>> epoch_curves(path)
        {'val/acc': {0: 0.5, 1: 0.6}}
    """
    curves: dict[str, dict[int, float]] = {}
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            if not row.get("epoch"):
                continue
            for key, value in row.items():
                if key not in ("epoch", "step") and value:
                    curves.setdefault(key, {})[int(row["epoch"])] = float(value)
    return curves


def step_curves(metrics_csv: Path, prefix: str) -> dict[str, dict[int, float]]:
    """``{metric: {step: value}}`` for the columns starting with ``prefix`` (``"lr-"``: the learning rates).

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.csv"
        >>> _ = path.write_text("epoch,lr-SGD,step\\n,0.1,0\\n,0.05,10\\n0,,19\\n")
        >>> step_curves(path, "lr-")
        {'lr-SGD': {0: 0.1, 10: 0.05}}
    """
    curves: dict[str, dict[int, float]] = {}
    with open(metrics_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                if key.startswith(prefix) and value and row.get("step"):
                    curves.setdefault(key, {})[int(row["step"])] = float(value)
    return curves


def _short_target(node: Any) -> str | None:
    target = node.get("_target_") if isinstance(node, Mapping) else None
    return target.rsplit(".", 1)[-1] if target else None


def format_count(n: float) -> str:
    """A parameter count the way papers write it.

    Examples:
        >>> format_count(84618), format_count(1_234_567), format_count(950)
        ('84.6K', '1.23M', '950')
    """
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.3g}{suffix}"
    return f"{n:g}"


def run_title(config: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> str:
    """Two lines naming a run: model, width, data and parameter count; then the training recipe.

    Examples:
        >>> config = {"model": {"name": "airbench", "width_multiplier": 0.5},
        ...           "data": {"_target_": "convzoo.data.CIFAR10DataModule", "batch_size": 500},
        ...           "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.73, "weight_decay": 0.0013},
        ...           "scheduler": {"_target_": "convzoo.training.schedules.piecewise_linear"},
        ...           "trainer": {"max_epochs": 5, "precision": "bf16-mixed"}, "module": {"label_smoothing": 0.2}}
        >>> print(run_title(config, {"total": 1234567}))
        airbench x0.5 on CIFAR10, 1.23M parameters
        SGD lr 0.73 wd 0.0013, piecewise_linear, label smoothing 0.2, batch 500, 5 epochs, bf16-mixed
    """
    model, data = config.get("model") or {}, config.get("data") or {}
    optimizer, trainer = config.get("optimizer") or {}, config.get("trainer") or {}
    name = str(model.get("name", "model"))
    width = model.get("width_multiplier", 1.0)
    if width not in (None, 1, 1.0):
        name += f" x{width:g}"
    dataset = (_short_target(data) or "data").removesuffix("DataModule")
    first = f"{name} on {dataset}"
    if params and params.get("total") is not None:
        first += f", {format_count(params['total'])} parameters"
    recipe = [_short_target(optimizer) or "optimizer"]
    if optimizer.get("lr") is not None:
        recipe[0] += f" lr {optimizer['lr']:.3g}"
    if optimizer.get("weight_decay"):
        recipe[0] += f" wd {optimizer['weight_decay']:.2g}"
    recipe.append(_short_target(config.get("scheduler")) or "constant lr")
    smoothing = (config.get("module") or {}).get("label_smoothing")
    if smoothing:
        recipe.append(f"label smoothing {smoothing:.3g}")
    epochs = trainer.get("max_epochs", "?")
    recipe += [f"batch {data.get('batch_size', '?')}", f"{epochs} epoch{'' if epochs == 1 else 's'}"]
    if trainer.get("precision"):
        recipe.append(str(trainer["precision"]))
    return first + "\n" + ", ".join(recipe)


@dataclass
class Run:
    """One run directory's records, as far as they exist (an interrupted run has curves but no metrics)."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def load_run(path: Path, name: str | None = None) -> Run:
    """Read one run directory (see the module docstring); missing files leave their fields empty."""
    path = Path(path)
    hparams = _read_yaml(path / HPARAMS_YAML) or {}
    metrics_json = path / "metrics.json"
    return Run(
        path=path,
        name=name or path.name,
        config=hparams.get("config") or _read_yaml(path / ".hydra" / "config.yaml") or {},
        params=hparams.get("params") or {},
        metrics=json.loads(metrics_json.read_text()) if metrics_json.is_file() else {},
        overrides=_read_yaml(path / ".hydra" / "overrides.yaml") or [],
        curves=epoch_curves(path / METRICS_CSV) if (path / METRICS_CSV).is_file() else {},
    )


def _is_run(path: Path) -> bool:
    return (path / METRICS_CSV).is_file() or (path / "metrics.json").is_file()


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """The runs at ``paths``: each a run directory, or a folder of them (a multirun sweep, an outputs/ day).

    Runs are named by their path relative to the deepest folder they all share.

    Raises:
        ConfigError: a path does not exist or holds no run (the user named it: a one-line error).
    """
    found: list[Path] = []
    for given in map(Path, paths):
        if not given.is_dir():
            raise ConfigError(f"{given} is not a directory; give run directories or folders of them (a multirun sweep).")
        if _is_run(given):
            found.append(given)
            continue
        inside = sorted({p.parent.parent for p in given.rglob(str(METRICS_CSV))} |
                        {p.parent for p in given.rglob("metrics.json")}, key=_natural_key)
        if not inside:
            raise ConfigError(f"{given} holds no run (no csv/metrics.csv or metrics.json below it); give a run "
                              f"directory (outputs/<date>/<time>) or a sweep folder (multirun/<date>/<time>).")
        found += inside
    absolute = [p.absolute() for p in found]
    common = Path(*_common_parts(absolute)) if len(absolute) > 1 else absolute[0].parent
    return [load_run(path, str(path.relative_to(common))) for path in absolute]


def _common_parts(paths: list[Path]) -> list[str]:
    parts: list[str] = []
    for column in zip(*(p.parts for p in paths)):
        if len(set(column)) != 1:
            break
        parts.append(column[0])
    return parts


def _natural_key(path: Path) -> list[Any]:
    # multirun job folders 0, 1, ..., 10 in numeric order, not 0, 1, 10, 2
    return [int(part) if part.isdigit() else part for part in path.parts]


def _short(override: str) -> str:
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}{sep}{number:.3g}" if not value.lstrip("-").isdigit() else override


def distinguishing_overrides(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """The overrides every run shares, and per run the ones that tell it apart (numbers to 3 digits).

    Examples:
        >>> a, b = Run(Path("0"), "0", overrides=["data=cifar10", "optimizer.lr=0.012345"]), \\
        ...        Run(Path("1"), "1", overrides=["data=cifar10", "optimizer.lr=0.5"])
        >>> distinguishing_overrides([a, b])
        (['data=cifar10'], [['optimizer.lr=0.0123'], ['optimizer.lr=0.5']])
    """
    shared = set.intersection(*(set(run.overrides) for run in runs)) if len(runs) > 1 else set()
    common = [o for o in runs[0].overrides if o in shared] if runs else []
    return common, [[_short(o) for o in run.overrides if o not in shared] for run in runs]
