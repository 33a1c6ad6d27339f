"""Depthwise convs on this CPU: convzoo's fast path (convzoo.ops.depthwise) against nn.Conv2d's, side by side.

1. ``--ops``: every distinct depthwise layer of the zoo's depthwise families (ConvMixer-256/8,
   MobileNetV2, separable, ConvNeXt-CIFAR) at its input shape and the family's benchmark batch:
   forward, input-gradient and weight-gradient times, bf16 and fp32, NHWC and NCHW. Both
   gradients are timed both ways (torch's ``convolution_backward`` and the fast path's: convzoo's
   kernels, and at stride 1 the input gradient as a forward conv; the fast path is taken only where
   one of convzoo's kernels wins, see ``convzoo.ops.depthwise._own_kernels``); the forward is torch's in
   both paths. Variants take turns, medians.
2. ``--steps``: whole training steps (bf16 autocast, channels-last, SGD; ``benchmarks/common.py``)
   of each family with the fast path on and off, and timm's ConvMixer (same dim, depth, kernel,
   patch; needs ``pip install timm``, the ``bench`` extra) as the external peer, all in turns in one
   process; with the machine's bf16 conv peak (``flops.py``'s) measured in the same run (at its
   start and end, the better of the two).

3. ``--norm-act``: the elementwise share that remains once the depthwise convs are fast: every
   distinct BatchNorm + activation pair of each family (bf16, NHWC, forward + backward) with torch's
   two ops and with convzoo's fused kernel (``convzoo.ops.norm_act``), ConvMixer's also under
   ``torch.compile``; and the classifier's global average pool, ``nn.AdaptiveAvgPool2d`` against
   ``convzoo.ops.global_pool.GlobalAvgPool2d``.
4. ``--breakdown``: where each family's fast-path training step goes, in ms per step: the fused
   pairs and the depthwise convs (forward and backward, by the clock around their autograd
   functions), the rest of the forward and backward (the dense convs, adds, head), the optimizer.
   ``--input-grad-choice``: the same steps with the stride-1 input gradient as a forward conv (the
   fast path's) and as torch's backward kernel, in turns: alone the two are close (``--ops``),
   inside a step the forward conv is the faster.

The fast path of ``--steps`` is both switches on (``fast_depthwise``, ``fused_norm_act``), the
plain one both off; both use the same global pool (``GlobalAvgPool2d``, whose speed ``--norm-act``
shows).

Usage:
    python benchmarks/depthwise.py --ops --norm-act --breakdown --steps     # ~10 minutes on 2 quiet cores
    python benchmarks/depthwise.py --tables benchmarks/results/depthwise.json
Writes benchmarks/results/depthwise.json and prints the README tables.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import in_turns, machine, medians  # noqa: E402
from benchmarks.flops import peak  # noqa: E402
from convzoo import create_model, summary  # noqa: E402
from convzoo.registry import suggest  # noqa: E402
from convzoo.ops.depthwise import _DepthwiseConv2dFunction, _fast_input_grad, _own_kernels, _weight_and_bias_grad, fast_depthwise, fast_depthwise_available  # noqa: E402
from convzoo.ops.global_pool import GlobalAvgPool2d  # noqa: E402
from convzoo.training.allocator import keep_freed_memory  # noqa: E402
from convzoo.ops.norm_act import _BatchNormActFunction, FusingSequential, _norm_and_act, fused_norm_act, run_fusing_norm_act, takes_fused_path  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
#: The columns of the step breakdown's table, ms per step.
BREAKDOWN = ("fused norm + act forward", "depthwise conv forward", "rest of forward", "fused norm + act backward",
             "depthwise conv backward", "rest of backward", "optimizer")
FAMILIES = {"convmixer": 128, "mobilenetv2": 128, "separable": 256, "convnext_cifar": 128}  # flops.py's batches


def depthwise_shapes(name: str, batch: int) -> list[dict]:
    """The distinct depthwise layers of a zoo network: input shape at ``batch``, kernel, stride, padding, dilation."""
    net = create_model(name).eval()
    shapes = []

    def record(layer: nn.Conv2d, args: tuple, output: torch.Tensor) -> None:
        shape = {"input": [batch, *args[0].shape[1:]], "kernel": layer.kernel_size[0], "stride": layer.stride[0],
                 "padding": layer._numeric_padding()[0], "dilation": layer.dilation[0]}
        if shape not in shapes:
            shapes.append(shape)

    hooks = [m.register_forward_hook(record) for m in net.modules()
             if isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels > 1]
    with torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return shapes


def time_in_turns(functions: dict[str, callable], rounds: int) -> dict[str, float]:
    """Median milliseconds of each function, called in turns (order reversed every round)."""
    for function in functions.values():
        function()  # warm-up: oneDNN primitive creation, the allocator
    times: dict[str, list[float]] = {name: [] for name in functions}
    for round_index in range(rounds):
        order = list(functions.items())
        for name, function in order if round_index % 2 == 0 else reversed(order):
            start = time.perf_counter()
            function()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def op_times(shape: dict, dtype: torch.dtype, channels_last: bool, rounds: int) -> dict[str, float]:
    n, c, h, w = shape["input"]
    k, s, p, d = shape["kernel"], shape["stride"], shape["padding"], shape["dilation"]
    x = torch.randn(n, c, h, w, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    weight = torch.randn(c, 1, k, k, dtype=dtype)
    grad_out = torch.randn_like(F.conv2d(x, weight, None, s, p, d, c))
    backward = lambda mask: torch.ops.aten.convolution_backward(  # noqa: E731
        grad_out, x, weight, None, [s, s], [p, p], [d, d], False, [0, 0], c, mask)
    times = time_in_turns({
        "forward": lambda: F.conv2d(x, weight, None, s, p, d, c),
        "input_grad_torch": lambda: backward([True, False, False]),
        "input_grad_convzoo": lambda: _fast_input_grad(grad_out, weight, (h, w), (s, s), (p, p), (d, d)),
        "weight_grad_torch": lambda: backward([False, True, False]),
        "weight_grad_convzoo": lambda: _weight_and_bias_grad(x, grad_out, (k, k), (s, s), (p, p), (d, d)),
    }, rounds)
    times["gflop"] = 2 * n * c * grad_out.shape[2] * grad_out.shape[3] * k * k / 1e9  # one pass
    return times


def ops(families: list[str], rounds: int) -> list[dict]:
    keep_freed_memory()  # else a tensor over glibc's 32 MB mmap limit is page-faulted in anew every call
    rows = []
    for family in families:
        batch = FAMILIES[family]
        for shape in depthwise_shapes(family, batch):
            for dtype in (torch.bfloat16, torch.float32):
                for channels_last in (True, False):
                    times = op_times(shape, dtype, channels_last, rounds)
                    rows.append({"family": family, **shape, "dtype": str(dtype).removeprefix("torch."),
                                 "layout": "NHWC" if channels_last else "NCHW", "ms": times})
                    print(f"{family:14s} {str(shape['input']):20s} k{shape['kernel']} s{shape['stride']} "
                          f"{rows[-1]['dtype']:8s} {rows[-1]['layout']}: fwd {times['forward']:7.2f}  input-grad torch "
                          f"{times['input_grad_torch']:7.2f} convzoo {times['input_grad_convzoo']:7.2f}  weight-grad "
                          f"torch {times['weight_grad_torch']:7.2f} convzoo {times['weight_grad_convzoo']:6.2f} ms", flush=True)
    return rows


class FastKernels(nn.Module):
    """Runs ``net`` with convzoo's CPU kernels (fast depthwise, fused norm + act) on or off, so both
    variants live in one process."""

    def __init__(self, net: nn.Module, enabled: bool):
        super().__init__()
        self.net, self.enabled = net, enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with fast_depthwise(self.enabled), fused_norm_act(self.enabled):
            return self.net(x)


def steps(families: list[str], batch_size: int, steps_per_window: int, rounds: int) -> dict:
    results = {}
    for family in families:
        torch.manual_seed(0)
        variants = {"fast": FastKernels(create_model(family), True), "plain": FastKernels(create_model(family), False)}
        if family == "convmixer":
            from timm.models.convmixer import ConvMixer

            variants["timm"] = ConvMixer(dim=256, depth=8, kernel_size=5, patch_size=2, num_classes=10)
        before = machine()["load_average_1min"]
        rates = in_turns(variants, batch_size, steps_per_window, rounds)
        median = medians(rates)
        flops = 3 * summary(create_model(family)).total_flops
        results[family] = {"images_per_s": rates, "median_images_per_s": median,
                           "fast_over_plain": median["fast"] / median["plain"],
                           "training_gflop_per_s": {k: v * flops / 1e9 for k, v in median.items()},
                           "load_average_1min": [before, machine()["load_average_1min"]]}
        if "timm" in median:
            results[family]["fast_over_timm"] = median["fast"] / median["timm"]
        print(f"{family:14s} " + "  ".join(f"{k} {v:6.1f}" for k, v in median.items()) + " images/s  "
              f"fast/plain {median['fast'] / median['plain']:.2f}"
              + (f"  fast/timm {median['fast'] / median['timm']:.2f}" if "timm" in median else ""), flush=True)
    return results


@contextmanager
def clocked(functions: dict[str, type], totals: dict[str, float]):
    """Adds the wall time of each autograd function's forward and backward to ``totals`` while inside."""
    originals = {}
    for name, function in functions.items():
        for direction in ("forward", "backward"):
            original = originals[function, direction] = getattr(function, direction)

            def timed(*args, _original=original, _key=f"{name} {direction}"):
                start = time.perf_counter()
                try:
                    return _original(*args)
                finally:
                    totals[_key] = totals.get(_key, 0.0) + time.perf_counter() - start

            setattr(function, direction, staticmethod(timed))
    try:
        yield
    finally:
        for (function, direction), original in originals.items():
            setattr(function, direction, staticmethod(original))


def input_grad_choice(families: list[str], batch_size: int, steps: int, rounds: int) -> dict:
    """Whole fast-path steps with the stride-1 input gradient as a forward conv (what the fast path
    runs) and as torch's backward kernel, taking turns: ``depthwise conv backward`` ms and images/s."""
    import convzoo.ops.depthwise as depthwise

    as_conv = depthwise._input_grad_as_conv
    results: dict[str, dict[str, list]] = {}
    try:
        for _ in range(rounds):
            for variant, function in (("forward conv", as_conv), ("torch's backward", lambda *args: None)):
                depthwise._input_grad_as_conv = function
                for family, row in breakdown(families, batch_size, steps, quiet=True).items():
                    entry = results.setdefault(family, {}).setdefault(variant, {"depthwise_backward_ms": [], "images_per_s": []})
                    entry["depthwise_backward_ms"].append(row["ms_per_step"]["depthwise conv backward"])
                    entry["images_per_s"].append(row["images_per_s"])
    finally:
        depthwise._input_grad_as_conv = as_conv
    for family, variants in results.items():
        print(f"{family:14s} " + "  ".join(
            f"{variant}: depthwise backward {statistics.median(v['depthwise_backward_ms']):.1f} ms, "
            f"{statistics.median(v['images_per_s']):.0f} images/s" for variant, v in variants.items()), flush=True)
    return results


def breakdown(families: list[str], batch_size: int, steps: int, quiet: bool = False) -> dict:
    """Where a fast-path training step's time goes (ms per step): the clock around convzoo's own
    autograd functions, the whole forward and backward, the optimizer. ``torch.profiler`` is not
    used: on this machine it inflates these ctypes kernels several-fold (the fused pairs' forward
    read 155 ms a ConvMixer step under it, 35-42 ms by the clock)."""
    keep_freed_memory()  # as train() and --steps: freed activations are reused, not page-faulted in anew
    results = {}
    for family in families:
        torch.manual_seed(0)
        net = create_model(family).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (batch_size,))
        totals: dict[str, float] = {}
        functions = {"fused norm + act": _BatchNormActFunction, "depthwise conv": _DepthwiseConv2dFunction}
        with clocked(functions, totals):
            for step in range(steps + 2):  # two untimed steps first
                if step == 2:
                    totals.clear()
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    loss = F.cross_entropy(net(images).float(), labels)
                middle = time.perf_counter()
                loss.backward()
                end = time.perf_counter()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                totals["whole forward"] = totals.get("whole forward", 0.0) + middle - start
                totals["whole backward"] = totals.get("whole backward", 0.0) + end - middle
                totals["optimizer"] = totals.get("optimizer", 0.0) + time.perf_counter() - end
        ms = {name: 1e3 * seconds / steps for name, seconds in totals.items()}
        for direction in ("forward", "backward"):
            ms[f"rest of {direction}"] = ms[f"whole {direction}"] - sum(
                ms.get(f"{name} {direction}", 0.0) for name in functions)
        results[family] = {"ms_per_step": ms, "images_per_s": batch_size * 1e3 / (
            ms["whole forward"] + ms["whole backward"] + ms["optimizer"])}
        if not quiet:
            print(f"{family:14s} " + "  ".join(f"{k} {v:.1f}" for k, v in ms.items()) + " ms a step", flush=True)
    return results


def print_tables(report: dict) -> None:
    """The README tables: per-layer times (bf16, NHWC: what training runs) and whole training steps."""
    peak_conv = report["peak_gflop_per_s"]["conv3x3_256_fwd_bwd_bf16"]
    print(f"\nMeasured {report['date']}, {report['machine']}, {report['settings']['threads']} threads, load "
          f"{report['load_average_1min']:.2f} -> {report['load_average_1min_end']:.2f}; peak: bf16 GEMM 4096^3 "
          f"{report['peak_gflop_per_s']['gemm_4096_bf16']:.0f} GFLOP/s, 3x3 conv fwd+bwd {peak_conv:.0f} GFLOP/s\n")
    if "ops" in report:
        print("| family | input (N, C, H, W) | k, stride | forward ms | input grad ms, torch / convzoo | "
              "weight grad ms, torch / convzoo |")
        print("|---|---|---|---:|---:|---:|")
        for row in report["ops"]:
            if row["dtype"] != "bfloat16" or row["layout"] != "NHWC":
                continue
            ms = row["ms"]
            n, _, h, w = row["input"]
            own = _own_kernels((row["kernel"], row["kernel"]), (row["stride"], row["stride"]), n * h * w)
            pair = lambda torch_ms, ours_ms, ours: (f"{torch_ms:.2f} / **{ours_ms:.2f}**" if ours  # noqa: E731
                                                    else f"**{torch_ms:.2f}** / {ours_ms:.2f}")
            print(f"| {row['family']} | {', '.join(map(str, row['input']))} | {row['kernel']}, {row['stride']} | "
                  f"{ms['forward']:.2f} | {pair(ms['input_grad_torch'], ms['input_grad_convzoo'], any(own))} | "
                  f"{pair(ms['weight_grad_torch'], ms['weight_grad_convzoo'], own[1])} |")
    if "norm_act" in report:
        print("\n| family | input (N, C, H, W) | pair | torch ms | fused ms | torch / fused |")
        print("|---|---|---|---:|---:|---:|")
        for row in report["norm_act"]["pairs"]:
            pair = f"{row['act']} -> BN" if row["act_first"] else f"BN -> {row['act']}"
            compiled = f" (compiled {row['compiled_ms']:.2f})" if "compiled_ms" in row else ""
            print(f"| {row['family']} | {', '.join(map(str, row['input']))} | {pair} | {row['torch_ms']:.2f}{compiled} | "
                  f"{row['fused_ms']:.2f} | {row['torch_ms'] / row['fused_ms']:.2f}x |")
        for row in report["norm_act"]["pools"]:
            print(f"| {row['family']} | {', '.join(map(str, row['input']))} | global avg pool | {row['adaptive_ms']:.2f} | "
                  f"{row['convzoo_ms']:.2f} | {row['adaptive_ms'] / row['convzoo_ms']:.2f}x |")
    if "breakdown" in report:
        print("\n| family | " + " | ".join(BREAKDOWN) + " | images/s |")
        print("|---|" + "---:|" * (len(BREAKDOWN) + 1))
        for family, row in report["breakdown"].items():
            ms = row["ms_per_step"]
            print(f"| {family} | " + " | ".join(f"{ms.get(name, 0.0):.1f}" for name in BREAKDOWN)
                  + f" | {row['images_per_s']:,.0f} |")
    if "steps" in report:
        print("\n| family (batch " + str(report["settings"]["batch_size"]) + ") | fast path | nn.Conv2d path | timm | "
              "fast / plain | fast / timm | fast: training GFLOP/s, of conv peak |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for family, row in report["steps"].items():
            median = row["median_images_per_s"]
            timm = f"{median['timm']:,.0f}" if "timm" in median else "-"
            versus_timm = f"{row['fast_over_timm']:.2f}x" if "fast_over_timm" in row else "-"
            gflops = row["training_gflop_per_s"]["fast"]
            print(f"| {family} | {median['fast']:,.0f} | {median['plain']:,.0f} | {timm} | {row['fast_over_plain']:.2f}x "
                  f"| {versus_timm} | {gflops:,.0f}, {gflops / peak_conv:.0%} |")


def norm_act_pairs(name: str, batch: int) -> tuple[list[dict], list[list[int]]]:
    """The distinct BatchNorm + activation pairs a zoo network fuses (input shape at ``batch``, the
    activation, its order) and the inputs of its global average pools."""
    net = create_model(name).to(memory_format=torch.channels_last)
    pairs, pools = [], []

    def record_pairs(layers: FusingSequential, args: tuple, output: torch.Tensor) -> None:
        x, modules = args[0], list(layers)
        for first, second in zip(modules, modules[1:]):
            if takes_fused_path(x.detach().requires_grad_(), first, second):
                _, act, act_first = _norm_and_act(first, second)
                pair = {"input": [batch, *x.shape[1:]], "act": type(act).__name__, "act_first": act_first}
                if pair not in pairs:
                    pairs.append(pair)
            x = first(x)

    def record_pool(pool: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if [batch, *args[0].shape[1:]] not in pools:
            pools.append([batch, *args[0].shape[1:]])

    hooks = [m.register_forward_hook(record_pairs) for m in net.modules() if isinstance(m, FusingSequential)]
    hooks += [m.register_forward_hook(record_pool) for m in net.modules() if isinstance(m, GlobalAvgPool2d)]
    net(torch.zeros(2, 3, 32, 32).to(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    return pairs, pools


def elementwise(families: list[str], rounds: int) -> dict:
    """Forward + backward ms of each family's norm + act pairs (torch's two ops vs fused) and global pools."""
    torch.manual_seed(0)
    report = {"pairs": [], "pools": []}
    for family in families:
        pairs, pools = norm_act_pairs(family, FAMILIES[family])
        for pair in pairs:
            act = getattr(nn, pair["act"])()
            norm = nn.BatchNorm2d(pair["input"][1])
            layers = nn.Sequential(act, norm) if pair["act_first"] else nn.Sequential(norm, act)
            x = torch.randn(pair["input"], dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
            x.requires_grad_()
            grad = torch.randn_like(x)

            def step(fused: bool) -> None:
                with fused_norm_act(fused):
                    run_fusing_norm_act(layers, x).backward(grad)

            variants = {"torch_ms": lambda: step(False), "fused_ms": lambda: step(True)}
            if family == "convmixer":
                compiled = torch.compile(layers)
                variants["compiled_ms"] = lambda: compiled(x).backward(grad)
            times = time_in_turns(variants, rounds)
            report["pairs"].append({"family": family, **pair, **times})
            print(f"{family:14s} {str(pair['input']):20s} {pair['act']:5s} {'act->BN' if pair['act_first'] else 'BN->act'}: "
                  + "  ".join(f"{k.removesuffix('_ms')} {v:6.2f}" for k, v in times.items()) + " ms", flush=True)
        for shape in pools:
            x = torch.randn(shape, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
            grad = torch.randn(*shape[:2], 1, 1, dtype=torch.bfloat16)
            adaptive, ours = nn.AdaptiveAvgPool2d(1), GlobalAvgPool2d()
            times = time_in_turns({"adaptive_ms": lambda: adaptive(x).backward(grad),
                                   "convzoo_ms": lambda: ours(x).backward(grad)}, rounds)
            report["pools"].append({"family": family, "input": shape, **times})
            print(f"{family:14s} {str(shape):20s} global avg pool: AdaptiveAvgPool2d {times['adaptive_ms']:6.2f}  "
                  f"GlobalAvgPool2d {times['convzoo_ms']:6.2f} ms", flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", action="store_true", help="per-layer forward / input-grad / weight-grad times")
    parser.add_argument("--steps", action="store_true", help="whole training steps, fast path on vs off vs timm")
    parser.add_argument("--norm-act", action="store_true", help="norm + act pairs and global pools, torch vs convzoo")
    parser.add_argument("--breakdown", action="store_true", help="where a fast-path step's time goes, by the clock")
    parser.add_argument("--input-grad-choice", action="store_true",
                        help="whole steps with the stride-1 input gradient as a forward conv vs torch's backward kernel")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"comma-separated, from {', '.join(FAMILIES)}")
    parser.add_argument("--batch-size", type=int, default=128, help="for --steps")
    parser.add_argument("--steps-per-window", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); 1 gives steadier figures on a machine others load")
    parser.add_argument("--output", default=str(RESULTS / "depthwise.json"))
    parser.add_argument("--tables", metavar="JSON", help="only print the README tables of an earlier run's JSON")
    args = parser.parse_args()
    if args.tables:
        print_tables(json.loads(Path(args.tables).read_text()))
        return
    if not (args.ops or args.steps or args.norm_act or args.breakdown or args.input_grad_choice):
        parser.error("choose --ops, --norm-act, --breakdown, --input-grad-choice and/or --steps")
    families = args.families.split(",")
    for family in families:
        if family not in FAMILIES:
            parser.error(f"--families: unknown family {family!r} (choose from {', '.join(FAMILIES)}).{suggest(family, FAMILIES)}")
    if not fast_depthwise_available():
        raise SystemExit("the fast depthwise kernel does not build here (needs a C++ compiler and ninja)")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    report = {**machine(), "settings": {**vars(args), "threads": torch.get_num_threads()}, "peak_gflop_per_s": peak(args.rounds)}
    print("peak: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in report["peak_gflop_per_s"].items()), flush=True)
    if args.ops:
        report["ops"] = ops(families, args.rounds)
    if args.norm_act:
        report["norm_act"] = elementwise(families, args.rounds)
    if args.breakdown:
        report["breakdown"] = breakdown(families, args.batch_size, 10)
    if args.input_grad_choice:
        report["input_grad_choice"] = input_grad_choice(families, args.batch_size, 8, args.rounds)
    if args.steps:
        report["steps"] = steps(families, args.batch_size, args.steps_per_window, args.rounds)
    # the peak again at the end: a peak is the best the machine does, and others' load can hide it once
    report["peak_gflop_per_s"] = {name: max(value, again) for (name, value), again
                                  in zip(report["peak_gflop_per_s"].items(), peak(args.rounds).values())}
    report["load_average_1min_end"] = machine()["load_average_1min"]
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print_tables(report)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
