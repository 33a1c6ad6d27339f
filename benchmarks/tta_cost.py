"""What test-time augmentation costs and buys: one trained checkpoint tested with each TTA mode.

For ``none`` (1 view), ``flip`` (2) and ``flip_translate`` (6, airbench's), times the test pass
over the 10,000 CIFAR-10 test images (bf16 autocast, channels-last, as training runs it) and
reports its accuracy, so a preset can weigh seconds of wall time against accuracy.

    CONVZOO_DATA=/path/to/cifar10 python benchmarks/tta_cost.py outputs/<run>/checkpoints/best.ckpt
Writes benchmarks/results/tta_cost.json (or --output).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convzoo.data import CIFAR10DataModule  # noqa: E402
from convzoo.data.augment import TTA_MODES, tta_views  # noqa: E402
from convzoo.training.module import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("--data", default=os.environ.get("CONVZOO_DATA", "data"), help="CIFAR-10 root")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "tta_cost.json"))
    args = parser.parse_args()

    net = load_model(args.checkpoint).to(memory_format=torch.channels_last)
    data = CIFAR10DataModule(root=args.data, val_size=0, channels_last=True)
    data.setup("test")
    images, labels = data.test_images, data.test_labels
    results = {"checkpoint": args.checkpoint, "load_start": Path("/proc/loadavg").read_text().split()[:3], "modes": {}}
    for mode in TTA_MODES:
        correct, start = 0, time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for first in range(0, len(labels), args.batch_size):
                x = data.eval_transform(images[first:first + args.batch_size])
                views = tta_views(x, mode)
                logits = sum(w * net(v).float() for v, w in views) / sum(w for _, w in views)
                correct += (logits.argmax(1) == labels[first:first + args.batch_size]).sum().item()
        seconds = time.perf_counter() - start
        results["modes"][mode] = {"views": len(tta_views(images[:1].float(), mode)),
                                  "test_acc": correct / len(labels), "seconds": seconds}
        print(f"{mode:15s} {results['modes'][mode]['views']} views  {100 * correct / len(labels):.2f}%  {seconds:.1f} s",
              flush=True)
    results["load_end"] = Path("/proc/loadavg").read_text().split()[:3]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
