"""CIFAR-100 (data=cifar100) on files the test writes in the exact cifar-100-python format."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from convzoo.data import CIFAR100, CIFAR100DataModule, CorruptDataError, DataNotFoundError, load_cifar
from convzoo.registry import ConfigError

FINE = [f"fine_{i:02d}" for i in range(100)]
COARSE = [f"coarse_{i:02d}" for i in range(20)]


def write_fake_cifar100(root: Path, train_rows: int = 300, test_rows: int = 60, seed: int = 0) -> Path:
    """``root/cifar-100-python/{train,test,meta}`` as the official archive has them (Python-2 pickles)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name, rows in (("train", train_rows), ("test", test_rows)):
        fine = rng.integers(0, 100, rows)
        entry = {
            "filenames": [f"img_{i}.png" for i in range(rows)],
            "batch_label": f"{name}ing batch 1 of 1",
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),
            "data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": FINE, "coarse_label_names": COARSE}, protocol=2))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_fake_cifar100(tmp_path)
    return tmp_path


def test_fine_and_coarse_labels(root: Path) -> None:
    raw = pickle.loads((root / "cifar-100-python" / "train").read_bytes(), encoding="latin1")
    fine = load_cifar(root, CIFAR100)
    assert fine.train_images.shape == (300, 3, 32, 32) and fine.test_images.shape == (60, 3, 32, 32)
    assert fine.classes == tuple(FINE) and fine.train_labels.tolist() == raw["fine_labels"]
    # each row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 image
    assert np.array_equal(fine.train_images[7, 2].numpy(), raw["data"][7, 2048:].reshape(32, 32))
    coarse = load_cifar(root / "cifar-100-python", CIFAR100.with_labels("coarse"))
    assert coarse.classes == tuple(COARSE) and coarse.train_labels.tolist() == raw["coarse_labels"]
    assert torch.equal(coarse.train_images, fine.train_images)


def test_datamodule_splits_and_computes_statistics(root: Path) -> None:
    dm = CIFAR100DataModule(root=str(root), val_size=50, batch_size=32)
    assert dm.num_classes == 100 and dm.train_transform is None  # statistics wait for the images
    dm.setup()
    assert (len(dm.train_images), len(dm.val_images), len(dm.test_images)) == (250, 50, 60)
    pixels = dm.train_images.double().div(255)
    assert torch.allclose(torch.tensor(dm.mean, dtype=torch.float64), pixels.mean(dim=(0, 2, 3)))
    assert dm.eval_transform.mean == dm.mean and dm.train_transform.normalize.std == dm.std
    assert dm.describe()["classes"] == FINE
    assert CIFAR100DataModule(root=str(root), labels="coarse").num_classes == 20
    with pytest.raises(ConfigError, match="data.labels: CIFAR-100 labels must be 'fine' .* or 'coarse'"):
        CIFAR100DataModule(root=str(root), labels="medium")


def test_missing_data_names_folder_files_and_fixes(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_cifar(tmp_path, CIFAR100)
    message = str(info.value)
    assert f"CIFAR-100 not found: looked in {tmp_path / 'cifar-100-python'} (folder does not exist)" in message
    assert "missing train, test, meta" in message and "data.download=true" in message and "169 MB" in message


def test_missing_meta_is_named(root: Path) -> None:
    (root / "cifar-100-python" / "meta").unlink()
    with pytest.raises(DataNotFoundError, match=r"missing meta\. Fix"):
        load_cifar(root, CIFAR100)


def test_malformed_files_are_corrupt_data_errors(root: Path) -> None:
    path = root / "cifar-100-python" / "test"
    entry = pickle.loads(path.read_bytes(), encoding="latin1")
    path.write_bytes(pickle.dumps({**entry, "fine_labels": [100] * 60}, protocol=2))
    with pytest.raises(CorruptDataError, match=f"CIFAR-100 file {path} is malformed: fine_labels outside 0..99"):
        load_cifar(root, CIFAR100)
    del entry["coarse_labels"]
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(CorruptDataError, match="not a CIFAR-100 batch: missing key\\(s\\) coarse_labels"):
        load_cifar(root, CIFAR100.with_labels("coarse"))
    meta = root / "cifar-100-python" / "meta"
    meta.write_bytes(pickle.dumps({"fine_label_names": FINE[:10]}, protocol=2))
    path.write_bytes(pickle.dumps({**entry, "fine_labels": [0] * 60}, protocol=2))
    with pytest.raises(CorruptDataError, match="expected 100 fine_label_names"):
        load_cifar(root, CIFAR100)


def test_download_uses_torchvisions_archive_and_checksum(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils
    from torchvision.datasets import CIFAR100 as TorchvisionCIFAR100

    calls = []

    def fake_download(url: str, download_root: str, md5: str) -> None:
        calls.append((url, md5))
        write_fake_cifar100(Path(download_root))

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_download)
    data = load_cifar(tmp_path, CIFAR100, download=True)
    assert calls == [(TorchvisionCIFAR100.url, TorchvisionCIFAR100.tgz_md5)] and len(data.classes) == 100


def test_verify_checks_the_official_md5s(root: Path) -> None:
    with pytest.raises(CorruptDataError, match="md5 mismatch \\(train, test differ"):
        load_cifar(root, CIFAR100, verify=True)


def test_training_sizes_the_head_to_100_classes(root: Path, tmp_path: Path) -> None:
    from omegaconf import open_dict

    from convzoo.config import compose
    from convzoo.training import train

    cfg = compose(["data=cifar100", f"data.root={root}", "data.val_size=60", "data.batch_size=32",
                   "model=convmixer_tiny", "model.dim=16", "model.depth=1", "debug=fast_dev_run"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    metrics = train(cfg)
    assert cfg.model.num_classes == 100 and 0 <= metrics["test/acc"] <= 1
    assert json.loads((tmp_path / "run" / "data.json").read_text())["classes"] == FINE
