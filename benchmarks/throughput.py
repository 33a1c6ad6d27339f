"""Training throughput: convzoo's real train path vs a hand-written loop vs the classic tutorial pipeline.

Each mode runs in its own process (so peak RSS is its own) on the same network, batch size and
step count, and reports images/s as the median over timed windows after warm-up:

1. ``convzoo``: ``convzoo.training.train`` exactly as ``train.py`` runs it (Lightning Trainer, the
   CIFAR-10 data module with batched tensor augmentation, checkpoints and CSV logging on);
2. ``hand``: a minimal PyTorch loop over the same network, precision and memory format, with the
   data already in memory as uint8 tensors, served by the same loader (:class:`convzoo.data.InMemoryLoader`)
   and augmented by the same batched transform, without Lightning in the loop (the ideal);
3. ``classic``: torchvision ``datasets.CIFAR10`` + PIL transforms (random crop, flip, to-tensor,
   normalize) + ``DataLoader`` with workers, fp32, channels-first.

Usage (real CIFAR-10 under $CONVZOO_DATA):
    python benchmarks/throughput.py --experiment cpu_fast
    python benchmarks/throughput.py --model convmixer --batch-size 128 --steps 6
    python benchmarks/throughput.py --experiment cpu_fast --epoch --startup   # + epoch and start-up times
    python benchmarks/throughput.py --experiment cpu_fast --modes convzoo --override=~callbacks.nonfinite_loss
                                                                 # convzoo without the non-finite-loss guard
Writes benchmarks/results/throughput-<name>.json and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import lightning as L

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import cpu  # noqa: E402


class StepTimes(L.Callback):
    """Records the host clock at the end of every training batch (the last instance is kept)."""

    last: "StepTimes | None" = None

    def __init__(self):
        self.times: list[float] = []
        StepTimes.last = self

    def on_train_batch_end(self, *args, **kwargs) -> None:
        self.times.append(time.perf_counter())


def window_throughputs(times: list[float], batch_size: int, warmup: int, window: int) -> list[float]:
    """images/s for consecutive windows of ``window`` steps after ``warmup`` steps."""
    timed = times[warmup:]
    return [batch_size * window / (timed[i + window] - timed[i]) for i in range(0, len(timed) - window, window)]


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def preset(args: argparse.Namespace) -> list[str]:
    """The network's override: the experiment preset, else the model config."""
    return [f"experiment={args.experiment}"] if args.experiment else [f"model={args.model}"]


def compose_config(args: argparse.Namespace, extra: list[str]):
    from convzoo.config import compose

    overrides = preset(args)
    # --override reaches every mode: the three loops train the same network (a switch of train()'s
    # own, such as fused_norm_act, changes the convzoo path only: the other two never read it)
    overrides += [f"data.root={args.data}", *extra, *args.override]
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    if args.precision:
        overrides.append(f"trainer.precision={args.precision}")
    return compose(overrides)


def run_convzoo(args: argparse.Namespace) -> dict:
    from omegaconf import open_dict

    from convzoo.training import train

    steps = args.warmup + args.steps * args.windows + 1
    cfg = compose_config(args, [f"++trainer.limit_train_batches={steps}", "++trainer.limit_val_batches=1",
                                "trainer.max_epochs=1", "test=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="convzoo-bench-")
        cfg.callbacks.step_times = {"_target_": "__main__.StepTimes"}
    train(cfg)
    return {"batch_size": cfg.data.batch_size, "precision": str(cfg.trainer.precision),
            "times": StepTimes.last.times}


def network_and_data(cfg):
    """The run's network (seeded, whitening fitted) and its data module, set up, as ``train.py`` builds them."""
    import torch
    from hydra.utils import instantiate

    from convzoo.network.build import build_model
    from convzoo.weight_init import apply_data_init

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model)
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    apply_data_init(model, datamodule.eval_transform(datamodule.train_images[:cfg.data_init_images]))
    return model, datamodule


def _network_and_data(args: argparse.Namespace):
    cfg = compose_config(args, [])
    return (cfg, *network_and_data(cfg))


def _optimizer(cfg, model):
    from hydra.utils import instantiate

    return instantiate(cfg.optimizer)(model.parameters())


def _epoch_after_epoch(loader):
    for epoch in itertools.count():
        loader.set_epoch(epoch)
        yield from loader


def hand_loop(cfg, model, datamodule, steps: int, device: str = "cpu", synchronize_after: tuple[int, ...] = ()) -> list[float]:
    """Train ``model`` for ``steps`` steps in a minimal PyTorch loop; the host clock after each step.

    The data module's own loader and transform without a trainer: the same order, shards and
    per-image flips as ``train.py``, and the same batched augmentation, on ``device`` (the data is
    moved there once, as the data module does under a trainer). ``cfg`` gives the precision, memory
    format, compilation, optimizer (with its norm-bias LR groups), LR schedule (stepped per batch) and
    label smoothing. On a GPU the clock is read after a synchronisation only after the steps listed in
    ``synchronize_after`` (counted from 0).
    """
    import torch
    import torch.nn.functional as F
    from hydra.utils import instantiate

    from benchmarks.common import synchronize
    from convzoo.training.allocator import keep_freed_memory
    from convzoo.training.module import make_optimizer

    device = torch.device(device)
    if cfg.get("keep_freed_memory"):
        keep_freed_memory()  # the allocator train() runs with, so the two loops differ only in the loop
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
    if cfg.get("compile"):
        model.compile()  # in place, as ImageClassifier does
    optimizer = make_optimizer(instantiate(cfg.optimizer), model, cfg.module.get("norm_bias_lr_scale", 1.0))
    scheduler = instantiate(cfg.scheduler)(optimizer, total_steps=steps) if cfg.get("scheduler") else None
    datamodule.train_images, datamodule.train_labels = datamodule.train_images.to(device), datamodule.train_labels.to(device)
    loader, augment = datamodule.train_dataloader(), datamodule.train_transform
    times = []
    synchronize(device)
    for step, (images, y) in zip(range(steps), _epoch_after_epoch(loader)):
        x = augment(images)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).float(), y, label_smoothing=cfg.module.label_smoothing)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        if step in synchronize_after:
            synchronize(device)
        times.append(time.perf_counter())
    return times


def run_hand(args: argparse.Namespace) -> dict:
    cfg, model, datamodule = _network_and_data(args)
    times = hand_loop(cfg, model, datamodule, args.warmup + args.steps * args.windows + 1)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    return {"batch_size": datamodule.batch_size, "precision": "bf16-mixed" if bf16 else "32-true", "times": times}


def run_classic(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F
    from torchvision import datasets, transforms

    from convzoo.data import CIFAR10_MEAN, CIFAR10_STD

    cfg, model, _ = _network_and_data(args)
    optimizer = _optimizer(cfg, model)
    transform = transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
    ])
    root = Path(args.data)
    dataset = datasets.CIFAR10(root=str(root), train=True, transform=transform, download=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=True,
                                         num_workers=args.workers, drop_last=True, persistent_workers=True)
    times = []
    steps = args.warmup + args.steps * args.windows + 1
    for step, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y, label_smoothing=cfg.module.label_smoothing)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter())
        if step + 1 == steps:
            break
    return {"batch_size": cfg.data.batch_size, "precision": "32-true", "times": times}


MODES = {"convzoo": run_convzoo, "hand": run_hand, "classic": run_classic}


def run_worker(mode: str, argv: list[str]) -> dict:
    """Run one mode in a fresh process; return its JSON result."""
    command = [sys.executable, __file__, "--worker", mode, *argv]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def timed_command(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default=None, help="experiment preset, e.g. cpu_fast")
    parser.add_argument("--model", default="convmixer", help="model config when no --experiment is given")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--precision", default=None, help="trainer precision (default: the preset's)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=5, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=4, help="timed windows; the median is reported")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the classic pipeline")
    parser.add_argument("--modes", default="convzoo,hand,classic")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override, for every mode")
    parser.add_argument("--epoch", action="store_true", help="also time one full real-CIFAR-10 epoch of train.py")
    parser.add_argument("--startup", action="store_true", help="also time `train.py --help` and a debug run")
    parser.add_argument("--data", default=os.environ.get("CONVZOO_DATA", "data"), help="CIFAR-10 root")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/throughput-<name>.json)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = MODES[args.worker](args)
        result["peak_rss_mb"] = peak_rss_mb()
        print("RESULT " + json.dumps(result))
        return

    argv = [a for a in sys.argv[1:] if a not in ("--epoch", "--startup")]
    name = args.experiment or args.model
    report: dict = {"name": name, "overrides": args.override, "date": date.today().isoformat(),
                    "machine": f"{cpu()}, no GPU",
                    "modes": {}}
    for mode in args.modes.split(","):
        result = run_worker(mode, argv)
        windows = window_throughputs(result.pop("times"), result["batch_size"], args.warmup, args.steps)
        report["modes"][mode] = {**result, "images_per_s": statistics.median(windows),
                                 "windows": [round(w, 1) for w in windows]}
        print(f"{mode:8s} {report['modes'][mode]['images_per_s']:8.1f} images/s  "
              f"peak RSS {result['peak_rss_mb']:7.0f} MB  ({result['precision']})", flush=True)
    modes = report["modes"]
    if "convzoo" in modes:
        for other in ("hand", "classic"):
            if other in modes:
                report[f"convzoo/{other}"] = modes["convzoo"]["images_per_s"] / modes[other]["images_per_s"]
    python = sys.executable
    if args.startup:
        report["startup_s"] = {
            "train.py --help": timed_command([python, "train.py", "--help"]),
            "debug run": timed_command([python, "train.py", "data=synthetic", "model=convmixer_tiny",
                                        "debug=fast_dev_run", f"hydra.run.dir={tempfile.mkdtemp()}"]),
        }
    if args.epoch:
        report["epoch_s"] = timed_command([python, "train.py", *preset(args), *args.override, "trainer.max_epochs=1",
                                           "test=false", f"data.root={args.data}",
                                           f"hydra.run.dir={tempfile.mkdtemp()}"])

    print()
    print(f"| {name} | images/s | peak RSS (MB) | precision |")
    print("|---|---:|---:|---|")
    for mode, result in modes.items():
        print(f"| {mode} | {result['images_per_s']:.0f} | {result['peak_rss_mb']:.0f} | {result['precision']} |")
    for key in ("convzoo/hand", "convzoo/classic"):
        if key in report:
            print(f"{key}: {report[key]:.2f}x")
    for key, value in report.get("startup_s", {}).items():
        print(f"start-up, {key}: {value:.1f} s")
    if "epoch_s" in report:
        print(f"one real CIFAR-10 epoch of train.py (incl. start-up and validation): {report['epoch_s']:.0f} s")
    output = Path(args.output or REPO / "benchmarks" / "results" / f"throughput-{name}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
