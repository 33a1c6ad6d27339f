"""Throughput levers for CPU training, each setting in its own process: batch size, width, threads,
``torch.compile`` modes and allocator / OpenMP environment variables.

Times full training steps (bf16 autocast forward, backward, SGD-Nesterov step, channels-last) of
the airbench network on random data, median over ``--steps`` after ``--warmup``, and records the
machine load around each setting: on a shared 2-core machine, compare only settings measured in
the same window, and repeat them.

    python benchmarks/cpu_levers.py                                   # the default sweep
    python benchmarks/cpu_levers.py --settings "batch=500" "batch=1024" "batch=1024 env=OMP_NUM_THREADS=1"
A setting is space-separated key=value pairs: width, batch, compile (none | default |
max-autotune-no-cudagraphs), keep_freed (1: call ``convzoo.training.allocator.keep_freed_memory()`` first, as
``train()`` does by default; 0: glibc's defaults), env (NAME=VALUE, repeatable). Appends to benchmarks/results/cpu_levers.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS = [
    "batch=1024",
    "batch=500",
    "batch=256",
    "batch=1024 env=OMP_NUM_THREADS=1",
    "batch=1024 compile=default",
    "batch=1024 env=MALLOC_MMAP_MAX_=0 env=MALLOC_TRIM_THRESHOLD_=100000000000",
    "batch=1024 width=0.5",
    "batch=1024 width=0.5 compile=default",
]


def parse(setting: str) -> tuple[dict, dict[str, str]]:
    options, env = {"width": 1.0, "batch": 1024, "compile": "none", "keep_freed": 0}, {}
    for item in setting.split():
        key, value = item.split("=", 1)
        if key == "env":
            name, val = value.split("=", 1)
            env[name] = val
        elif key in options:
            options[key] = type(options[key])(value)
        else:
            raise SystemExit(f"unknown key {key!r} in setting {setting!r}; use width, batch, compile, keep_freed or env")
    return options, env


def worker(options: dict, steps: int, warmup: int) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from convzoo import build_model
    from convzoo.training.allocator import keep_freed_memory
    from convzoo.config import compose

    if options["keep_freed"]:
        keep_freed_memory()
    torch.manual_seed(0)
    spec = compose(["model=airbench", f"model.width_multiplier={options['width']}"]).model
    net = build_model(spec).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.85, nesterov=True, weight_decay=1e-3)
    model = net if options["compile"] == "none" else torch.compile(net, mode=options["compile"])
    x = torch.randn(options["batch"], 3, 32, 32).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (options["batch"],))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.2)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from flops import median_seconds

    start = time.perf_counter()
    step()
    first_step_s = time.perf_counter() - start  # includes compilation
    return {"images_per_s": options["batch"] / median_seconds(step, steps, warmup), "first_step_s": first_step_s,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="*", default=DEFAULT_SETTINGS)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "cpu_levers.jsonl"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(parse(args.worker)[0], args.steps, args.warmup)))
        return
    for setting in args.settings:
        _, env = parse(setting)
        load_start = Path("/proc/loadavg").read_text().split()[0]
        done = subprocess.run([sys.executable, __file__, "--worker", setting, "--steps", str(args.steps),
                               "--warmup", str(args.warmup)], capture_output=True, text=True,
                              env={**os.environ, **env}, cwd=REPO)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            print(f"{setting}: failed\n{done.stderr[-2000:]}")
            continue
        record = {"setting": setting, "date": datetime.now().isoformat(timespec="seconds"),
                  **json.loads(lines[-1][len("RESULT "):]), "load_start": float(load_start),
                  "load_end": float(Path("/proc/loadavg").read_text().split()[0])}
        print(f"{setting:70s} {record['images_per_s']:7.0f} images/s  first step {record['first_step_s']:5.1f} s  "
              f"load {record['load_start']:.2f} -> {record['load_end']:.2f}", flush=True)
        with open(args.output, "a") as handle:
            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
