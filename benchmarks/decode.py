"""How fast an image folder is decoded into tensors (data=image_folder), by decoding threads.

Writes ``--images`` photo-sized JPEGs (smooth gradients plus noise, ``--width`` x ``--height``,
quality 90) to a temporary folder, then times :func:`convzoo.data.decode_images` (TorchCodec decode,
RGB, resize to ``--size`` with centre crop) with 1 thread and with every core, median of
``--repeats``, and prints images/s. Note the machine load: on a shared machine the numbers are
only indicative.

    python benchmarks/decode.py                         # 400 images of 500x375 -> 64x64
    python benchmarks/decode.py --images 1000 --size 128
Writes benchmarks/results/decode.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from convzoo.data import decode_images  # noqa: E402


def write_jpegs(folder: Path, count: int, width: int, height: int) -> list[str]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    paths = []
    for i in range(count):
        base = np.stack([(x * (i % 7 + 1)) % 256, (y * (i % 5 + 1)) % 256, (x + y + 13 * i) % 256], axis=-1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    results = {"images": args.images, "source": f"{args.width}x{args.height} JPEG q90", "size": args.size,
               "cores": cores, "loadavg_before": load_before, "images_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_jpegs(Path(tmp), args.images, args.width, args.height)
        decode_images(paths[:8], args.size, progress=False)  # warm-up: library loading, thread pool
        for workers in sorted({1, cores}):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                decode_images(paths, args.size, num_workers=workers, progress=False)
                times.append(time.perf_counter() - start)
            rate = args.images / statistics.median(times)
            results["images_per_s"][f"{workers} thread{'s' * (workers > 1)}"] = round(rate, 1)
            print(f"{workers} thread(s): {rate:,.0f} images/s (median of {args.repeats})")
    results["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3] if load_before else None
    out = REPO / "benchmarks" / "results" / "decode.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"load {load_before} -> {results['loadavg_after']}; wrote {out}")


if __name__ == "__main__":
    main()
