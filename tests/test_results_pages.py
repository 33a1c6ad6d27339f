"""The results pages (benchmarks/report.py): every row names its machine and date, and a record without a
machine stops the build, naming its file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.common import cpu

DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _rows(text: str) -> list[tuple[list[str], list[str]]]:
    """(header cells, row cells) of every Markdown table row in ``text``."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if header is None:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            rows.append((header, cells))
    return rows


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return report.build()


def test_every_row_names_a_machine_and_a_date(pages):
    for path, text in pages.items():
        rows = _rows(text)
        assert rows or path.endswith("index.md"), f"{path} has no table"
        for header, cells in rows:
            if "not measured" in cells:
                continue
            where = f"{path}: {' | '.join(cells)}"
            machine = next(cell for name, cell in zip(header, cells) if "machine" in name)
            assert re.search(r"[A-Za-z].*\d+ (v?CPUs|cores)", machine), f"no machine in {where}"
            assert re.search(r"AVX|AMX|bf16", machine), f"the machine's vector features are not named in {where}"
            assert DATE.search(" ".join(cells)), f"no date in {where}"


def test_pages_start_with_the_generated_note_and_keep_their_anchors(pages):
    for text in pages.values():
        assert text.startswith(report.NOTE.format(source="benchmarks/results/"))
    index = pages["docs/results/index.md"]
    for heading in ("## Presets", "## ConvMixer", "## Zoo weights", "## Accuracy against wall time"):
        assert f"\n{heading}\n" in index
    assert "(time_to_accuracy.png)" in index
    assert "not measured" in pages["docs/_snippets/convmixer-runs.md"]


def test_build_is_deterministic(pages):
    assert report.build() == pages


def test_readme_table():
    table = report.readme_table()
    rows = _rows(table)
    assert 1 <= len(rows) <= report.README_ROWS
    assert all(DATE.search(cells[-1]) for _, cells in rows)


def test_readme_table_refuses_rows_past_its_bound_rather_than_dropping_them(tmp_path):
    results = _copy(tmp_path)
    shipped = sorted((results / "pretrained").glob("*.json"))
    record = json.loads(shipped[0].read_text())
    for copy in range(report.README_ROWS):
        (results / "pretrained" / f"copy{copy}-{shipped[0].name}").write_text(json.dumps({**record, "name": f"copy{copy}"}))
    with pytest.raises(report.ResultsError, match=r"README's results table would have \d+ rows, more than README_ROWS"):
        report.readme_table(results)


def _copy(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results, ignore=shutil.ignore_patterns("*.png", "*.log"))
    return results


def test_a_record_without_a_machine_fails_the_build_naming_the_file(tmp_path):
    results = _copy(tmp_path)
    path = results / "graph-overhead.json"
    record = json.loads(path.read_text())
    del record["machine"]
    path.write_text(json.dumps(record))
    with pytest.raises(report.ResultsError, match="graph-overhead.json has no 'machine'"):
        report.build(results)


def test_a_jsonl_line_without_a_machine_fails_naming_file_and_line(tmp_path):
    results = _copy(tmp_path)
    path = results / "time_to_accuracy.jsonl"
    lines = path.read_text().splitlines()
    record = json.loads(lines[2])
    del record["machine"]
    path.write_text("\n".join([*lines[:2], json.dumps(record), *lines[3:]]) + "\n")
    with pytest.raises(report.ResultsError, match=r"time_to_accuracy.jsonl line 3 has no 'machine'"):
        report.build(results)


def test_a_run_folder_without_a_record_or_machine_fails(tmp_path):
    results = _copy(tmp_path)
    (results / "runs" / "convmixer_cpu-seed0-dec05" / "machine.json").unlink()
    with pytest.raises(report.ResultsError, match="convmixer_cpu-seed0-dec05 has neither record.json nor machine.json"):
        report.build(results)


def test_a_weight_set_renders_its_times_to_accuracy_and_the_published_training(tmp_path):
    results = _copy(tmp_path)
    (results / "pretrained").mkdir(exist_ok=True)
    record = {"name": "resnet20", "model": "resnet_cifar", "overrides": {"depth": 20}, "tag": "cifar10",
              "dtype": "float16", "size_bytes": 545_000, "test_acc": 0.9012, "recipe_test_acc": 0.9034, "tta": "flip",
              "command": "python train.py experiment=resnet20_cifar10", "train_wall_s": 3725.0,
              "machine": "AMD EPYC (family 23), 2 vCPUs, AVX2, no AVX-512, no bf16, no AMX", "date": "2026-12-05",
              "run": "resnet20_cifar10-seed0-dec05", "images_per_s": [900.0, 950.0, 940.0], "load_1min_max": 2.1,
              "curve": [{"epoch": 1, "elapsed_s": 600.0, "test_acc": 0.71}, {"epoch": 2, "elapsed_s": 1200.0, "test_acc": 0.86},
                        {"epoch": 3, "elapsed_s": 1800.0, "test_acc": 0.89}]}
    (results / "pretrained" / "resnet20-cifar10.json").write_text(json.dumps(record))
    pages = report.build(results)
    index = pages["docs/results/index.md"]
    assert "| 20 min 00 s (epoch 2) | not reached | 90.12% | 90.34% |" in index
    assert "He et al. 2016, Table 6 (ResNet-20): 91.25% after 182 epochs (64k iterations at batch 128) on GPUs" in index
    assert "chenyaofo/pytorch-cifar-models (ResNet-20): 92.60% after 200 epochs on one GTX 1080, 50 min (best" in index
    assert "(zoo_time_to_accuracy.png)" in index
    assert "weights `resnet20`" in report.readme_table(results)
    for path, text in pages.items():
        for header, cells in _rows(text):
            assert "not measured" in cells or DATE.search(" ".join(cells)), path
    del record["machine"]
    (results / "pretrained" / "resnet20-cifar10.json").write_text(json.dumps(record))
    with pytest.raises(report.ResultsError, match="resnet20-cifar10.json has no 'machine'"):
        report.build(results)


def test_cpu_names_the_vector_features():
    avx2 = "processor\t: 0\ncpu family\t: 23\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 hypervisor\n\n" \
           "processor\t: 1\ncpu family\t: 23\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 hypervisor\n"
    assert cpu(avx2) == "AMD EPYC (family 23), 2 vCPUs, AVX2, no AVX-512, no bf16, no AMX"
    amx = "processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: avx2 avx512f avx512_bf16 amx_tile\n"
    assert cpu(amx) == "Intel Xeon, 1 CPUs, AVX-512 with bf16, AMX"


def test_run_tables_are_newest_first(pages):
    index = pages["docs/results/index.md"]
    for section in index.split("\n### ")[1:]:
        dates = [cells[-1] for _, cells in _rows(section.split("\n## ")[0])]
        assert dates == sorted(dates, reverse=True), section.splitlines()[0]


def test_one_profile_per_network_and_overrides(pages):
    benchmarks = pages["docs/results/benchmarks.md"]
    section = benchmarks.split("### Where a training step's time goes")[1].split("\n## ")[0]
    keys = [(cells[0], cells[1]) for _, cells in _rows(section)]
    assert keys and len(keys) == len(set(keys))
    assert "`flops-dec05.json`" not in section  # the same day's focused profile run wins over a FLOP table's side profile
