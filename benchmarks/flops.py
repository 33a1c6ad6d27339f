"""FLOP efficiency: this machine's bf16 peak for a conv net's op mix vs each network's sustained
training FLOP/s, and a profile of where a training step's time goes.

Measured in one run, each network in its own process:

1. **peak**: a 4096^3 bf16 GEMM and a large 3x3 conv (256 -> 256 channels, 16x16, batch 128)
   forward + backward under bf16 autocast in channels-last: the best this CPU does on the ops
   these networks are made of;
2. **op-mix ceiling** per network: every conv and linear layer of the network timed alone,
   forward + backward at its own input shape and the preset's batch size; their FLOPs over their
   summed time is what the network would sustain if nothing but its convs cost time;
3. **sustained** per network: images/s of convzoo's real training path (``throughput.py``'s
   convzoo mode: Lightning, batched augmentation, the preset's optimizer and callbacks) times the
   summary's forward FLOPs per image (``torch.utils.flop_counter``) times 3 (forward + backward:
   the usual convention, one forward and two backward GEMMs per layer);
4. ``--profile NAME``: self time of every op over real training steps (``torch.profiler``),
   grouped by what it is (conv forward/backward, batch norm, GELU, casts, optimizer, ...), plus
   the time outside any op (Python, Lightning hooks).

    CONVZOO_DATA=/path/to/cifar10 python benchmarks/flops.py                 # every network
    CONVZOO_DATA=/path/to/cifar10 python benchmarks/flops.py --networks cpu_fast --profile cpu_fast
    CONVZOO_DATA=/path/to/cifar10 python benchmarks/flops.py --networks convmixer --profile convmixer \
        --profile-overrides fast_depthwise=false     # the step without convzoo's depthwise kernels
Writes benchmarks/results/flops.json and prints the README tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import lightning as L
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from throughput import run_worker, window_throughputs  # noqa: E402

from benchmarks.common import machine, median_seconds  # noqa: E402

from convzoo.training.allocator import keep_freed_memory  # noqa: E402

# name -> throughput.py arguments: the presets at their own batch size (airbench94 trains the same
# network as cpu_fast at the same batch); every other model config at its default size, at a batch
# that keeps a step within seconds here (256 for the small nets, less for the large ones).
NETWORKS = {
    "cpu_fast": ["--experiment", "cpu_fast"],
    "cpu_fast_4min": ["--experiment", "cpu_fast_4min"],
    "plain": ["--model", "plain", "--batch-size", "256"],
    "conv_norm_act": ["--model", "conv_norm_act", "--batch-size", "256"],
    "separable": ["--model", "separable", "--batch-size", "256"],
    "convmixer_tiny": ["--model", "convmixer_tiny", "--batch-size", "256"],
    "convmixer": ["--model", "convmixer", "--batch-size", "128"],
    "resnet_cifar": ["--model", "resnet_cifar", "--batch-size", "256"],     # ResNet-20
    "resnet": ["--model", "resnet", "--batch-size", "128"],                 # ResNet-18
    "preact_resnet": ["--model", "preact_resnet", "--batch-size", "128"],
    "se_resnet": ["--model", "se_resnet", "--batch-size", "128"],
    "vgg": ["--model", "vgg", "--batch-size", "128"],                       # VGG-16
    "mobilenetv2": ["--model", "mobilenetv2", "--batch-size", "128"],
    "densenet": ["--model", "densenet", "--batch-size", "64"],              # DenseNet-BC-100
    "wrn": ["--model", "wrn", "--batch-size", "64"],                        # WRN-28-10
    "convnext_cifar": ["--model", "convnext_cifar", "--batch-size", "128"],
}
TIMING = {"warmup": 2, "steps": 3, "windows": 3}  # throughput.py steps: short, the machine is shared

CATEGORIES = [  # (category, substrings of the aten op name); the first match wins
    ("conv backward", ("convolution_backward", "DepthwiseConv2dFunctionBackward")),  # the latter: convzoo.ops.depthwise
    ("conv forward", ("convolution", "DepthwiseConv2dFunction")),
    ("linear", ("addmm", "aten::mm", "matmul", "linear")),
    ("batch norm + activation, fused", ("BatchNormActFunction",)),  # convzoo.ops.norm_act
    ("batch norm", ("batch_norm",)),
    ("activations", ("gelu", "relu", "clamp_min", "threshold_backward", "silu", "hardswish")),
    ("max-pool", ("max_pool",)),
    ("average pool", ("avg_pool",)),
    ("adds (residuals, gradient sums)", ("aten::add",)),
    ("loss", ("cross_entropy", "log_softmax", "nll_loss")),
    ("lookahead (lerp)", ("lerp",)),
    ("optimizer (SGD, foreach)", ("_foreach", "sgd")),
    ("casts and copies", ("copy_", "_to_copy", "aten::to", "clone", "contiguous", "empty_like")),
    ("augmentation and indexing", ("gather", "index", "where", "randperm", "randint", "rand", "flip", "masked",
                                   "pad", "interpolate", "upsample")),
]


def category(op: str) -> str:
    for name, keys in CATEGORIES:
        if any(key in op for key in keys):
            return name
    return "other ops"


def peak(repeats: int) -> dict[str, float]:
    """GFLOP/s of a bf16 GEMM and of a large 3x3 conv forward + backward in bf16 channels-last."""
    a, b = torch.randn(4096, 4096, dtype=torch.bfloat16), torch.randn(4096, 4096, dtype=torch.bfloat16)
    gemm = 2 * 4096**3 / median_seconds(lambda: a @ b, repeats) / 1e9
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(128, 256, 16, 16, dtype=torch.bfloat16).to(memory_format=torch.channels_last).requires_grad_()
    flops = 3 * 2 * 128 * 16 * 16 * 256 * 256 * 9
    return {"gemm_4096_bf16": gemm, "conv3x3_256_fwd_bwd_bf16": flops / median_seconds(lambda: _fwd_bwd(conv, x), repeats) / 1e9}


def _fwd_bwd(layer: nn.Module, x: torch.Tensor) -> None:
    """Forward + backward (input and weight gradients) under bf16 autocast, as inside a network: the
    gradients start afresh, as after ``zero_grad(set_to_none=True)``, not added to the last call's."""
    x.grad = None
    layer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    out.backward(torch.ones_like(out))


def layer_ceiling(model: nn.Module, batch: int, repeats: int) -> dict[str, float]:
    """Each conv/linear alone, forward + backward at its own input shape: FLOPs (x3) over summed time,
    and each layer's own figures (``per_layer``: its module name, input shape, GFLOP and ms)."""
    from torch.utils.flop_counter import FlopCounterMode

    inputs: dict[nn.Module, tuple[int, ...]] = {}
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        inputs.setdefault(module, tuple(args[0].shape))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, model.in_channels, *model.input_size))
    for hook in hooks:
        hook.remove()
    total_flops, total_seconds, per_layer = 0, 0.0, []
    for layer, shape in inputs.items():
        name = names[layer]
        layer = layer.train().to(memory_format=torch.channels_last) if isinstance(layer, nn.Conv2d) else layer.train()
        x = torch.randn(batch, *shape[1:], dtype=torch.bfloat16)  # inside the network activations are bf16
        x = (x.to(memory_format=torch.channels_last) if x.dim() == 4 else x).requires_grad_()
        with FlopCounterMode(display=False) as counter, torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            layer(x)
        flops, seconds = 3 * counter.get_total_flops(), median_seconds(lambda: _fwd_bwd(layer, x), repeats)
        total_flops += flops
        total_seconds += seconds
        per_layer.append({"layer": name, "input": list(x.shape), "gflop": flops / 1e9, "ms": seconds * 1e3})
    return {"layers": len(inputs), "gflop_per_s": total_flops / total_seconds / 1e9, "per_layer": per_layer}


class ProfileSteps(L.Callback):
    """Profiles training steps ``warmup`` .. ``warmup + steps`` with torch.profiler (last instance kept)."""

    last: "ProfileSteps | None" = None

    def __init__(self, warmup: int = 3, steps: int = 5):
        self.warmup, self.steps, self.profiler, self.wall = warmup, steps, None, 0.0
        ProfileSteps.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.profiler.__enter__()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1 and self.profiler is not None:
            self.wall = time.perf_counter() - self.start
            self.profiler.__exit__(None, None, None)


def run_profile(args: argparse.Namespace) -> dict:
    """Worker: a few real training steps of one network under torch.profiler, self time by category."""
    from omegaconf import open_dict

    from convzoo.config import compose
    from convzoo.training import train

    base = NETWORKS[args.profile]
    overrides = [f"experiment={base[1]}"] if base[0] == "--experiment" else [f"model={base[1]}"]
    if "--batch-size" in base:
        overrides.append(f"data.batch_size={base[base.index('--batch-size') + 1]}")
    steps = 3 + args.profile_steps + 1
    cfg = compose(overrides + args.profile_overrides.split() + [f"data.root={args.data}", f"++trainer.limit_train_batches={steps}",
                               "++trainer.limit_val_batches=1", "trainer.max_epochs=1", "test=false"])
    with open_dict(cfg):
        cfg.paths.output_dir = tempfile.mkdtemp(prefix="convzoo-profile-")
        cfg.callbacks.profile = {"_target_": "__main__.ProfileSteps", "warmup": 3, "steps": args.profile_steps}
    train(cfg)
    callback = ProfileSteps.last
    by_category: dict[str, float] = defaultdict(float)
    ops = []
    for event in callback.profiler.key_averages():
        seconds = event.self_cpu_time_total / 1e6
        by_category[category(event.key)] += seconds
        ops.append((event.key, seconds, event.count))
    in_ops = sum(by_category.values())
    by_category["outside ops (Python, Lightning, waits)"] = max(0.0, callback.wall - in_ops)
    ops.sort(key=lambda op: -op[1])
    return {"network": args.profile, "overrides": args.profile_overrides, "steps": args.profile_steps, "batch_size": int(cfg.data.batch_size),
            "wall_s": callback.wall, "categories": dict(by_category),
            "top_ops": [{"op": k, "self_s": s, "calls": c} for k, s, c in ops[:15]]}


def measure_network(name: str, args: argparse.Namespace) -> dict:
    """Summary FLOPs, the op-mix ceiling and the sustained training FLOP/s of one network."""
    from convzoo.config import compose
    from convzoo.network.build import build_model
    from convzoo.network.summary import summary

    base = NETWORKS[name]
    overrides = [f"experiment={base[1]}"] if base[0] == "--experiment" else [f"model={base[1]}"]
    cfg = compose(overrides)
    batch = int(base[base.index("--batch-size") + 1]) if "--batch-size" in base else int(cfg.data.batch_size)
    model = build_model(cfg.model)
    flops = summary(model).total_flops
    ceiling = layer_ceiling(model, batch, args.repeats)
    timing = [item for key, value in TIMING.items() for item in (f"--{key}", str(value))]
    result = run_worker("convzoo", [*base, *timing, "--modes", "convzoo", "--data", args.data])
    images_per_s = statistics.median(window_throughputs(result["times"], batch, TIMING["warmup"], TIMING["steps"]))
    sustained = 3 * flops * images_per_s / 1e9
    return {"batch_size": batch, "mflops_per_image": flops / 1e6, "images_per_s": images_per_s,
            "sustained_gflop_per_s": sustained, "op_mix_ceiling_gflop_per_s": ceiling["gflop_per_s"],
            "layers_alone": ceiling["per_layer"],
            "fraction_of_op_mix": sustained / ceiling["gflop_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated, from {', '.join(NETWORKS)}")
    parser.add_argument("--profile", default=None, help="also profile this network's training steps")
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--profile-overrides", default="", help='config overrides for the profiled run, e.g. "fast_depthwise=false"')
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of each peak/layer measurement")
    parser.add_argument("--data", default=os.environ.get("CONVZOO_DATA", "data"), help="CIFAR-10 root")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "flops.json"))
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)

    if args.worker == "profile":
        print("RESULT " + json.dumps(run_profile(args)))
        return

    report: dict = {"date": date.today().isoformat(), "machine": machine()["machine"],
                    "torch": torch.__version__, "load_start": Path("/proc/loadavg").read_text().split()[:3]}
    keep_freed_memory()  # as train() does: else every large tensor a layer timing makes is page-faulted in anew
    report["peak_gflop_per_s"] = peak(args.repeats)
    print("peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["peak_gflop_per_s"].items()), flush=True)
    report["networks"] = {}
    for name in args.networks.split(","):
        report["networks"][name] = row = measure_network(name, args)
        print(f"{name}: {row['mflops_per_image']:.0f} MFLOPs/image, {row['images_per_s']:.0f} images/s, "
              f"{row['sustained_gflop_per_s']:.0f} GFLOP/s sustained, op-mix ceiling "
              f"{row['op_mix_ceiling_gflop_per_s']:.0f}", flush=True)
    if args.profile:
        command = [sys.executable, __file__, "--worker", "profile", "--profile", args.profile,
                   "--profile-steps", str(args.profile_steps), "--data", args.data,
                   "--profile-overrides", args.profile_overrides]
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"profile failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
        report["profile"] = json.loads(lines[-1][len("RESULT "):])
    # the peak again at the end, and the better of the two: a peak is the best the machine does, and
    # others' load can hide it once (the 3x3 conv measured 700-1,011 GFLOP/s between runs of a day)
    report["peak_gflop_per_s"] = {name: max(value, again) for (name, value), again
                                  in zip(report["peak_gflop_per_s"].items(), peak(args.repeats).values())}
    peak_conv = report["peak_gflop_per_s"]["conv3x3_256_fwd_bwd_bf16"]
    for row in report["networks"].values():
        row["fraction_of_peak"] = row["sustained_gflop_per_s"] / peak_conv
    report["load_end"] = Path("/proc/loadavg").read_text().split()[:3]

    print(f"\nMeasured {report['date']}, {report['machine']}, load {report['load_start'][0]} -> {report['load_end'][0]}; "
          f"peak: bf16 GEMM 4096^3 {report['peak_gflop_per_s']['gemm_4096_bf16']:.0f} GFLOP/s, "
          f"3x3 conv fwd+bwd {peak_conv:.0f} GFLOP/s\n")
    print("| network (batch) | MFLOPs/image (fwd) | images/s | training GFLOP/s (3 x fwd) | op-mix ceiling GFLOP/s "
          "| of conv peak | of op-mix ceiling |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in report["networks"].items():
        print(f"| `{name}` ({row['batch_size']}) | {row['mflops_per_image']:,.0f} | {row['images_per_s']:,.0f} | "
              f"{row['sustained_gflop_per_s']:,.0f} | {row['op_mix_ceiling_gflop_per_s']:,.0f} | "
              f"{row['fraction_of_peak']:.0%} | {row['fraction_of_op_mix']:.0%} |")
    if "profile" in report:
        profile = report["profile"]
        print(f"\nWhere a `{profile['network']}` training step's time goes ({profile['steps']} steps of "
              f"{profile['batch_size']}, {profile['wall_s'] / profile['steps']:.2f} s a step under the profiler):\n")
        print("| what | share |")
        print("|---|---:|")
        for name, seconds in sorted(profile["categories"].items(), key=lambda item: -item[1]):
            print(f"| {name} | {seconds / profile['wall_s']:.1%} |")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
