"""python -m convzoo compare: runs read back from their directories, tabled and plotted together."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from convzoo.__main__ import main
from convzoo.runs.plots import runs_figure
from convzoo.runs import find_runs

COMMON = ["data=synthetic", "model=airbench"]


def write_run(folder: Path, lr: float, val_accs: list[float], test_acc: float | None, minutes: float = 1.5) -> None:
    """A run directory as train.py leaves it (the parts compare reads)."""
    (folder / "csv").mkdir(parents=True)
    (folder / ".hydra").mkdir()
    rows = ["epoch,step,val/acc,val/loss"] + [f"{e},{10 * e + 9},{acc},{2 - acc}" for e, acc in enumerate(val_accs)]
    (folder / "csv" / "metrics.csv").write_text("\n".join(rows) + "\n")
    config = {"model": {"name": "airbench"}, "optimizer": {"_target_": "torch.optim.SGD", "lr": lr}}
    (folder / "csv" / "hparams.yaml").write_text(yaml.safe_dump({"config": config, "params": {"total": 311_786}}))
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([*COMMON, f"optimizer.lr={lr}"]))
    if test_acc is not None:  # an interrupted run has curves but no final metrics
        metrics = {"val/acc_best": max(val_accs), "test/acc": test_acc, "epochs": len(val_accs),
                   "fit_minutes": minutes, "run_minutes": minutes + 0.25, "params": 311_786}
        (folder / "metrics.json").write_text(json.dumps(metrics))


def visible_ticks(axis) -> list[float]:
    low, high = axis.get_xlim()
    return [float(tick) for tick in axis.get_xticks() if low <= tick <= high]


def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "multirun" / "12-00-00"
    write_run(root / "0", 0.123456, [0.5, 0.6], 0.61)
    write_run(root / "2", 0.5, [0.55, 0.7], 0.69)
    write_run(root / "10", 1.0, [0.3], None)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_compare_tables_a_sweep_best_first_and_plots_it(tmp_path, capsys) -> None:
    root = sweep(tmp_path)
    assert main(["compare", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "3 runs, all with: data=synthetic model=airbench"
    assert lines[1].split() == ["run", "overrides", "model", "params", "val/acc_best", "test/acc", "epochs",
                                "fit", "min", "run", "min"]
    assert lines[2].split() == ["2", "optimizer.lr=0.5", "airbench", "312K", "0.7000", "0.6900", "2", "1.50", "1.75"]
    assert lines[3].split()[:6] == ["0", "optimizer.lr=0.123", "airbench", "312K", "0.6000", "0.6100"]
    assert lines[4].split() == ["10", "optimizer.lr=1", "airbench", "312K", "-", "-", "-", "-", "-"]
    assert lines[5] == f"curves: {root / 'compare.png'}"
    assert (root / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_runs_figure_draws_each_run_with_its_test_accuracy(tmp_path) -> None:
    runs = find_runs([sweep(tmp_path)])
    assert [run.name for run in runs] == ["0", "2", "10"]  # numeric order, not 0, 10, 2
    accuracy, loss, best = runs_figure(runs).axes
    curves = [line for line in accuracy.get_lines() if line.get_linestyle() != "None"]
    assert [line.get_label() for line in curves] == ["0: lr=0.123", "2: lr=0.5", "10: lr=1"]
    assert list(curves[1].get_ydata()) == [0.55, 0.7] and list(curves[1].get_xdata()) == [1, 2]
    stars = [line for line in accuracy.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert sorted((list(s.get_xdata()), list(s.get_ydata())) for s in stars) == [([2], [0.61]), ([2], [0.69])]
    assert len(loss.get_lines()) == 3 and visible_ticks(accuracy) == [1, 2]
    bars = [(patch.get_y() + patch.get_height() / 2, patch.get_width()) for patch in best.patches]
    assert bars == [(0, 0.6), (1, 0.7)]  # best val accuracy per run; the interrupted run has none
    assert [tick.get_text() for tick in best.get_yticklabels()] == ["0", "2", "10"]


def test_one_epoch_runs_get_a_whole_epoch_axis(tmp_path) -> None:
    write_run(tmp_path / "a", 0.1, [0.4], 0.41)
    write_run(tmp_path / "b", 0.2, [0.5], 0.52)
    accuracy, _, _ = runs_figure(find_runs([tmp_path])).axes
    assert visible_ticks(accuracy) == [1] and accuracy.get_xlim() == (0.5, 1.5)


def test_compare_takes_several_run_directories(tmp_path, capsys) -> None:
    write_run(tmp_path / "a" / "run", 0.1, [0.4], 0.41)
    write_run(tmp_path / "b" / "run", 0.2, [0.5], 0.52)
    output = tmp_path / "both.png"
    assert main(["compare", str(tmp_path / "a" / "run"), str(tmp_path / "b" / "run"), "-o", str(output)]) == 0
    out = capsys.readouterr().out
    assert "b/run" in out.splitlines()[2] and output.read_bytes()[:4] == b"\x89PNG"


def test_compare_reports_a_folder_without_runs(tmp_path, capsys) -> None:
    assert main(["compare", str(tmp_path)]) == 2
    assert f"{tmp_path} holds no run" in capsys.readouterr().err
