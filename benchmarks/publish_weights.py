"""Turn a finished recipe run into shipped zoo weights: a safetensors file, its manifest entry and its record.

    python benchmarks/publish_weights.py --run-dir /tmp/convzoo-resnet20_cifar10-seed0-dec05-xyz \\
        --label resnet20_cifar10-seed0-dec05 --name resnet20 --model resnet_cifar --overrides depth=20

The run must be one of ``benchmarks/timed_run.py``'s (its record, ``benchmarks/results/runs/<label>/record.json``,
gives the command, wall time, machine and date) that kept per-epoch checkpoints
(``checkpoints/epochs/``). The script

1. loads the final weights (``checkpoints/last.ckpt``: the presets test the final weights, never a chosen
   epoch) into the zoo model built from ``--model`` and ``--overrides`` (strict: they must fit);
2. measures single-view accuracy on the full official test set in fp32 and after a round trip through
   fp16; the file is stored in fp16 only if its test accuracy equals fp32's, else in fp32;
3. writes ``convzoo/pretrained/<name>-<tag>.safetensors`` and its entry in ``convzoo/pretrained/manifest.json``
   (sha256, size, data, normalisation, accuracies, command, wall time, machine, date);
4. re-evaluates every epoch checkpoint on the test set (single view) for the time-to-accuracy curve -- for
   the curve only: nothing is chosen by it -- and writes ``benchmarks/results/pretrained/<name>-<tag>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convzoo.config import override_key, override_value  # noqa: E402
from convzoo.data.cifar10 import load_cifar10  # noqa: E402
from convzoo.deploy.checkpoint import load_checkpoint  # noqa: E402
from convzoo.deploy.evaluate import evaluate  # noqa: E402
from convzoo.network.pretrained import MANIFEST, WEIGHTS_DIR, sha256  # noqa: E402
from convzoo.network.weights import load_weights  # noqa: E402
from convzoo.network.zoo import create_model  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def parse_overrides(items: list[str]) -> dict:
    return {override_key(item): override_value(item) for item in items}


def accuracy(net: torch.nn.Module, data, info) -> float:
    return evaluate(net, data.test_images, data.test_labels, info.mean, info.std, data.classes).top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--label", required=True, help="timed_run.py's label of the run")
    parser.add_argument("--name", required=True, help="the weight set's short name (torch.hub entry): resnet20")
    parser.add_argument("--model", required=True, help="the zoo model: resnet_cifar")
    parser.add_argument("--overrides", nargs="*", default=[], help="its top-level overrides: depth=20")
    parser.add_argument("--tag", default="cifar10")
    parser.add_argument("--data", default=os.environ.get("CONVZOO_DATA", "data"))
    args = parser.parse_args()

    record = json.loads((RESULTS / "runs" / args.label / "record.json").read_text())
    metrics = json.loads((RESULTS / "runs" / args.label / "metrics.json").read_text())
    config = (args.run_dir / ".hydra" / "config.yaml").read_text()
    tta = next((line.split(":", 1)[1].strip() for line in config.splitlines() if line.strip().startswith("tta:")), "none")
    data = load_cifar10(args.data)
    overrides = parse_overrides(args.overrides)

    trained, info = load_checkpoint(args.run_dir / "checkpoints" / "last.ckpt")
    net = create_model(args.model, **overrides).eval()
    load_weights(net, trained.state_dict(), strict=True)
    single_view = accuracy(net, data, info)
    half_state = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    half_net = create_model(args.model, **overrides).eval()
    load_weights(half_net, half_state, strict=True)
    half_view = accuracy(half_net, data, info)
    dtype = "float16" if half_view == single_view else "float32"
    print(f"single view: fp32 {100 * single_view:.2f}%, from fp16 weights {100 * half_view:.2f}% -> stored as {dtype}")

    from safetensors.torch import save_file

    WEIGHTS_DIR.mkdir(exist_ok=True)
    file = f"{args.name}-{args.tag}.safetensors"
    state = half_state if dtype == "float16" else net.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(WEIGHTS_DIR / file),
              metadata={"model": args.model, "overrides": json.dumps(overrides), "tag": args.tag})
    entry = {
        "name": args.name, "model": args.model, "overrides": overrides, "tag": args.tag, "file": file,
        "sha256": sha256(WEIGHTS_DIR / file), "size_bytes": (WEIGHTS_DIR / file).stat().st_size, "dtype": dtype,
        "dataset": "cifar10", "classes": list(data.classes), "mean": list(info.mean), "std": list(info.std),
        "test_acc": round(single_view, 4), "recipe_test_acc": round(metrics["test/acc"], 4), "tta": tta,
        "command": record["command"], "train_wall_s": record["wall_s"], "machine": record["machine"],
        "date": record["date"][:10], "run": args.label,
    }
    manifest_path = WEIGHTS_DIR / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"weights": []}
    manifest["weights"] = [e for e in manifest["weights"] if (e["name"], e["tag"]) != (args.name, args.tag)] + [entry]
    manifest["weights"].sort(key=lambda e: (e["model"], e["name"], e["tag"]))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    started = datetime.fromisoformat(record["date"]).timestamp()
    resumed = record.get("resumed")  # a killed run continued: the pause before it is no training time
    resumed_at = datetime.fromisoformat(resumed["at"]).timestamp() if resumed else float("inf")
    curve = []
    for checkpoint in sorted((args.run_dir / "checkpoints" / "epochs").glob("*.ckpt")):
        epoch_net, epoch_info = load_checkpoint(checkpoint)
        written = checkpoint.stat().st_mtime
        if written > resumed_at:
            written -= resumed["paused_s"]
        curve.append({"epoch": len(curve) + 1, "elapsed_s": round(written - started, 1),
                      "test_acc": round(accuracy(epoch_net, data, epoch_info), 4)})
        print(f"epoch {curve[-1]['epoch']}: {curve[-1]['elapsed_s'] / 60:.1f} min, {100 * curve[-1]['test_acc']:.2f}%",
              flush=True)  # each evaluation takes minutes on a CPU: show it as it goes
    out = RESULTS / "pretrained" / f"{args.name}-{args.tag}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({**entry, "images_per_s": record["images_per_s"], "load_1min_max": record["load_1min_max"],
                               **{k: record[k] for k in ("disturbed", "note") if record.get(k)},
                               "curve": curve}, indent=2) + "\n")
    print(f"wrote {WEIGHTS_DIR / file}, {manifest_path}, {out}")


if __name__ == "__main__":
    main()
