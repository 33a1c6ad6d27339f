"""Figures of runs: one run's curves (``curves.png``) and several runs compared (``compare.png``).

Both read runs through [`convzoo.runs`][convzoo.runs]; neither imports Lightning, so ``python -m convzoo
compare`` starts quickly.

Examples:
    >>> from convzoo.runs import find_runs
    >>> save_figure(runs_figure(find_runs(["multirun/2026-11-23/12-00-00"])), "compare.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convzoo.runs.read import Run, distinguishing_overrides, epoch_curves, step_curves

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["curve_panels", "curves_figure", "plot_curves", "runs_figure", "save_figure", "marked_test_metric"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curve_panels(curves: Mapping[str, Any]) -> dict[str, list[str]]:
    """Epoch metrics grouped by what they measure, whatever the stages and names: ``train/loss_epoch``
    and ``val/loss`` share the ``loss`` panel. Per-step values (``*_step``) and test metrics (one
    number after training, marked instead) get none. Losses come first, then the rest by name.

    Examples:
        >>> curve_panels({"val/acc": {}, "train/loss_epoch": {}, "train/loss_step": {}, "val/loss": {}, "test/acc": {}})
        {'loss': ['train/loss_epoch', 'val/loss'], 'acc': ['val/acc']}
    """
    panels: dict[str, list[str]] = {}
    for key in sorted(curves):
        stage, _, name = key.rpartition("/")
        if stage != "test" and not name.endswith("_step"):
            panels.setdefault(name.removesuffix("_epoch"), []).append(key)
    return {name: panels[name] for name in sorted(panels, key=lambda name: ("loss" not in name, name))}


def marked_test_metric(monitor: str | None) -> str:
    """The test metric a run's curves mark: the monitored metric's, or accuracy where nothing was
    monitored (the final weights were tested).

    Examples:
        >>> marked_test_metric("val/top1"), marked_test_metric(None)
        ('test/top1', 'test/acc')
    """
    return "test/" + (monitor.rpartition("/")[2] if monitor else "acc")


def curves_figure(
    metrics_csv: Path,
    title: str | None = None,
    test_score: float | None = None,
    steps_per_epoch: int | None = None,
    monitor: str | None = "val/acc",
    mode: str = "max",
) -> Figure:
    """A run's epoch metrics and learning rates from its ``CSVLogger`` file, as a matplotlib figure.

    One panel per kind of epoch metric ([`curve_panels`][convzoo.runs.plots.curve_panels]), then the learning rates. Epoch
    metrics are drawn at the end of their epoch (1, 2, ...); the learning rate, logged per step by
    ``LearningRateMonitor`` (columns ``lr-*``), at ``step / steps_per_epoch`` on the same axis (per
    step when not given). ``test_score`` (the test value of the ``monitor``ed metric) is marked on
    that metric's panel at its best epoch (``mode``: ``max`` or ``min``), the checkpoint that was
    tested; with ``monitor=None`` the final weights were tested, and their test accuracy is marked
    on the ``acc`` panel at the last epoch. ``title`` is typically [`convzoo.runs.run_title`][convzoo.runs.read.run_title].
    """
    plt = _pyplot()
    curves = epoch_curves(metrics_csv)
    rates = step_curves(metrics_csv, "lr-")
    panels = curve_panels(curves)
    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(5 * (len(panels) + 1), 4.6 if title else 4.2),
                                squeeze=False)
    axes = list(axes[0])
    # test rows carry the epoch count after training, one past the last epoch: not an epoch of their own
    last_epoch = max((e + 1 for key, curve in curves.items() if not key.startswith("test/") for e in curve), default=1)
    tested = marked_test_metric(monitor)
    monitored = (curves.get(monitor) or {}) if monitor else {}
    for axis, (name, keys) in zip(axes, panels.items()):
        for key in keys:
            epochs = sorted(curves[key])
            axis.plot([e + 1 for e in epochs], [curves[key][e] for e in epochs], marker="o", label=key)
        axis.set(title=name, xlabel="epoch")
        if test_score is not None and name == tested.removeprefix("test/") and (monitor is None or monitor in keys):
            if monitored:
                epoch = (max if mode == "max" else min)(monitored, key=monitored.get) + 1
                which = f"best val epoch {epoch}"
            else:
                epoch, which = last_epoch, "final weights"
            value = f"{test_score:.2%}" if mode == "max" and 0 <= test_score <= 1 else f"{test_score:.4g}"
            axis.axhline(test_score, color="C3", linestyle=":", linewidth=1)
            axis.plot([epoch], [test_score], marker="*", markersize=14, color="C3", linestyle="none",
                      label=f"{tested} {value} ({which})")
    lr_axis = axes[-1]
    for key, values in sorted(rates.items()):
        steps = sorted(values)
        lr_axis.plot([s / steps_per_epoch for s in steps] if steps_per_epoch else steps,
                     [values[s] for s in steps], label=key.removeprefix("lr-"))
    lr_axis.set(title="learning rate", xlabel="epoch" if steps_per_epoch else "step")
    peaks = [max(values.values()) for values in rates.values() if values]
    if len(peaks) > 1 and min(peaks) > 0 and max(peaks) > 10 * min(peaks):
        lr_axis.set_yscale("log")  # param groups far apart, e.g. norm biases at 64x the base rate
    for axis in axes:
        if axis is not lr_axis:
            _epoch_axis(axis, 0.5, last_epoch + 0.5)  # epoch-end points, with room around them
        elif steps_per_epoch:
            _epoch_axis(axis, 0, last_epoch)  # the schedule, from step 0 to the end of the last epoch
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize="small")
    if title:
        figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, output: Path) -> Path:
    """Write ``figure`` as a PNG and free it."""
    figure.savefig(output, dpi=100)
    _pyplot().close(figure)
    return Path(output)


def plot_curves(metrics_csv: Path, output: Path, **kwargs: Any) -> Path:
    """Draw [`curves_figure`][convzoo.runs.plots.curves_figure] into the PNG ``output``.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "metrics.csv").write_text("epoch,step,lr-SGD,val/acc\\n,0,0.1,\\n0,9,,0.5\\n1,19,,0.6\\n")
        >>> plot_curves(folder / "metrics.csv", folder / "curves.png", test_score=0.61, steps_per_epoch=10).name
        'curves.png'
    """
    return save_figure(curves_figure(metrics_csv, **kwargs), output)


def _epoch_axis(axis: Any, low: float, high: float) -> None:
    """Whole-epoch ticks only (even with a single epoch in view), on ``[low, high]``."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    axis.set_xlim(low, high)


def _legend_label(run: Run, overrides: list[str], width: int = 90) -> str:
    # the overrides' last key parts (optimizer.lr=0.1 -> lr=0.1) keep a sweep's labels readable
    short = [o.split("=", 1)[0].rsplit(".", 1)[-1] + "=" + o.split("=", 1)[1] if "=" in o else o for o in overrides]
    label = run.name + (": " + " ".join(short) if short else "")
    return label if len(label) <= width else label[: width - 3] + "..."


def runs_figure(runs: Sequence[Run], title: str | None = None) -> Figure:
    """Every run's validation accuracy and loss per epoch (test accuracy starred at the best val epoch),
    and each run's best validation accuracy as a bar: the view after a sweep, one-epoch trials included."""
    plt = _pyplot()
    _, distinct = distinguishing_overrides(runs)
    figure, (accuracy, loss, best) = plt.subplots(1, 3, figsize=(18, 5.5), width_ratios=[2, 2, 1.4])
    colours = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
    last_epoch = 1
    for index, (run, overrides) in enumerate(zip(runs, distinct)):
        colour = colours(index % colours.N)
        for axis, key in ((accuracy, "val/acc"), (loss, "val/loss")):
            curve = run.curves.get(key) or {}
            epochs = sorted(curve)
            last_epoch = max([last_epoch, *(e + 1 for e in epochs)])
            axis.plot([e + 1 for e in epochs], [curve[e] for e in epochs], marker="o", markersize=4,
                      color=colour, label=_legend_label(run, overrides) if axis is accuracy else None)
        val = run.curves.get("val/acc") or {}
        if "test/acc" in run.metrics and val:
            accuracy.plot([max(val, key=val.get) + 1], [run.metrics["test/acc"]], marker="*", markersize=11,
                          color=colour, linestyle="none")
        if "val/acc_best" in run.metrics:
            best.barh(index, run.metrics["val/acc_best"], color=colour)
        if "test/acc" in run.metrics:
            best.plot([run.metrics["test/acc"]], [index], marker="*", markersize=11, color="black", linestyle="none")
    accuracy.plot([], [], marker="*", color="grey", linestyle="none", label="test/acc (best val epoch)")
    accuracy.set(title="validation accuracy", xlabel="epoch")
    loss.set(title="validation loss", xlabel="epoch")
    for axis in (accuracy, loss):
        _epoch_axis(axis, 0.5, last_epoch + 0.5)
        axis.grid(alpha=0.3)
    best.set(title="best validation accuracy (bar), test (star)", xlabel="accuracy",
             yticks=range(len(runs)), yticklabels=[run.name for run in runs])
    best.invert_yaxis()  # the first run on top, as in the table
    values = [run.metrics[k] for run in runs for k in ("val/acc_best", "test/acc") if k in run.metrics]
    if values:  # zoom onto the differences between runs rather than from 0
        spread = max(values) - min(values)
        best.set_xlim(max(0.0, min(values) - max(spread, 0.02)), max(values) + max(spread, 0.02) * 0.3)
    best.grid(alpha=0.3, axis="x")
    figure.legend(loc="outside lower center", ncols=2 if len(runs) > 3 else 1, fontsize="small")
    figure.suptitle(title or f"{len(runs)} runs", fontsize="medium")
    figure.set_layout_engine("constrained")
    return figure
