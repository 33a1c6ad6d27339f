"""The short tables at the end of benchmarks/gpu_check.sh: test counts, airbench94's steps, the zoo's images/s.

Printed as Markdown, ready for README's "On a GPU" section.

Usage:
    python benchmarks/gpu_summary.py $OUT/gpu_bench.json $OUT/gpu_tests.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def tests(xml_path: Path) -> None:
    if not xml_path.is_file():
        print(f"tests: no report at {xml_path}")
        return
    cases = ET.parse(xml_path).getroot().iter("testcase")
    outcome: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in cases:
        name = case.get("name")
        if case.find("failure") is not None or case.find("error") is not None:
            outcome["failed"].append(name)
        elif case.find("skipped") is not None:
            outcome["skipped"].append(name)
        else:
            outcome["passed"].append(name)
    print("tests: " + ", ".join(f"{len(names)} {kind}" for kind, names in outcome.items()))
    for name in outcome["failed"]:
        print(f"  FAILED {name}")


def airbench(report: dict) -> None:
    runs = report.get("airbench94")
    if not runs:
        return
    published = runs["published_a100_s"]
    shape = next(runs[key] for key in ("train_compiled", "train_eager") if key in runs)
    print()
    print(f"| airbench94, {shape['steps']} steps of {shape['batch_size']} | steps (s) | first {shape['first_steps']} steps (s) | "
          f"other steps (s) | images/s after the first {shape['first_steps']} | published, A100, 476 steps of 1024 (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("compiled", "eager"):
        for path in ("train", "hand"):
            row = runs.get(f"{path}_{mode}")
            if row:
                label = f"`gpu_fast`{' compile=false' if mode == 'eager' else ''} (train.py's path)" if path == "train" \
                    else f"hand-written loop, {mode}"
                print(f"| {label} | {row['steps_s']:.2f} | {row['first_steps_s']:.2f} | {row['other_steps_s']:.2f} | "
                      f"{row['images_per_s_after_first']:,.0f} | {published[mode]} |")


def zoo(report: dict) -> None:
    rows = report.get("zoo")
    if not rows:
        return
    print()
    print(f"| family (batch {report['settings']['batch_size']}) | variant | params | images/s eager | images/s compiled | compiled / eager (same windows) |")
    print("|---|---|---:|---:|---:|---:|")
    for family, passes in rows.items():
        eager, compiled = passes.get("eager", {}), passes.get("compiled", {})
        names = dict.fromkeys(name.rsplit(" ", 1)[0] for part in (eager, compiled) for name in part.get("images_per_s", {}))
        for name in names:
            e = eager.get("images_per_s", {}).get(f"{name} eager")
            c = compiled.get("images_per_s", {}).get(f"{name} compiled")
            e_beside_c = compiled.get("images_per_s", {}).get(f"{name} eager")  # the same windows' eager rate
            params = (eager.get("params") or compiled.get("params") or {}).get(f"{name} eager")
            print(f"| {family} | {name} | {f'{params:,}' if params else ''} | {f'{e:,.0f}' if e else '-'} | "
                  f"{f'{c:,.0f}' if c else '-'} | {f'{c / e_beside_c:.2f}' if c and e_beside_c else ''} |")
        for key, part in (("eager", eager), ("compiled", compiled)):
            if "skipped" in part or "error" in part:
                print(f"| {family} | ({key}: {part.get('skipped') or part.get('error')[:120]}) | | | | |")


def main() -> None:
    bench, xml_path = Path(sys.argv[1]), Path(sys.argv[2])
    tests(xml_path)
    if not bench.is_file():
        print(f"benchmark: no results at {bench}")
        return
    report = json.loads(bench.read_text())
    print(f"benchmark: {report['device']}, {report['machine']}, {report['date']}, {report['elapsed_s']:.0f} s")
    airbench(report)
    zoo(report)


if __name__ == "__main__":
    main()
