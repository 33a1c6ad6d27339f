"""What the graph executor costs: one residual network trained three ways, in one process.

1. ``chain``: the spec as a chain (``residual: true`` layers), built as convzoo 0.1 built it: an
   ``nn.Sequential`` whose ``forward`` is torch's own;
2. ``graph executor``: the very same modules (same weights) run by :class:`convzoo.network.build.GraphNet`'s
   planned ``forward`` (a dict of live tensors, dropped after their last reader);
3. ``graph spec``: the same network written as a graph: each skip an explicit ``add`` layer
   reading two named layers.

Each step is forward + backward + SGD update on random CIFAR-shaped batches, bf16 autocast and
channels-last (the CPU presets' setting). The variants take turns, one timed window each per
round (``benchmarks/common.py``), so drifts in machine load hit all three alike; the median
window per variant is reported.

Usage:
    python benchmarks/graph_overhead.py                 # ~3 minutes on 2 cores
    python benchmarks/graph_overhead.py --rounds 3 --steps 5 --width 32
Writes benchmarks/results/graph-overhead.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import in_turns, machine, medians  # noqa: E402
from convzoo.network.build import ConvNet, GraphNet, build_model  # noqa: E402


def chain_spec(width: int, blocks: int) -> dict:
    """stem, then two stages of ``blocks`` residual conv_norm_act layers (the second at stride 2)."""
    return {"in_channels": 3, "num_classes": 10, "block_defaults": {"act": "relu"}, "layers": [
        {"name": "stem", "block": "conv_norm_act", "out_channels": width},
        {"name": "stage1", "block": "conv_norm_act", "residual": True, "repeat": blocks},
        {"name": "down", "block": "conv_norm_act", "out_channels": 2 * width, "stride": 2},
        {"name": "stage2", "block": "conv_norm_act", "residual": True, "repeat": blocks},
        {"name": "head", "block": "classifier"},
    ]}


def graph_spec(width: int, blocks: int) -> dict:
    """The same network with every skip written as an ``add`` of two named layers."""
    layers = [{"name": "stem", "block": "conv_norm_act", "out_channels": width}]
    previous = "stem"
    for stage, channels in (("stage1", width), ("stage2", 2 * width)):
        if stage == "stage2":
            layers.append({"name": "down", "block": "conv_norm_act", "out_channels": channels, "stride": 2})
            previous = "down"
        for i in range(blocks):
            layers += [{"name": f"{stage}_conv{i}", "block": "conv_norm_act", "from": previous},
                       {"name": f"{stage}_add{i}", "block": "add", "from": [previous, f"{stage}_conv{i}"], "act": "none"}]
            previous = f"{stage}_add{i}"
    layers.append({"name": "head", "block": "classifier"})
    return {"in_channels": 3, "num_classes": 10, "block_defaults": {"act": "relu"}, "layers": layers}


def as_graph(chain: ConvNet) -> GraphNet:
    """The chain's own modules (shared, so the same weights) under the graph executor."""
    modules = OrderedDict(chain.layers.named_children())
    names = list(modules)
    wiring = [(name, (before,)) for name, before in zip(names, ["input", *names[:-1]])]
    return GraphNet(modules, chain.spec, chain.nodes, chain.feature_info, wiring)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=4, help="residual layers per stage")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed window")
    parser.add_argument("--rounds", type=int, default=7, help="timed windows per variant, taken in turns")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "graph-overhead.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    chain = build_model(chain_spec(args.width, args.blocks))
    variants = {
        "chain": chain,
        "graph executor": as_graph(chain),
        "graph spec": build_model(graph_spec(args.width, args.blocks)),
    }
    assert type(variants["chain"]) is ConvNet and type(variants["graph spec"]) is GraphNet
    params = {name: sum(p.numel() for p in net.parameters()) for name, net in variants.items()}
    assert len(set(params.values())) == 1, params
    before = machine()
    rates = in_turns(variants, args.batch_size, args.steps, args.rounds)
    load_before, load_after = before["load_average_1min"], machine()["load_average_1min"]
    median = medians(rates)
    result = {
        **before,
        "load_average_1min": [load_before, load_after],
        "settings": vars(args) | {"out": str(args.out), "params": params["chain"]},
        "images_per_s": rates,
        "median_images_per_s": median,
        "ratio_to_chain": {name: median[name] / median["chain"] for name in variants},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{params['chain']:,} parameters, batch {args.batch_size}, bf16 + channels_last, "
          f"{args.rounds} windows of {args.steps} steps each; load {load_before:.2f} -> {load_after:.2f}")
    for name in variants:
        spread = f"{min(rates[name]):.0f}-{max(rates[name]):.0f}"
        print(f"  {name:15s} {median[name]:7.1f} images/s (windows {spread})   x{median[name] / median['chain']:.3f}")


if __name__ == "__main__":
    main()
