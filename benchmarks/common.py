"""What the in-process benchmarks share: one timed training window, variants timed in turns, the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path

import torch
import torch.nn.functional as F

from convzoo.training.allocator import keep_freed_memory


def cpu(cpuinfo: str | None = None) -> str:
    """The CPU as every result names it: model, logical CPUs and the vector features its speed depends on.

    ``AMD EPYC (family 23), 2 vCPUs, AVX2, no AVX-512, no bf16, no AMX``: the model name and family from
    ``/proc/cpuinfo`` (``cpuinfo``: its text, for tests), vCPUs where the kernel reports a hypervisor, and
    the flags ``avx512f``, ``avx512_bf16`` and ``amx_tile``. Elsewhere (no ``/proc/cpuinfo``) the platform's
    processor name and the CPU count.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    fields: dict[str, str] = {}
    for line in cpuinfo.split("\n\n")[0].splitlines():  # the first logical CPU stands for all
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    name = fields.get("model name") or platform.processor() or platform.machine()
    if fields.get("cpu family") and "family" not in name.lower():
        name += f" (family {fields['cpu family']})"
    count = sum(line.partition(":")[0].strip() == "processor" for line in cpuinfo.splitlines()) or os.cpu_count()
    if "avx512f" in flags:
        vector = "AVX-512 with bf16" if "avx512_bf16" in flags else "AVX-512, no bf16"
    else:
        vector = ("AVX2, " if "avx2" in flags else "no AVX2, ") + "no AVX-512, no bf16"
    return f"{name}, {count} {'vCPUs' if 'hypervisor' in flags else 'CPUs'}, {vector}, {'AMX' if 'amx_tile' in flags else 'no AMX'}"


def machine() -> dict:
    """Date, CPU (``cpu()``), torch version and the load average, for the record beside every number."""
    return {
        "date": date.today().isoformat(),
        "machine": f"{cpu()}, torch {torch.__version__}",
        "load_average_1min": os.getloadavg()[0],
    }


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so a host clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_window(net: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                 labels: torch.Tensor, steps: int) -> float:
    """images/s over ``steps`` training steps: bf16 autocast forward, fp32 loss, backward, SGD update.

    On a GPU the window starts and ends with a synchronisation: the kernels of the steps are
    asynchronous, so without it the clock would time their launch, not their work.
    """
    synchronize(images.device)
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast(images.device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(net(images).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(images.device)
    return steps * len(images) / (time.perf_counter() - start)


def in_turns(variants: Mapping[str, torch.nn.Module], batch_size: int, steps: int, rounds: int,
             warmup: int = 2, on_round: Callable[[int], None] | None = None,
             device: str | torch.device = "cpu") -> dict[str, list[float]]:
    """Train every variant (channels-last, SGD) on the same random batch on ``device``, one window each per round.

    Taking turns means a change in machine load during the run hits every variant alike; the order
    reverses every round, so no variant always runs first (on a cold cache) or right after the same
    other one. Compare the medians of the returned windows.
    """
    keep_freed_memory()  # as train() does by default: the figures are what a training run gets
    device = torch.device(device)
    images = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    optimizers = {}
    for name, net in variants.items():
        net.to(device, memory_format=torch.channels_last).train()
        optimizers[name] = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        train_window(net, optimizers[name], images, labels, warmup)  # oneDNN primitives / cuDNN autotuning, allocator, compilation
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(rounds):
        order = list(variants.items())
        for name, net in order if round_index % 2 == 0 else reversed(order):
            rates[name].append(train_window(net, optimizers[name], images, labels, steps))
        if on_round:
            on_round(round_index)
    return rates


def median_seconds(step: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """The median wall time of ``step()`` over ``repeats`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def medians(rates: Mapping[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(values) for name, values in rates.items()}
