"""logger=mlflow: a real run through train.py, read back with MLflow's own client."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from convzoo.training.tracking import expand_records


def test_expand_records_keeps_plain_lists_whole() -> None:
    params = {"layers": [{"name": "stem", "shape": [8, 16, 16]}], "mean": [0.5, 0.4, 0.3], "lr": 0.1}
    assert expand_records(params) == {"layers": {"0": {"name": "stem", "shape": [8, 16, 16]}},
                                      "mean": [0.5, 0.4, 0.3], "lr": 0.1}


@pytest.mark.slow
def test_mlflow_run_reads_back_with_mlflows_client(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from test_training import run_train_py

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_train_py(run_dir, "logger=mlflow", "data=synthetic", "model=convmixer_tiny", "model.dim=32",
                 "model.depth=2", "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "optimizer.lr=0.002",
                 "init=kaiming_normal")
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # the conftest's temporary store
    experiment = client.get_experiment_by_name("convzoo")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "convmixer_tiny" and run.data.tags["run_dir"] == str(run_dir)

    params, metrics = run.data.params, run.data.metrics
    summary = (run_dir / "summary.csv").read_text().splitlines()
    assert params["config/optimizer/lr"] == "0.002" and params["config/model/dim"] == "32"
    assert int(params["params/total"]) == json.loads((run_dir / "metrics.json").read_text())["params"]
    assert params["init/scheme"] == "kaiming_normal"
    assert params["layers/0/layer"] == summary[1].split(",")[0]            # the per-layer table, row by row
    assert params[f"layers/{len(summary) - 2}/layer"] == summary[-1].split(",")[0]
    assert params["data/num_classes"] == "10" and params["data/dataset"] == "SyntheticDataModule"
    assert params["config/model/layers/0/block"] == "patch_embed"           # nested lists are not cut at 250 chars

    final = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/acc_best"] == pytest.approx(final["val/acc_best"])
    assert metrics["test/acc"] == pytest.approx(final["test/acc"])
    assert len(client.get_metric_history(run.info.run_id, "val/acc")) == 2  # one per epoch
    assert [m.step for m in client.get_metric_history(run.info.run_id, "lr-AdamW")] == list(range(6))  # per step

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.csv", "summary.txt", "init.csv", "data.json", "metrics.json", "curves.png", "hydra"} <= artifacts
    assert "hydra/config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id, "hydra")}
    local = Path(client.download_artifacts(run.info.run_id, "init.csv", str(tmp_path)))
    assert local.read_text() == (run_dir / "init.csv").read_text()
