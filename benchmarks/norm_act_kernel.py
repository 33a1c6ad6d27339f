"""The fused BatchNorm + activation kernel alone, this tree's against an earlier revision's.

Times ``convzoo/ops/csrc/norm_act.cpp``'s forward and backward through its C ABI (no autograd, no
allocation: bf16 NHWC tensors made once per case) at the given shapes and activations, for this
tree's kernel and, with ``--against REV``, the kernel of a git revision (its ``csrc/norm_act.cpp``
and ``bf16.h``, built with the same flags; REV must have this tree's C ABI, 5dcae21 or later),
taking turns; medians of the timed calls. ``--march x86-64-v3`` builds them all for AVX2, as on
a machine without AVX-512. The same kernel with ReLU instead of GELU (same passes,
same memory traffic) says what GELU's arithmetic costs.

A case is ``NxCxHxW:act``, ``act`` one of identity, relu, relu6, gelu, silu, with ``-first`` for
an activation before the norm (ConvMixer) and ``+residual`` for a fused skip add.

Usage:
    python benchmarks/norm_act_kernel.py --against 5dcae21
    python benchmarks/norm_act_kernel.py --against 5dcae21 --march x86-64-v3 --output benchmarks/results/norm-act-kernel-avx2.json
    python benchmarks/norm_act_kernel.py --cases 128x24x32x32:relu6,128x256x16x16:gelu-first+residual
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine  # noqa: E402
from convzoo.ops import kernels  # noqa: E402
from convzoo.ops.norm_act import _SIGNATURES, _address, _kernel  # noqa: E402
from convzoo.registry import suggest  # noqa: E402
from convzoo.training.allocator import keep_freed_memory  # noqa: E402

ACTS = {"identity": 0, "relu": 1, "relu6": 2, "gelu": 3, "silu": 4}  # csrc/norm_act.cpp's Act
DEFAULT_CASES = ("128x256x16x16:gelu-first+residual,128x256x16x16:relu-first+residual,"  # ConvMixer; GELU's cost
                 "128x96x32x32:relu6,128x144x16x16:relu6,128x24x32x32:relu6,128x24x32x32:identity,"  # MobileNetV2
                 "1024x64x16x16:gelu,1024x256x8x8:gelu")  # cpu_fast


def parse_case(text: str) -> dict:
    """``"128x256x16x16:gelu-first+residual"`` as a dict; a clear error for anything else."""
    shape_text, _, act_text = text.partition(":")
    residual = act_text.endswith("+residual")
    act_text = act_text.removesuffix("+residual")
    first = act_text.endswith("-first")
    act = act_text.removesuffix("-first")
    try:
        shape = [int(v) for v in shape_text.split("x")]
    except ValueError:
        shape = []
    if len(shape) != 4 or act not in ACTS:
        raise SystemExit(f"--cases: {text!r} is not NxCxHxW:act[-first][+residual] with act one of "
                         f"{', '.join(ACTS)}.{suggest(act, ACTS) if act not in ACTS else ''}")
    return {"name": text, "shape": shape, "act": ACTS[act], "act_first": first, "residual": residual}


def kernel_sources(revision: str | None) -> dict[str, str]:
    """``norm_act.cpp`` and ``bf16.h`` of a git revision, or of this tree for ``None``."""
    sources = {}
    for name in ("norm_act.cpp", "bf16.h"):
        if revision is None:
            sources[name] = (REPO / "convzoo" / "csrc" / name).read_text()
            continue
        shown = subprocess.run(["git", "show", f"{revision}:convzoo/ops/csrc/{name}"], cwd=REPO, capture_output=True,
                               text=True)
        if shown.returncode != 0:
            raise SystemExit(f"--against {revision}: git show failed: {shown.stderr.strip()}")
        sources[name] = shown.stdout
    return sources


def build(sources: dict[str, str], tag: str, march: str | None) -> ctypes.CDLL:
    """The kernel compiled from ``sources`` as convzoo compiles it, for ``-march=<march>`` if given."""
    folder = Path(tempfile.mkdtemp(prefix=f"convzoo-norm-act-{tag}-"))
    for name, text in sources.items():
        (folder / name).write_text(text)
    flags = tuple(f"-march={march}" if march and flag == "-march=native" else flag for flag in kernels.COMPILE_FLAGS)
    library = kernels.build(f"convzoo_norm_act_{tag}", folder / "norm_act.cpp", flags, build_directory=str(folder))
    return kernels.declare(library, _SIGNATURES)


def tensors(case: dict) -> dict[str, torch.Tensor | None]:
    n, c, h, w = case["shape"]
    x = torch.randn(n, c, h, w).bfloat16().contiguous(memory_format=torch.channels_last)
    return {"x": x, "residual": torch.randn_like(x) if case["residual"] else None, "y": torch.empty_like(x),
            "v": torch.empty_like(x) if case["act_first"] else None, "weight": torch.rand(c) + 0.5,
            "bias": torch.randn(c) * 0.1, "stats": torch.empty(3, c), "dy": torch.randn_like(x),
            "dx": torch.empty_like(x), "grads": torch.empty(2, c)}


def time_calls(library: ctypes.CDLL, case: dict, t: dict, calls: int) -> tuple[float, float]:
    """Median seconds of one forward and one backward call, over ``calls`` of each."""
    channels = case["shape"][1]
    rows = t["x"].numel() // channels
    mean, var, invstd = t["stats"].unbind()
    grad_weight, grad_bias = t["grads"].unbind()
    forward, backward = [], []
    for _ in range(calls):
        start = time.perf_counter()
        library.norm_act_forward_bf16(
            t["x"].data_ptr(), _address(t["residual"]), t["y"].data_ptr(), _address(t["v"]), t["weight"].data_ptr(),
            t["bias"].data_ptr(), mean.data_ptr(), var.data_ptr(), invstd.data_ptr(), rows, channels, 1e-5,
            case["act"], int(case["act_first"]))
        middle = time.perf_counter()
        library.norm_act_backward_bf16(
            t["x"].data_ptr(), _address(t["v"]), t["dy"].data_ptr(), t["dx"].data_ptr(), t["weight"].data_ptr(),
            t["bias"].data_ptr(), mean.data_ptr(), invstd.data_ptr(), grad_weight.data_ptr(), grad_bias.data_ptr(),
            rows, channels, case["act"], int(case["act_first"]))
        forward.append(middle - start)
        backward.append(time.perf_counter() - middle)
    return statistics.median(forward), statistics.median(backward)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated NxCxHxW:act[-first][+residual]")
    parser.add_argument("--against", metavar="REV", help="also time this git revision's kernel, in turns")
    parser.add_argument("--march", help="build every variant for this -march (e.g. x86-64-v3: AVX2) instead of native")
    parser.add_argument("--rounds", type=int, default=5, help="turns per case; each times --calls calls")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "norm-act-kernel.json"))
    args = parser.parse_args()
    cases = [parse_case(text) for text in args.cases.split(",")]
    keep_freed_memory()
    if _kernel() is None:
        raise SystemExit("the norm_act kernel does not build here (needs a C++ compiler and ninja)")
    variants = {"this tree": _kernel() if args.march is None else build(kernel_sources(None), "tree", args.march)}
    if args.against:
        variants[args.against] = build(kernel_sources(args.against), args.against.replace("/", "_"), args.march)
    torch.manual_seed(0)
    report = {**machine(), "settings": vars(args), "threads": torch.get_num_threads(), "cases": []}
    for case in cases:
        t = tensors(case)
        for library in variants.values():
            time_calls(library, case, t, 2)  # warm: caches, pages, the OpenMP pool
        seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for turn in range(args.rounds):
            order = list(variants.items())
            for name, library in order if turn % 2 == 0 else reversed(order):
                seconds[name].append(time_calls(library, case, t, args.calls))
        row = {**case, "ms": {name: {"forward": 1e3 * statistics.median(s[0] for s in runs),
                                     "backward": 1e3 * statistics.median(s[1] for s in runs)}
                              for name, runs in seconds.items()}}
        report["cases"].append(row)
        print(f"{case['name']:40s} " + "  ".join(f"{name}: {ms['forward']:.2f} / {ms['backward']:.2f} ms"
                                               for name, ms in row["ms"].items()), flush=True)
    report["load_average_1min_end"] = machine()["load_average_1min"]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nforward / backward ms, bf16 NHWC, {torch.get_num_threads()} threads, medians of {args.rounds} turns of "
          f"{args.calls} calls; {report['machine']}, load {report['load_average_1min']:.2f} -> "
          f"{report['load_average_1min_end']:.2f}\nwrote {args.output}")


if __name__ == "__main__":
    main()
