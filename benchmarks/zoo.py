"""The model zoo on this CPU: training images/s of every zoo classifier, and YAML vs hand-written PyTorch.

1. ``--table``: each classifier config at its default size, trained (forward + backward + SGD step,
   bf16 autocast, channels-last) on random CIFAR-shaped batches; parameters and MFLOPs come from
   convzoo's summary (``torch.utils.flop_counter``).
2. ``--versus-hand``: ResNet-18 and MobileNetV2 built from YAML against the same architectures
   written by hand in plain PyTorch (``benchmarks/reference_nets.py``; tests/test_zoo.py checks they
   compute identical outputs), taking turns in one process so load changes hit both alike.

Usage:
    python benchmarks/zoo.py --versus-hand            # ~4 minutes on 2 cores
    python benchmarks/zoo.py --table --batch-size 64  # ~10 minutes (WRN-28-10 dominates)
Writes benchmarks/results/zoo-table.json and zoo-versus-hand.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import in_turns, machine, medians  # noqa: E402
from benchmarks.reference_nets import MobileNetV2, ResNet18  # noqa: E402
from convzoo import create_model, list_models, summary  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def table(batch_size: int, steps: int, rounds: int) -> dict:
    rows = {}
    for name in list_models():
        net = create_model(name)
        if net.feature_info.reduction() != [None]:
            continue  # not a classifier (the U-Net)
        stats = summary(net)
        before = machine()["load_average_1min"]
        rate = medians(in_turns({name: net}, batch_size, steps, rounds))[name]
        rows[name] = {"params": stats.total_params, "mflops": stats.total_flops / 1e6, "images_per_s": rate,
                      "load_average_1min": [before, machine()["load_average_1min"]]}
        print(f"{name:16s} {stats.total_params:>11,} params {stats.total_flops / 1e6:>9,.1f} MFLOPs "
              f"{rate:>8.1f} images/s (load {before:.2f})", flush=True)
    return rows


def versus_hand(batch_size: int, steps: int, rounds: int) -> dict:
    pairs = {"resnet": ResNet18, "mobilenetv2": MobileNetV2}
    results = {}
    for name, reference in pairs.items():
        torch.manual_seed(0)
        variants = {"convzoo": create_model(name), "hand": reference()}
        before = machine()["load_average_1min"]
        rates = in_turns(variants, batch_size, steps, rounds)
        median = medians(rates)
        results[name] = {"images_per_s": rates, "median_images_per_s": median,
                         "ratio": median["convzoo"] / median["hand"],
                         "load_average_1min": [before, machine()["load_average_1min"]]}
        print(f"{name:12s} convzoo {median['convzoo']:7.1f}  hand {median['hand']:7.1f} images/s  "
              f"ratio {median['convzoo'] / median['hand']:.3f}  (windows convzoo {min(rates['convzoo']):.0f}-"
              f"{max(rates['convzoo']):.0f}, hand {min(rates['hand']):.0f}-{max(rates['hand']):.0f})", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table", action="store_true", help="images/s of every zoo classifier")
    parser.add_argument("--versus-hand", action="store_true", help="YAML-built vs hand-written ResNet-18 and MobileNetV2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3, help="steps per timed window")
    parser.add_argument("--rounds", type=int, default=5, help="timed windows per variant")
    args = parser.parse_args()
    if not (args.table or args.versus_hand):
        parser.error("choose --table and/or --versus-hand")
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = {"batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
                "precision": "bf16 autocast", "memory_format": "channels_last"}
    if args.versus_hand:
        result = {**machine(), "settings": settings, "models": versus_hand(args.batch_size, args.steps, args.rounds)}
        (RESULTS / "zoo-versus-hand.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.table:
        result = {**machine(), "settings": settings, "models": table(args.batch_size, args.steps, args.rounds)}
        (RESULTS / "zoo-table.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
