"""Accuracy vs wall time of the measured runs (``timed_run.py``'s records) as a PNG and a table.

Every point is one run of a whole ``train.py`` command on this machine: test accuracy against the
wall time of the command. The machine is shared, so a run whose 1-minute load average (sampled
every 10 s) went above ``--quiet-load`` while it ran (ours alone is ~2: two busy threads) is drawn
hollow: its time is inflated by other people's work, its accuracy is not. So is a run whose record
says ``"disturbed": true`` (something known to have shared the cores, however short).

    python benchmarks/plot_time_to_accuracy.py          # -> docs/results/time_to_accuracy.png
    python benchmarks/plot_time_to_accuracy.py --table  # also print a table of the runs

Every figure names the machines its points were measured on, with their dates, in its title. ``benchmarks/report.py
--figures`` draws the results page's figures with these functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "results"
QUIET_LOAD = 2.6  # the highest 1-minute load of a quiet run on 2 cores (a run alone keeps it near 2)
TARGETS = [(10.0, 92.5), (4.0, 90.0)]  # (minutes, accuracy %): the targets cpu_fast and cpu_fast_4min were sized for


def load_runs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_quiet(run: dict, quiet_load: float) -> bool:
    """Quiet: the load stayed low, and nothing was recorded as disturbing the run (``"disturbed": true``)."""
    peak = run.get("load_1min_max")
    return peak is not None and peak <= quiet_load and not run.get("disturbed")


def machines_note(records: list[dict]) -> str:
    """One line per machine: 'measured on M: first date to last date'."""
    dates: dict[str, list[str]] = {}
    for record in records:
        dates.setdefault(record["machine"], []).append(record["date"][:10])
    lines = []
    for machine in sorted(dates, key=lambda m: (min(dates[m]), m)):
        first, last = min(dates[machine]), max(dates[machine])
        lines.append(f"{machine}: {first}{'' if first == last else ' to ' + last}")
    return "measured on " + "\n".join(lines)


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 5.5))
    return plt, figure, axis


def _finish(plt, figure, axis, records: list[dict], output: Path, title: str, xlabel: str) -> Path:
    """Labels, the machines and dates in the title, and the file."""
    axis.set(xlabel=xlabel, ylabel="test accuracy (%)")
    axis.set_title(f"{title}\n{machines_note(records)}", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110, metadata={"Software": None})
    plt.close(figure)
    return output


def plot(runs: list[dict], output: Path, quiet_load: float = QUIET_LOAD) -> Path:
    """Every run's test accuracy against the wall time of its whole command, one point per run."""
    plt, figure, axis = _figure()
    groups = sorted({run["group"] for run in runs}, key=lambda g: min(r["wall_s"] for r in runs if r["group"] == g))
    colours = plt.get_cmap("tab10")
    for index, group in enumerate(groups):
        members = sorted((r for r in runs if r["group"] == group), key=lambda r: r["wall_s"])
        colour = colours(index % 10)
        for run in members:
            quiet = is_quiet(run, quiet_load)
            axis.scatter(run["wall_s"] / 60, 100 * run["test_acc"], s=45, color=colour if quiet else "none",
                         edgecolors=colour, linewidths=1.5, zorder=3)
        axis.scatter([], [], color=colour, label=group)
    for minutes, accuracy in TARGETS:
        axis.plot([minutes], [accuracy], marker="*", markersize=14, color="black", zorder=4)
        axis.annotate(f"target {accuracy}% in {minutes:g} min", (minutes, accuracy), textcoords="offset points",
                      xytext=(6, -12), fontsize=8)
    axis.scatter([], [], color="none", edgecolors="grey", label=f"hollow: load > {quiet_load:g} during the run, or disturbed")
    return _finish(plt, figure, axis, runs, output, "CIFAR-10: test accuracy against wall time, one point per run",
                   "wall time of the whole command (min)")


def plot_curves(weight_sets: list[dict], output: Path) -> Path:
    """Each weight set's test accuracy (single view) after every epoch against the elapsed training time."""
    plt, figure, axis = _figure()
    for record in weight_sets:
        curve = sorted(record["curve"], key=lambda p: p["epoch"])
        axis.plot([p["elapsed_s"] / 60 for p in curve], [100 * p["test_acc"] for p in curve], marker="o", markersize=3,
                  label=f"{record['name']} ({record['tag']})")
    for accuracy in (85, 90):
        axis.axhline(accuracy, color="grey", linewidth=0.8, linestyle="--")
    return _finish(plt, figure, axis, weight_sets, output, "Zoo weight sets on CIFAR-10: test accuracy after each epoch",
                   "elapsed training time (min)")


def table(runs: list[dict], quiet_load: float) -> str:
    lines = ["| run | command | test acc | wall time | images/s (median epoch) "
             "| load 1-min: start / mean / max / end |", "|---|---|---:|---:|---:|---|"]
    for run in runs:
        rates = sorted(run["images_per_s"])
        median = rates[len(rates) // 2] if rates else float("nan")
        minutes, seconds = divmod(round(run["wall_s"]), 60)
        load = f"{run['load_start'][0]:.2f} / {run['load_1min_mean']:.2f} / {run['load_1min_max']:.2f} / {run['load_end'][0]:.2f}"
        lines.append(f"| {run['label']} | `{run['command']}` | "
                     f"{100 * run['test_acc']:.2f}% | {minutes} min {seconds:02d} s | {median:,.0f} | {load} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(RESULTS / "time_to_accuracy.jsonl"))
    parser.add_argument("--output", default=str(FIGURES / "time_to_accuracy.png"))
    parser.add_argument("--quiet-load", type=float, default=QUIET_LOAD, help="max 1-min load for a run to count as quiet")
    parser.add_argument("--table", action="store_true", help="print a markdown table of the runs")
    args = parser.parse_args()
    runs = load_runs(Path(args.runs))
    print(f"wrote {plot(runs, Path(args.output), args.quiet_load)} ({len(runs)} runs)")
    if args.table:
        print(table(runs, args.quiet_load))


if __name__ == "__main__":
    main()
