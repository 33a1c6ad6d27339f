"""convzoo on a GPU: training speed of the zoo against timm / torchvision, and airbench94's 476 steps.

Two parts, in one process, on synthetic CIFAR-shaped data (no data set has to travel):

1. ``airbench94``: the ``gpu_fast`` preset's 476 steps of batch 1024 through the real training path
   (``convzoo.training.train``: Lightning, the data held and augmented on the GPU), compiled and
   eager, and the same steps in a hand-written PyTorch loop (``benchmarks/throughput.py``'s
   ``hand_loop``: same network, data module, optimizer and precision, no Lightning), next to the
   published times of airbench94.py on an A100 (3.83 s; 3.09 s for airbench94_compiled.py). The
   times are the training steps' (synchronised clock from the first step to the last); the
   whitening fit, start-up and test are outside them, as in airbench's own timer.
2. ``zoo``: every zoo classifier at its default size, trained on random batches (bf16 autocast,
   channels-last, SGD; ``benchmarks/common.py``'s ``in_turns``), eager and ``torch.compile``d,
   taking turns with the same network from torchvision or timm where one exists (adapted to
   CIFAR's 32x32 input as convzoo's config is: 3x3 stride-1 stem, no max-pool) and with the
   hand-written references of ``benchmarks/reference_nets.py``. Each variant's parameter count is
   recorded, so a peer that is only close to convzoo's network (torchvision's MobileNetV2) shows it.

Everything has a time budget (``--budget-s``): the airbench part runs first, then every family
eager, then the compiled variants family by family while time remains; what did not fit is
recorded as skipped. The JSON is rewritten after every part, so a run stopped by its limit still
leaves what it measured.

Usage:
    python benchmarks/gpu_bench.py --out $OUT/gpu_bench.json            # on the GPU (benchmarks/gpu_check.sh)
    python benchmarks/gpu_bench.py --cpu-practice --out /tmp/gpu_bench.json   # every step, tiny, on the CPU
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import in_turns, machine, medians, synchronize  # noqa: E402
from benchmarks.reference_nets import MobileNetV2, ResNet18  # noqa: E402
from benchmarks.throughput import hand_loop, network_and_data  # noqa: E402
from convzoo import create_model, list_models  # noqa: E402
from convzoo.config import compose  # noqa: E402

# airbench94's published times for its 9.9 epochs (476 steps of 1024) on one A100: README of
# github.com/KellerJordan/cifar10-airbench (airbench94.py 3.83 s; airbench94_compiled.py 3.09 s).
PUBLISHED_A100_S = {"eager": 3.83, "compiled": 3.09}
AIRBENCH_STEPS = 476
FIRST_STEPS = 10  # the steps that compile (torch.compile) and autotune (cuDNN); timed apart from the rest


class FitClock(L.Callback):
    """Synchronised clock readings of one fit: before its first step, after step ``FIRST_STEPS``, after its last."""

    last: FitClock | None = None

    def __init__(self):
        self.start = self.after_first = self.end = None
        FitClock.last = self

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        synchronize(module.device)
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args) -> None:
        if trainer.global_step == FIRST_STEPS:
            synchronize(module.device)
            self.after_first = time.perf_counter()

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        synchronize(module.device)
        self.end = time.perf_counter()


def split_times(start: float, after_first: float, end: float, steps: int, batch_size: int) -> dict:
    return {"steps": steps, "batch_size": batch_size, "steps_s": end - start, "first_steps": FIRST_STEPS,
            "first_steps_s": after_first - start, "other_steps_s": end - after_first,
            "images_per_s_after_first": (steps - FIRST_STEPS) * batch_size / (end - after_first)}


def airbench_config(practice: bool, compiled: bool, output_dir: str):
    """The gpu_fast preset on 50,000 synthetic training images (practice: a CPU-sized cut of it)."""
    overrides = ["experiment=gpu_fast", "data=synthetic", "data.val_size=0", f"compile={str(compiled).lower()}",
                 "test=false", "callbacks.progress_bar.refresh_rate=48"]
    if practice:
        overrides += ["trainer=cpu", "data.num_train=2048", "data.num_test=64", "data.batch_size=256",
                      "model.width_multiplier=0.25", "data_init_images=256", f"trainer.max_steps={FIRST_STEPS + 2}"]
    else:
        overrides += ["data.num_train=50000", "data.num_test=2000"]
    cfg = compose(overrides)
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.paths.output_dir = output_dir
    return cfg, overrides


def airbench(practice: bool, device: torch.device, workdir: Path) -> dict:
    """gpu_fast's steps through train() and through the hand-written loop, compiled and eager."""
    from omegaconf import open_dict

    from convzoo.training import train

    results = {"published_a100_s": PUBLISHED_A100_S}
    for compiled in (True, False):
        mode = "compiled" if compiled else "eager"
        cfg, overrides = airbench_config(practice, compiled, str(workdir / f"train-{mode}"))
        steps = cfg.trainer.max_steps
        with open_dict(cfg):
            cfg.callbacks.fit_clock = {"_target_": "__main__.FitClock"}
        started = time.perf_counter()
        train(cfg)
        clock = FitClock.last
        results[f"train_{mode}"] = {"overrides": overrides, "whole_run_s": time.perf_counter() - started,
                                    **split_times(clock.start, clock.after_first, clock.end, steps, cfg.data.batch_size)}
        cfg, _ = airbench_config(practice, compiled, str(workdir / f"hand-{mode}"))
        model, datamodule = network_and_data(cfg)
        synchronize(device)
        start = time.perf_counter()
        times = hand_loop(cfg, model, datamodule, steps, str(device), synchronize_after=(FIRST_STEPS - 1, steps - 1))
        results[f"hand_{mode}"] = split_times(start, times[FIRST_STEPS - 1], times[-1], steps, cfg.data.batch_size)
        results[f"train_over_hand_{mode}"] = results[f"train_{mode}"]["steps_s"] / results[f"hand_{mode}"]["steps_s"]
        del model, datamodule
        _release(device)
        print(f"airbench94 {mode:8s}: train() {results[f'train_{mode}']['steps_s']:6.2f} s "
              f"(first {FIRST_STEPS} steps {results[f'train_{mode}']['first_steps_s']:.2f} s), hand loop "
              f"{results[f'hand_{mode}']['steps_s']:6.2f} s (first {FIRST_STEPS} {results[f'hand_{mode}']['first_steps_s']:.2f} s); "
              f"published A100 {PUBLISHED_A100_S[mode]} s", flush=True)
    return results


def _cifar_stem(net: nn.Module, conv: str, pool: str | None) -> nn.Module:
    """An ImageNet network's stem made CIFAR's: 3x3 stride-1 conv (same width), max-pool removed."""
    old = net.get_submodule(conv)
    net.set_submodule(conv, nn.Conv2d(old.in_channels, old.out_channels, 3, 1, 1, bias=old.bias is not None))
    if pool:
        net.set_submodule(pool, nn.Identity())
    return net


def _torchvision_resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return _cifar_stem(resnet18(num_classes=10), "conv1", "maxpool")


def _torchvision_mobilenet_v2() -> nn.Module:
    from torchvision.models import mobilenet_v2

    net = mobilenet_v2(num_classes=10)
    net.features[0][0].stride = (1, 1)      # CIFAR: stride-1 stem ...
    net.features[2].conv[1][0].stride = (1, 1)  # ... and the 24-channel stage at full resolution, as convzoo's config
    return net


def _torchvision_densenet_bc100() -> nn.Module:
    from torchvision.models import DenseNet

    net = DenseNet(growth_rate=12, block_config=(16, 16, 16), num_init_features=24, bn_size=4, num_classes=10)
    return _cifar_stem(net, "features.conv0", "features.pool0")


def _torchvision_vgg16_bn() -> nn.Module:
    from torchvision.models.vgg import cfgs, make_layers

    # torchvision's VGG-16-BN feature extractor with CIFAR's head (global pool, one linear layer)
    return nn.Sequential(make_layers(cfgs["D"], batch_norm=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10))


def _timm_convmixer(dim: int, depth: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from timm.models.convmixer import ConvMixer

        return ConvMixer(dim=dim, depth=depth, kernel_size=5, patch_size=2, num_classes=10)

    return build


def _timm_convnext_cifar() -> nn.Module:
    from timm.models.convnext import ConvNeXt

    return ConvNeXt(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), patch_size=2, num_classes=10, drop_path_rate=0.1)


# Per zoo family: the same network from another library (or written by hand), where one exists.
PEERS: dict[str, dict[str, Callable[[], nn.Module]]] = {
    "resnet": {"torchvision": _torchvision_resnet18, "hand": ResNet18},
    "mobilenetv2": {"torchvision": _torchvision_mobilenet_v2, "hand": MobileNetV2},
    "densenet": {"torchvision": _torchvision_densenet_bc100},
    "vgg": {"torchvision": _torchvision_vgg16_bn},
    "convmixer": {"timm": _timm_convmixer(256, 8)},
    "convmixer_tiny": {"timm": _timm_convmixer(128, 4)},
    "convnext_cifar": {"timm": _timm_convnext_cifar},
}


def _release(device: torch.device) -> None:
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def zoo_families(only: list[str] | None) -> list[str]:
    families = [name for name in list_models() if create_model(name).feature_info.reduction() == [None]]  # no U-Net
    if only:
        unknown = sorted(set(only) - set(families))
        if unknown:
            raise SystemExit(f"--families: {', '.join(unknown)} not among the zoo's classifiers ({', '.join(families)})")
        families = [name for name in families if name in only]
    # the families with a peer first: the compiled pass covers them before its budget runs out
    return sorted(families, key=lambda name: name not in PEERS)


def zoo_variants(family: str, compiled: bool) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """convzoo's network and its peers, eager (and compiled copies when ``compiled``); the peers that could not be built."""
    torch.manual_seed(0)
    built, skipped = {"convzoo": create_model(family)}, {}
    for source, build in PEERS.get(family, {}).items():
        try:
            built[source] = build()
        except ImportError as error:  # timm is on the GPU machine, maybe not here
            skipped[source] = f"not installed: {error.name}"
    variants = {}
    for name, net in built.items():
        variants[f"{name} eager"] = net
        if compiled:
            variants[f"{name} compiled"] = torch.compile(copy.deepcopy(net))
    return variants, skipped


def zoo(args: argparse.Namespace, device: torch.device, deadline: float, report: dict, save: Callable[[], None]) -> None:
    """Every family eager (against its peers), then compiled while the budget lasts."""
    families = zoo_families(args.families)
    rows = report.setdefault("zoo", {})
    for compiled in (False, True):
        for family in families:
            key = "compiled" if compiled else "eager"
            if compiled and args.compile_families is not None and family not in args.compile_families:
                continue
            left = deadline - time.perf_counter()
            if left < (args.compile_reserve_s if compiled else 10):
                rows.setdefault(family, {})[key] = {"skipped": f"out of time ({left:.0f} s of the budget left)"}
                continue
            variants, skipped = zoo_variants(family, compiled)
            params = {name: sum(p.numel() for p in net.parameters()) for name, net in variants.items()}
            started = time.perf_counter()
            try:
                rates = in_turns(variants, args.batch_size, args.steps, args.rounds, warmup=args.warmup, device=device)
            except Exception as error:  # noqa: BLE001 -- one family failing (a compile error) must not lose the others
                rows.setdefault(family, {})[key] = {"error": f"{type(error).__name__}: {error}"[:2000]}
                print(f"{family:16s} {key}: {type(error).__name__}: {str(error)[:300]}", flush=True)
            else:
                median = medians(rates)
                rows.setdefault(family, {})[key] = {
                    "images_per_s": median, "windows": rates, "params": params, "peers_skipped": skipped,
                    "vs_convzoo_eager": {name: rate / median["convzoo eager"] for name, rate in median.items()},
                    "seconds": time.perf_counter() - started}
                print(f"{family:16s} {key:8s} " + "  ".join(f"{name} {rate:,.0f}" for name, rate in median.items())
                      + " images/s" + (f"  (skipped: {skipped})" if skipped else ""), flush=True)
            del variants
            _release(device)
            save()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/convzoo-gpu-check/gpu_bench.json"))
    parser.add_argument("--cpu-practice", action="store_true",
                        help="run every step on the CPU, tiny: airbench cut to a few steps, seven zoo families at batch 8")
    parser.add_argument("--budget-s", type=float, default=240, help="stop starting new measurements after this")
    parser.add_argument("--compile-reserve-s", type=float, default=45,
                        help="budget a family's compiled pass needs left to start")
    parser.add_argument("--families", nargs="*", default=None, help="zoo families to time (default: all classifiers)")
    parser.add_argument("--compile-families", nargs="*", default=None, help="of those, the ones to compile (default: all)")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed window")
    parser.add_argument("--rounds", type=int, default=5, help="timed windows per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, cuDNN autotuning)")
    parser.add_argument("--skip-airbench", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    deadline = started + args.budget_s
    if args.cpu_practice:
        device = torch.device("cpu")
        args.batch_size, args.steps, args.rounds, args.warmup = 8, 1, 2, 1
        # one family per peer builder, and one compiled (~30 s a network on 2 cores): every path, briefly
        args.families = args.families or ["plain", "resnet", "mobilenetv2", "densenet", "vgg", "convmixer_tiny", "convnext_cifar"]
        if args.compile_families is None:
            args.compile_families = ["plain"]
        args.compile_reserve_s = 0  # practice runs every path, whatever the load of the machine
    elif not torch.cuda.is_available():
        raise SystemExit("gpu_bench: torch sees no CUDA GPU; run it on one, or practise with --cpu-practice")
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True  # as trainer=gpu: fixed shapes
        torch.set_float32_matmul_precision("high")
    report = {**machine(), "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (practice)",
              "cpu_practice": args.cpu_practice,
              "settings": {"batch_size": args.batch_size, "steps": args.steps, "rounds": args.rounds,
                           "warmup": args.warmup, "budget_s": args.budget_s, "precision": "bf16 autocast",
                           "memory_format": "channels_last"}}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_s"] = time.perf_counter() - started
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    if not args.skip_airbench:
        # the runs' directories (checkpoints, logs) stay out of the output folder: only the JSON comes back
        report["airbench94"] = airbench(args.cpu_practice, device, Path(tempfile.mkdtemp(prefix="convzoo-gpu-bench-")))
        save()
    zoo(args, device, deadline, report, save)
    save()
    print(f"wrote {args.out} ({report['elapsed_s']:.0f} s)")


if __name__ == "__main__":
    main()
