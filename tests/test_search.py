"""Sweeps: hparams_search=optuna (Hydra's Optuna sweeper) and Hydra's submitit launcher, on synthetic data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from convzoo.__main__ import main
from convzoo.config import config_dir

REPO = Path(__file__).resolve().parent.parent
TINY = ["data=synthetic", "data.num_train=192", "data.val_size=64", "data.num_test=64", "data.batch_size=64",
        "model=convmixer_tiny", "model.dim=16", "model.depth=1", "trainer.max_epochs=1"]


def sweep(sweep_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "train.py"), *overrides, f"hydra.sweep.dir={sweep_dir}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=sweep_dir.parent, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result


def job_overrides(job: Path) -> dict[str, str]:
    return dict(o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()))


@pytest.mark.slow
def test_optuna_search_samples_the_space_and_keeps_the_best(tmp_path: Path, capsys) -> None:
    sweep_dir = tmp_path / "search"
    sweep(sweep_dir, "hparams_search=optuna", "hydra.sweeper.n_trials=3", *TINY)  # no -m: the config implies it
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [j.name for j in jobs] == ["0", "1", "2"]
    best_seen = []
    for job in jobs:
        sampled = job_overrides(job)
        assert 1e-4 <= float(sampled["optimizer.lr"]) <= 1e-2
        assert 1e-4 <= float(sampled["optimizer.weight_decay"]) <= 0.1
        assert sampled["model.width_multiplier"] in {"0.5", "0.75", "1.0"}
        assert 0.0 <= float(sampled["module.label_smoothing"]) <= 0.3
        config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert config["optimizer"]["lr"] == float(sampled["optimizer.lr"])  # the trial really ran with it
        best_seen.append(json.loads((job / "metrics.json").read_text())["val/acc_best"])
    assert len({job_overrides(j)["optimizer.lr"] for j in jobs}) == 3
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(best_seen))
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "model.width_multiplier",
                                           "module.label_smoothing"}
    assert main(["compare", str(sweep_dir)]) == 0  # the view after a sweep
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 6 and f"{max(best_seen):.4f}" in table[2] and (sweep_dir / "compare.png").is_file()


def _log_time(line: str) -> str:
    return re.search(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+)\)", line).group(1)


@pytest.mark.slow
def test_submitit_local_runs_the_jobs_side_by_side(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    sweep(sweep_dir, "-m", "hydra/launcher=submitit_local", "debug=fast_dev_run", "optimizer.lr=0.001,0.002", *TINY)
    for job, lr in (("0", 0.001), ("1", 0.002)):
        assert yaml.safe_load((sweep_dir / job / ".hydra" / "config.yaml").read_text())["optimizer"]["lr"] == lr
        assert "test/acc" in json.loads((sweep_dir / job / "metrics.json").read_text())
    logs = sorted((sweep_dir / ".submitit").glob("*/*_0_log.out"))
    assert len(logs) == 2  # each job its own submitit job (its own process, pickled result, logs)
    starts, ends = [], []
    for log in logs:
        lines = log.read_text().splitlines()
        starts += [_log_time(line) for line in lines if line.startswith("submitit INFO") and "Starting" in line]
        ends += [_log_time(line) for line in lines if line.startswith("submitit INFO") and "completed" in line]
    assert len(starts) == len(ends) == 2 and max(starts) < min(ends)  # the second started before the first ended


def test_slurm_launcher_config_follows_the_trainer() -> None:
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4",
                                          "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.nodes, launcher.partition) == (4, 4, 1, "gpu")
