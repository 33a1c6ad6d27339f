"""Experiment tracking with MLflow (``logger=mlflow``), beside the CSV and TensorBoard logs.

Lightning's ``MLFlowLogger`` does the logging; two things are added so MLflow holds the whole run:
hyperparameters that are lists of records (the model's layers, the per-layer table) become indexed
keys (``layers/3/params``) instead of one string cut at 250 characters, and the run's record files
(config, per-layer summary, init record, data, final metrics, curves) are attached as artifacts.

Examples:
    Read a run back with MLflow's own client:

    ```python
    from mlflow import MlflowClient
    client = MlflowClient("sqlite:///mlruns/mlflow.db")
    run = client.search_runs(client.get_experiment_by_name("convzoo").experiment_id)[0]
    run.data.params["params/total"], run.data.metrics["val/acc_best"]
    ```
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import MLFlowLogger as _LightningMLFlowLogger
from lightning.pytorch.utilities import rank_zero_only

from convzoo.runs.read import RECORD_FILES

__all__ = ["RUN_FILES", "MLFlowLogger", "expand_records", "log_run_files"]

# Run-directory files attached to a tracked run (path in the run directory -> artifact folder).
RUN_FILES = {".hydra/config.yaml": "hydra", ".hydra/overrides.yaml": "hydra", **dict.fromkeys(RECORD_FILES)}
"""Run-directory files attached to a tracked run: path in the run directory -> artifact folder (``None``: the top)."""


def expand_records(value: Any) -> Any:
    """Turn lists that hold mappings or lists into ``{"0": ..., "1": ...}`` so they flatten to short keys.

    Lists of plain values (a mean, a shape) stay lists: one readable parameter each.

    Examples:
        >>> expand_records({"layers": [{"block": "conv"}, {"block": "pool"}], "mean": [0.5, 0.5]})
        {'layers': {'0': {'block': 'conv'}, '1': {'block': 'pool'}}, 'mean': [0.5, 0.5]}
    """
    if isinstance(value, Mapping):
        return {key: expand_records(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(item, (Mapping, list, tuple)) for item in value):
        return {str(index): expand_records(item) for index, item in enumerate(value)}
    return value


class MLFlowLogger(_LightningMLFlowLogger):
    """Lightning's ``MLFlowLogger`` with nested lists logged as indexed parameters (see [`expand_records`][convzoo.training.tracking.expand_records]).

    Examples:
        >>> logger = MLFlowLogger(experiment_name="convzoo", tracking_uri="sqlite:///mlruns/mlflow.db")  # doctest: +SKIP
    """

    def log_hyperparams(self, params: Any) -> None:
        """Log ``params`` with nested lists of records as indexed keys
        ([`expand_records`][convzoo.training.tracking.expand_records])."""
        super().log_hyperparams(expand_records(params) if isinstance(params, Mapping) else params)


@rank_zero_only
def log_run_files(loggers: Iterable[Logger], run_dir: Path, metrics: Mapping[str, float]) -> None:
    """Give every MLflow logger the run's final metrics and its record files ([`RUN_FILES`][convzoo.training.tracking.RUN_FILES]) as artifacts.

    Per-epoch metrics are logged during training; of the final ones, the best validation accuracy,
    epochs, parameter count and minutes are new.
    """
    final = {key: value for key, value in metrics.items() if key == "val/acc_best" or "/" not in key}
    for logger in loggers:
        if not isinstance(logger, _LightningMLFlowLogger):
            continue
        logger.log_metrics(final)
        for name, folder in RUN_FILES.items():
            if (run_dir / name).is_file():
                logger.experiment.log_artifact(logger.run_id, str(run_dir / name), folder)
