"""``python -m convzoo compare RUN_DIR [RUN_DIR ...]``: runs side by side, the view wanted after a sweep.

Draws every run's validation accuracy and loss per epoch on one PNG (test accuracy starred at the
best validation epoch; a bar per run of its best validation accuracy) and prints a table of final metrics, parameters and wall time, best
validation accuracy first. A multirun folder stands for all its jobs; the overrides that differ
between runs name them.

Examples:
    An Optuna search's folder (docs: Search, sweeps and tracking):

    >>> text, png = compare(["/tmp/search/sweep"])  # doctest: +SKIP
    >>> print(text)  # doctest: +SKIP
    8 runs, all with: hparams_search=optuna_cpu_fast
    run  overrides                                            model     params  val/acc_best  test/acc  ...
    6    optimizer.lr=0.534 optimizer.weight_decay=0.000326 ...  airbench    498K        0.5315    0.5430  ...
    ...
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from convzoo.runs.plots import runs_figure, save_figure
from convzoo.runs.directory import refuse_to_replace_a_record
from convzoo.runs.read import Run, distinguishing_overrides, find_runs, format_count

__all__ = ["compare", "runs_table"]


def _sort_key(run: Run) -> tuple[bool, float]:
    best = run.metrics.get("val/acc_best", run.metrics.get("val/acc"))
    return (best is None, -(best or 0.0))


def runs_table(runs: Sequence[Run]) -> str:
    """One aligned line per run: its distinguishing overrides, model, parameters, final metrics, minutes."""
    _, distinct = distinguishing_overrides(runs)
    header = ["run", "overrides", "model", "params", "val/acc_best", "test/acc", "epochs", "fit min", "run min"]
    rows = [header]
    for run, overrides in zip(runs, distinct):
        metrics = run.metrics
        params = run.params.get("total", metrics.get("params"))

        def number(key: str, digits: int) -> str:
            return f"{metrics[key]:.{digits}f}" if key in metrics else "-"

        rows.append([
            run.name,
            " ".join(overrides) or "-",
            str((run.config.get("model") or {}).get("name", "-")),
            format_count(params) if params is not None else "-",
            number("val/acc_best", 4),
            number("test/acc", 4),
            str(int(metrics["epochs"])) if "epochs" in metrics else "-",
            number("fit_minutes", 2),
            number("run_minutes", 2),
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    numeric = {3, 4, 5, 6, 7, 8}
    return "\n".join(
        "  ".join(cell.rjust(width) if i in numeric else cell.ljust(width)
                  for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )


def _default_output(paths: Sequence[str | Path], runs: Sequence[Run]) -> Path:
    if len(paths) == 1 and len(runs) > 1:  # one sweep folder: the picture belongs inside it
        return Path(paths[0]) / "compare.png"
    return Path("compare.png")


def compare(paths: Sequence[str | Path], output: str | Path | None = None) -> tuple[str, Path]:
    """Table and PNG for the runs at ``paths`` (run directories or folders of them).

    Returns the printed text (shared overrides, then the table) and the PNG's path. An existing PNG
    there is replaced; a run's record or checkpoint never is
    ([`refuse_to_replace_a_record`][convzoo.runs.directory.refuse_to_replace_a_record]).
    """
    runs = sorted(find_runs(paths), key=_sort_key)
    png = refuse_to_replace_a_record(output or _default_output(paths, runs), "-o")
    common, _ = distinguishing_overrides(runs)
    figure = runs_figure(runs, title=f"{len(runs)} runs" + (": " + " ".join(common) if common else ""))
    save_figure(figure, png)
    lines = [f"{len(runs)} runs" + (f", all with: {' '.join(common)}" if common else ""), runs_table(runs),
             f"curves: {png}"]
    return "\n".join(lines), png
