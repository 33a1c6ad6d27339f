"""Which precision and memory format to train each block family in, measured on this machine.

For a stack of ``--depth`` blocks of each family at CIFAR-like sizes, times forward + backward
(median of ``--repeats`` after warm-up) in fp32 / bf16 autocast x NCHW / channels_last and prints
images/s, so presets can pick their defaults from numbers rather than folklore.

    python benchmarks/precision.py                      # all families
    python benchmarks/precision.py --families convmixer --batch-size 64
Writes benchmarks/results/precision.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import median_seconds  # noqa: E402
from convzoo import build_model  # noqa: E402

FAMILIES = {  # (channels, spatial size, layer spec) chosen to match where the family sits in the shipped models
    "conv": (64, 16, {"block": "conv", "out_channels": 64}),
    "conv_norm_act": (64, 16, {"block": "conv_norm_act", "out_channels": 64}),
    "separable": (128, 16, {"block": "separable", "out_channels": 128, "norm": "batchnorm", "act": "relu"}),
    "convmixer": (256, 16, {"block": "convmixer", "kernel_size": 5}),
}
SETTINGS = [("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)]


def images_per_second(family: str, bf16: bool, channels_last: bool, batch: int, depth: int, repeats: int) -> float:
    channels, size, layer = FAMILIES[family]
    model = build_model({"in_channels": channels, "input_size": size, "layers": [{**layer, "repeat": depth}]})
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    x = torch.randn(batch, channels, size, size).to(memory_format=fmt)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        out.float().mean().backward()

    return batch / median_seconds(step, repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {}
    print(f"| block (x{args.depth}) | " + " | ".join(f"{p} {'NHWC' if cl else 'NCHW'}" for p, cl in SETTINGS) + " | bf16 NHWC / fp32 NCHW |")
    print("|---|" + "---:|" * (len(SETTINGS) + 1))
    for family in args.families.split(","):
        row = {f"{p}_{'nhwc' if cl else 'nchw'}": images_per_second(family, p == "bf16", cl, args.batch_size,
                                                                    args.depth, args.repeats)
               for p, cl in SETTINGS}
        results[family] = row
        speedup = row["bf16_nhwc"] / row["fp32_nchw"]
        print(f"| {family} | " + " | ".join(f"{v:,.0f}" for v in row.values()) + f" | {speedup:.1f}x |", flush=True)
    output = REPO / "benchmarks" / "results" / "precision.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"batch_size": args.batch_size, "depth": args.depth, "images_per_s": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
