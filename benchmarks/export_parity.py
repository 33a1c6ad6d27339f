"""Parity of every shipped model config and graph example in every export format, at shipped size.

For each ``configs/model/*.yaml`` and ``examples/*.yaml`` this builds the network at its shipped
size, gives it the state training leaves (data-dependent layers fitted and batch-norm statistics
computed on 256 random images, with torch's ``update_bn``: a fresh network's identity statistics
would hide normalisation from the check and shrink some outputs to ~1e-5), then does what
``python -m convzoo export ... --format F`` does: export, load the artifact back and compare it with
the eager network on a random batch of 3 (onnxruntime for ONNX). It reports the max absolute
difference and the output scale (max |eager output|); the command's pass mark is
``1e-5 + 1e-4 * scale`` (see ``convzoo.deploy.export``).

Usage:
    python benchmarks/export_parity.py              # ~2 minutes on 2 cores
Writes benchmarks/results/export-parity.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import date
from pathlib import Path

import onnxruntime
import torch
from torch.optim.swa_utils import update_bn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import machine  # noqa: E402
from convzoo.config import compose, config_dir  # noqa: E402
from convzoo.deploy import deploy_info  # noqa: E402
from convzoo.deploy.export import EXPORT_FORMATS, PARITY_ATOL, PARITY_RTOL, check_parity, export_model  # noqa: E402
from convzoo.network.build import build_model  # noqa: E402
from convzoo.weight_init import apply_data_init  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "export-parity.json")
    args = parser.parse_args()
    sources = [(f"model={p.stem}", lambda p=p: compose([f"model={p.stem}"]).model)
               for p in sorted((config_dir() / "model").glob("*.yaml"))]
    sources += [(f"examples/{p.name}", lambda p=p: p) for p in sorted((REPO / "examples").glob("*.yaml"))]
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, spec in sources:
            net = build_model(spec())
            images = torch.randn(256, net.in_channels, *net.input_size, generator=torch.Generator().manual_seed(0))
            apply_data_init(net, images)
            update_bn([images], net)
            net.eval()
            info = deploy_info(net, classes=[str(i) for i in range(net.num_classes or 0)])
            row = {"source": label, "outputs": list(net.outputs), "parameters": sum(p.numel() for p in net.parameters())}
            for fmt, suffix in EXPORT_FORMATS.items():
                parity = check_parity(net, export_model(net, Path(folder) / f"net{suffix}", fmt, info), fmt)
                row[fmt] = {"max_abs_diff": parity.max_abs_diff, "scale": parity.scale, "ok": parity.ok}
            rows.append(row)
            print(f"{label}: " + ", ".join(f"{fmt} {row[fmt]['max_abs_diff']:.2g}" for fmt in EXPORT_FORMATS), flush=True)
    result = {
        "date": date.today().isoformat(),
        "machine": f"{machine()['machine']}, onnxruntime {onnxruntime.__version__}",
        "load_average_1min": [load_before, os.getloadavg()[0]],
        "tolerance": f"{PARITY_ATOL:g} + {PARITY_RTOL:g} x scale",
        "results": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| source | outputs | scale | onnx | torch.export | TorchScript |\n|---|---|---:|---:|---:|---:|")
    for row in rows:
        diffs = " | ".join(f"{row[fmt]['max_abs_diff']:.1e}" for fmt in EXPORT_FORMATS)
        print(f"| `{row['source']}` | {', '.join(row['outputs'])} | {row['onnx']['scale']:.2g} | {diffs} |")


if __name__ == "__main__":
    main()
