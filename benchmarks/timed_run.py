"""Time one whole ``train.py`` command and record it for the accuracy-vs-wall-time results.

Runs ``python train.py <overrides>`` in a fresh process and appends one JSON line to
``benchmarks/results/time_to_accuracy.jsonl``: the command, test accuracy, wall time of the whole
command (start-up, training, validation, test), fit time, training images/s per epoch, peak RSS,
and the machine load (``/proc/loadavg``) at the start, at the end and sampled every 10 s in
between, because this 2-core machine is shared and wall time depends on what else runs. The
run's ``metrics.json``, ``csv/metrics.csv``, ``curves.png``, overrides and log are copied to
``benchmarks/results/runs/<label>/`` so every point of the plot can be traced to its run.

    CONVZOO_DATA=/path/to/cifar10 python benchmarks/timed_run.py --label cpu_fast-seed0 -- experiment=cpu_fast
    python benchmarks/timed_run.py --label airbench94-seed1 --group airbench94 -- experiment=airbench94 seed=1

A timed run that was killed continues with ``--resume <its run dir>`` (``train.py resume=<dir>``, the
same label): its record counts the killed process from its start to its last checkpoint plus the
continuing process, and keeps the pause between as ``paused_s`` so the curve can leave it out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import cpu  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
ENV_PREFIXES = ("OMP_", "GOMP_", "MALLOC_", "ONEDNN_", "DNNL_", "LD_PRELOAD", "TORCHINDUCTOR_")  # recorded with the command
ENV_LOCATIONS = ("TORCHINDUCTOR_CACHE_DIR",)  # where a cache lies changes nothing measured


def loadavg() -> list[float]:
    """The 1-, 5- and 15-minute load averages (the machine's run-queue length)."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class LoadSampler(threading.Thread):
    """Reads the 1-minute load average every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 10.0):
        super().__init__(daemon=True)
        self.interval, self.samples, self.stopped = interval, [], threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.samples.append(loadavg()[0])


def epoch_images_per_s(metrics_csv: Path) -> list[float]:
    """``train/images_per_s`` of each epoch, from the run's CSV log."""
    if not metrics_csv.is_file():
        return []
    with open(metrics_csv, newline="") as handle:
        return [float(row["train/images_per_s"]) for row in csv.DictReader(handle) if row.get("train/images_per_s")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--label", required=True, help="unique name of this run (its results folder)")
    parser.add_argument("--group", default=None, help="what the plot draws it as (default: the label)")
    parser.add_argument("--note", default="", help="free text kept with the record (the lever tried)")
    parser.add_argument("--results", default=str(RESULTS / "time_to_accuracy.jsonl"))
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue this killed timed run (its run directory) instead of starting one")
    parser.add_argument("overrides", nargs="*", help="train.py overrides (after --)")
    args = parser.parse_args()

    keep = RESULTS / "runs" / args.label
    if keep.exists():
        raise SystemExit(f"{keep} exists: pick another --label")
    earlier_s, resumed = 0.0, None
    if args.resume:
        run_dir = Path(args.resume).resolve()
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise SystemExit(f"{run_dir} has no checkpoints/last.ckpt to continue from: start the run again")
        began = (run_dir / ".hydra" / "overrides.yaml").stat().st_mtime  # written as the killed run started
        recorded = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
        earlier_s = last.stat().st_mtime - began  # its work after the last checkpoint is lost and done again
        command = [sys.executable, "train.py", f"resume={run_dir}", *args.overrides]  # given now: extend the run
        args.overrides = [*recorded, *args.overrides]
        resumed = {"at": datetime.now().isoformat(timespec="seconds"), "paused_s": round(time.time() - last.stat().st_mtime, 1),
                   "killed_ran_s": round(earlier_s, 1)}
        started = datetime.fromtimestamp(began)
    else:
        run_dir = Path(tempfile.mkdtemp(prefix=f"convzoo-{args.label}-"))
        command = [sys.executable, "train.py", *args.overrides, f"hydra.run.dir={run_dir}"]
        started = datetime.now()
    sampler = LoadSampler()
    load_start = loadavg()
    sampler.start()
    start = time.perf_counter()
    with open(run_dir.with_suffix(".log"), "a" if args.resume else "w") as log:
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start + earlier_s
    sampler.stopped.set()
    load_end = loadavg()
    if result.returncode != 0:
        raise SystemExit(f"train.py failed ({result.returncode}); log: {run_dir.with_suffix('.log')}")

    metrics = json.loads((run_dir / "metrics.json").read_text())
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES) and k not in ENV_LOCATIONS}
    rates = epoch_images_per_s(run_dir / "csv" / "metrics.csv")
    record = {
        "label": args.label,
        "group": args.group or args.label,
        "note": args.note,
        "command": " ".join([*(f"{k}={v}" for k, v in env.items()), "python train.py", *args.overrides]),
        "date": started.isoformat(timespec="seconds"),
        "machine": cpu(),
        "test_acc": metrics.get("test/acc"),
        "wall_s": round(wall, 1),
        "fit_s": round(metrics["fit_minutes"] * 60 + earlier_s, 1),
        "epochs": metrics.get("epochs"),
        "images_per_s": [round(r, 1) for r in rates],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "load_start": load_start,
        "load_end": load_end,
        "load_1min_mean": round(sum(sampler.samples) / len(sampler.samples), 2) if sampler.samples else None,
        "load_1min_max": max(sampler.samples, default=None),
    }
    if resumed:
        record["resumed"] = resumed  # load figures cover the continuing process only
    keep.mkdir(parents=True)
    shutil.copy(run_dir.with_suffix(".log"), keep / "train.log")
    shutil.copy(run_dir / "metrics.json", keep / "metrics.json")
    for kept in ("csv/metrics.csv", "curves.png"):  # the run's own picture, to look at beside the numbers
        if (run_dir / kept).is_file():
            shutil.copy(run_dir / kept, keep / Path(kept).name)
    shutil.copy(run_dir / ".hydra" / "overrides.yaml", keep / "overrides.yaml")
    (keep / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    with open(args.results, "a") as handle:
        handle.write(json.dumps(record) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
