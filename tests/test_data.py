"""Tests for convzoo.data: CIFAR-10 reading, batched augmentation, splits, loaders, data modules."""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convzoo.data import (
    CIFAR10_CLASSES,
    AlternatingFlip,
    BatchAugment,
    CIFAR10DataModule,
    CorruptDataError,
    DataNotFoundError,
    InMemoryLoader,
    Normalize,
    SyntheticDataModule,
    cutout,
    load_cifar10,
    normalize,
    rand_augment,
    random_crop,
    random_flip,
    resize,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "data"
BATCH_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


# -- a tiny fake dataset in the canonical layout ---------------------------------------------------
def write_fake_cifar(root: Path, rows: int = 20, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with ``rows`` images per batch file, like the real pickles."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in BATCH_FILES:
        entry = {
            "batch_label": f"fake {name}",
            "labels": rng.integers(0, 10, rows).tolist(),
            "data": rng.integers(0, 256, (rows, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(rows)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"num_cases_per_batch": rows, "label_names": list(CIFAR10_CLASSES), "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    write_fake_cifar(tmp_path)
    return tmp_path


def test_load_fake_layout(fake_root: Path) -> None:
    data = load_cifar10(fake_root)
    assert data.train_images.shape == (100, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (20, 3, 32, 32)
    assert data.train_labels.dtype == torch.int64 and data.train_labels.shape == (100,)
    assert data.classes == CIFAR10_CLASSES
    # each row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 image
    raw = pickle.loads((fake_root / "cifar-10-batches-py" / "data_batch_2").read_bytes(), encoding="latin1")
    assert np.array_equal(data.train_images[20, 1].numpy(), raw["data"][0, 1024:2048].reshape(32, 32))
    assert data.train_labels[20:40].tolist() == raw["labels"]


def test_root_may_be_the_batches_folder(fake_root: Path) -> None:
    direct = load_cifar10(fake_root / "cifar-10-batches-py")
    assert torch.equal(direct.test_images, load_cifar10(fake_root).test_images)


def test_missing_data_names_path_and_fixes(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10(tmp_path / "nowhere")
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str((tmp_path / "nowhere" / "cifar-10-batches-py").absolute()) in message
    assert "data_batch_1" in message and "test_batch" in message
    assert "data.root=" in message and "CONVZOO_DATA" in message and "data.download=true" in message
    assert "\n" not in message


def test_missing_single_file_is_named(fake_root: Path) -> None:
    (fake_root / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataNotFoundError, match=r"missing data_batch_4\. Fix"):
        load_cifar10(fake_root)


def test_failed_download_reports_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.utils as tv_utils

    def offline(**kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    with pytest.raises(DataNotFoundError, match="Download failed: OSError: no network") as info:
        load_cifar10(tmp_path, download=True)
    assert "data.download=true" in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_is_corrupt_data_error(fake_root: Path) -> None:
    path = fake_root / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match="truncated or corrupt: could not unpickle") as info:
        load_cifar10(fake_root)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and "download it again" in str(info.value)
    assert info.value.__suppress_context__  # no pickle traceback chained underneath


@pytest.mark.parametrize(
    "entry, problem",
    [
        ({"data": np.zeros((20, 100), np.uint8), "labels": [0] * 20}, "expected Nx3072 uint8 data"),
        ({"data": np.zeros((20, 3072), np.float32), "labels": [0] * 20}, "expected Nx3072 uint8 data"),
        ({"data": np.zeros((20, 3072), np.uint8), "labels": [0] * 19}, "20 images but labels"),
        ({"data": np.zeros((20, 3072), np.uint8)}, "missing key"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_malformed_batch_is_corrupt_data_error(fake_root: Path, entry: object, problem: str) -> None:
    path = fake_root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(CorruptDataError, match=problem) as info:
        load_cifar10(fake_root)
    assert str(path) in str(info.value)


class _RunsCode:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_that_would_run_code_is_refused(fake_root: Path, capsys: pytest.CaptureFixture) -> None:
    (fake_root / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({"data": _RunsCode()}, protocol=2))
    with pytest.raises(CorruptDataError, match="unexpected object .*print"):
        load_cifar10(fake_root)
    assert "pwned" not in capsys.readouterr().out


def test_verify_rejects_non_official_files(fake_root: Path) -> None:
    with pytest.raises(CorruptDataError, match="md5 mismatch"):
        load_cifar10(fake_root, verify=True)


# -- real data (CONVZOO_DATA) ---------------------------------------------------------------------
@pytest.mark.cifar10
@pytest.mark.slow
def test_real_cifar10(cifar10_root: Path) -> None:
    dm = CIFAR10DataModule(root=str(cifar10_root))
    dm.setup()
    assert dm.classes == CIFAR10_CLASSES
    assert dm.train_images.shape == (45000, 3, 32, 32) and dm.train_images.dtype == torch.uint8
    assert dm.val_images.shape == (5000, 3, 32, 32)
    assert dm.test_images.shape == (10000, 3, 32, 32)
    all_labels = torch.cat([dm.train_labels, dm.val_labels])
    assert all_labels.min() == 0 and all_labels.max() == 9
    assert torch.bincount(all_labels).tolist() == [5000] * 10
    assert torch.bincount(dm.test_labels).tolist() == [1000] * 10
    # the published channel statistics are what normalize() uses
    pixels = dm.test_images.float().div_(255)
    assert torch.allclose(pixels.mean(dim=(0, 2, 3)), torch.tensor(dm.mean), atol=0.01)


# -- augmentation ---------------------------------------------------------------------------------
def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=_gen(1))


def test_augmentations_keep_shape_and_dtype(batch: torch.Tensor) -> None:
    floats = batch.float()
    for images in (batch, floats):
        for out in (random_crop(images, 4, _gen()), random_crop(images, 4, _gen(), "zeros"),
                    random_flip(images, _gen()), cutout(images, 8, _gen())):
            assert out.shape == images.shape and out.dtype == images.dtype
    out = rand_augment(batch, num_ops=2, magnitude=9, group_size=4)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    with pytest.raises(TypeError, match="uint8"):
        rand_augment(floats)


def test_normalize_values_and_layout(batch: torch.Tensor) -> None:
    mean, std = torch.tensor([0.4914, 0.4822, 0.4465]), torch.tensor([0.2470, 0.2435, 0.2616])
    expected = (batch.float() / 255 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
    out = normalize(batch, channels_last=True)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.allclose(normalize(batch.float() / 255), expected, atol=1e-5)


def test_resize_shrinks_keeps_layout_and_is_identity_at_full_size(batch: torch.Tensor) -> None:
    images = normalize(batch, channels_last=True)
    small = resize(images, 16)
    assert small.shape == (16, 3, 16, 16) and small.is_contiguous(memory_format=torch.channels_last)
    flat = torch.full((2, 3, 32, 32), 0.7)  # the filter's weights sum to 1: a flat image stays flat
    assert torch.allclose(resize(flat, 24), torch.full((2, 3, 24, 24), 0.7))
    ramp = torch.arange(32.0).expand(1, 1, 32, 32)  # a linear ramp stays a ramp, just coarser
    assert torch.allclose(resize(ramp, 16)[0, 0, 0, 1:-1], torch.arange(1.0, 15.0) * 2 + 0.5, atol=1e-4)  # inside the border
    assert resize(images, 32) is images
    augment = BatchAugment(crop_padding=2, size=24)
    assert augment(batch).shape == (16, 3, 24, 24)
    augment.size = None
    assert augment(batch).shape == (16, 3, 32, 32)


def test_random_crop_padding_zero_is_identity(batch: torch.Tensor) -> None:
    assert torch.equal(random_crop(batch, 0, _gen()), batch)


@pytest.mark.parametrize("mode, pad_mode", [("reflect", "reflect"), ("zeros", "constant")])
def test_random_crop_is_a_window_of_the_padded_image(mode: str, pad_mode: str) -> None:
    p, images = 2, torch.rand(32, 3, 8, 8, generator=_gen(2))
    padded = F.pad(images, (p, p, p, p), mode=pad_mode)
    out = random_crop(images, p, _gen(), padding_mode=mode)
    shifts = set()
    for i in range(len(images)):
        matches = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                   if torch.equal(out[i], padded[i, :, dy : dy + 8, dx : dx + 8])]
        assert len(matches) == 1, f"image {i} is not a single window of the padded input"
        shifts.add(matches[0])
    assert len(shifts) > 5  # translations really vary across the batch


def test_random_flip_flips_exactly_the_chosen_images(batch: torch.Tensor) -> None:
    chosen = torch.rand(len(batch), generator=_gen(3)) < 0.5
    assert 0 < chosen.sum() < len(batch)
    out = random_flip(batch, _gen(3))
    assert torch.equal(out[chosen], batch[chosen].flip(-1))
    assert torch.equal(out[~chosen], batch[~chosen])


def test_cutout_zeroes_one_square_per_image() -> None:
    out = cutout(torch.ones(64, 3, 32, 32), 8, _gen())
    zero = out == 0
    assert torch.equal(zero, zero[:, :1].expand_as(zero))  # same square in every channel
    for mask in zero[:, 0]:
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert len(rows) <= 8 and len(cols) <= 8 and int(mask.sum()) == len(rows) * len(cols)
    assert zero.any(dim=(1, 2, 3)).all()


def test_batch_augment_is_reproducible_and_separate_from_eval(batch: torch.Tensor) -> None:
    train = BatchAugment(crop_padding=4, flip=True, cutout=8, channels_last=True)
    first, again, other = train(batch, _gen(5)), train(batch, _gen(5)), train(batch, _gen(6))
    assert first.dtype == torch.float32 and first.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, Normalize(channels_last=True)(batch))
    plain = BatchAugment(crop_padding=0, flip=False, cutout=0)
    assert torch.equal(plain(batch), Normalize()(batch))
    with pytest.raises(ValueError, match="rand_augment.strength is not known"):
        BatchAugment(rand_augment={"num_ops": 2, "strength": 3})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_augment_on_cuda_with_cpu_generator(batch: torch.Tensor) -> None:
    train = BatchAugment(crop_padding=4, flip=True, cutout=8)
    on_gpu = train(batch.cuda(), _gen(7))
    assert on_gpu.is_cuda
    assert torch.allclose(on_gpu.cpu(), train(batch, _gen(7)), atol=1e-5)


# -- splits, loaders, data modules -----------------------------------------------------------------
def _image_keys(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images.flatten(1)}


def test_split_is_deterministic_disjoint_and_sized() -> None:
    def split(seed: int) -> SyntheticDataModule:
        dm = SyntheticDataModule(num_train=1000, num_test=10, val_size=100, seed=0)
        dm.seed = seed  # same images, only the split seed changes
        dm.setup()
        return dm

    a, b, c = split(0), split(0), split(1)
    assert (len(a.train_images), len(a.val_images)) == (900, 100)  # 45,000 / 5,000 scaled down
    assert torch.equal(a.val_images, b.val_images) and torch.equal(a.train_labels, b.train_labels)
    assert not torch.equal(a.val_images, c.val_images)
    train, val = _image_keys(a.train_images), _image_keys(a.val_images)
    assert len(train) == 900 and len(val) == 100 and not train & val


def test_cifar_split_and_subsets_on_fake_files(fake_root: Path) -> None:
    dm = CIFAR10DataModule(root=str(fake_root), val_size=10, subset=30, test_subset=5)
    dm.setup()
    assert (len(dm.train_images), len(dm.val_images), len(dm.test_images)) == (30, 10, 5)
    dm.setup()  # idempotent
    with pytest.raises(ValueError, match="data.subset=91 must be in"):
        CIFAR10DataModule(root=str(fake_root), val_size=10, subset=91).setup()
    with pytest.raises(ValueError, match="data.val_size=5000 must be in"):
        CIFAR10DataModule(root=str(fake_root)).setup()  # 5000 > 100 fake images


@pytest.mark.parametrize("n, drop_last", [(10, False), (10, True), (11, False), (11, True)])
def test_loader_shards_are_disjoint_equal_and_cover(n: int, drop_last: bool) -> None:
    images, labels = torch.zeros(n, 3, 2, 2, dtype=torch.uint8), torch.arange(n)
    shards = [
        torch.cat([y for _, y in InMemoryLoader(images, labels, 1, shuffle=True, drop_last=drop_last,
                                                seed=3, rank=rank, world_size=2)])
        for rank in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1])
    seen = torch.cat(shards)
    if drop_last:
        assert len(seen) == n // 2 * 2 and len(set(seen.tolist())) == len(seen)  # disjoint, remainder dropped
    elif n % 2 == 0:
        assert sorted(seen.tolist()) == list(range(n))  # disjoint and covering
    else:
        assert set(seen.tolist()) == set(range(n)) and len(seen) == n + 1  # padded by one repeat


def test_loader_length_order_and_epochs() -> None:
    images, labels = torch.zeros(10, 3, 2, 2, dtype=torch.uint8), torch.arange(10)
    for drop_last, expected in ((False, [4, 4, 2]), (True, [4, 4])):
        loader = InMemoryLoader(images, labels, 4, shuffle=True, drop_last=drop_last)
        assert [len(y) for _, y in loader] == expected and len(loader) == len(expected)
    loader = InMemoryLoader(images, labels, 10, shuffle=True, seed=0)
    epoch0 = next(iter(loader))[1]
    assert torch.equal(epoch0, next(iter(loader))[1])  # same epoch, same order
    loader.set_epoch(1)
    epoch1 = next(iter(loader))[1]
    assert not torch.equal(epoch0, epoch1)
    fresh = InMemoryLoader(images, labels, 10, shuffle=True, seed=0, epoch_fn=lambda: 1)
    assert torch.equal(next(iter(fresh))[1], epoch1)  # a resumed run at epoch 1 sees the same order
    assert next(iter(InMemoryLoader(images, labels, 10)))[1].tolist() == list(range(10))


def _fake_trainer(training: bool, rank: int = 0, world_size: int = 1, epoch: int = 0) -> SimpleNamespace:
    strategy = SimpleNamespace(root_device=torch.device("cpu"))
    return SimpleNamespace(training=training, global_rank=rank, world_size=world_size,
                           current_epoch=epoch, strategy=strategy)


def test_datamodule_uses_trainer_rank_epoch_and_transforms() -> None:
    dm = SyntheticDataModule(num_train=160, num_test=40, val_size=32, batch_size=16, augment={"cutout": 8})
    dm.setup()
    dm.trainer = _fake_trainer(training=True, rank=1, world_size=2, epoch=3)
    loader = dm.train_dataloader()
    assert (loader.rank, loader.world_size, len(loader)) == (1, 2, 4)
    expected = InMemoryLoader(dm.train_images, dm.train_labels, 16, shuffle=True, drop_last=True,
                              seed=0, rank=1, world_size=2)
    expected.set_epoch(3)
    assert torch.equal(next(iter(loader))[1], next(iter(expected))[1])

    images, labels = next(iter(dm.val_dataloader()))
    trained, same_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert trained.dtype == torch.float32 and trained.is_contiguous(memory_format=torch.channels_last)
    assert same_labels is labels
    evaluated = normalize(images)
    assert not torch.allclose(trained, evaluated)
    dm.trainer = _fake_trainer(training=False)
    assert torch.allclose(dm.on_after_batch_transfer((images, labels), 0)[0], evaluated)


def test_datamodule_attributes() -> None:
    dm = SyntheticDataModule(num_classes=5)
    assert dm.num_classes == 5 and len(dm.classes) == 5 and dm.input_shape == (3, 32, 32)
    assert CIFAR10DataModule().mean == (0.4914, 0.4822, 0.4465) and CIFAR10DataModule().num_classes == 10
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()


def test_lightning_trainer_runs_on_the_loaders() -> None:
    import lightning as L

    seen: dict[str, list[bool]] = {"train": [], "val": []}

    class Probe(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3 * 32 * 32, 10)

        def training_step(self, batch, batch_idx):
            images, labels = batch
            channels_last = images.is_contiguous(memory_format=torch.channels_last)
            seen["train"].append(images.dtype == torch.float32 and channels_last)
            return F.cross_entropy(self.head(images.flatten(1)), labels)

        def validation_step(self, batch, batch_idx):
            seen["val"].append(batch[0].dtype == torch.float32)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=1,
                        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Probe(), datamodule=SyntheticDataModule(num_train=96, num_test=16, val_size=32, batch_size=16))
    assert seen["train"] == [True, True] and seen["val"] == [True]


# -- configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("cifar10", CIFAR10DataModule), ("synthetic", SyntheticDataModule)])
def test_configs_instantiate(name: str, cls: type, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    monkeypatch.setenv("CONVZOO_DATA", str(tmp_path))
    config = OmegaConf.merge({"seed": 7, "channels_last": True}, {"data": OmegaConf.load(CONFIGS / f"{name}.yaml")})
    dm = instantiate(config.data)
    assert type(dm) is cls and dm.seed == 7 and dm.batch_size == config.data.batch_size
    assert dm.train_transform.crop_padding == 4 and dm.train_transform.flip and dm.channels_last
    if name == "cifar10":
        assert dm.root == str(tmp_path) and dm.val_size == 5000
    else:
        dm.setup()
        assert len(dm.train_images) == 384


def test_alternating_flip_mirrors_each_image_every_other_epoch() -> None:
    images = torch.arange(8 * 3 * 2 * 2, dtype=torch.uint8).view(8, 3, 2, 2)
    loader = InMemoryLoader(images, torch.arange(8), batch_size=8, shuffle=False, transform=AlternatingFlip(8))
    seen = []
    for epoch in range(3):
        loader.set_epoch(epoch)
        batch, _ = next(iter(loader))
        seen.append(torch.tensor([torch.equal(b, i.flip(-1)) and not torch.equal(b, i) for b, i in zip(batch, images)]))
    assert 0 < seen[0].sum() < 8                      # a random half in the first epoch
    assert torch.equal(seen[1], ~seen[0]) and torch.equal(seen[2], seen[0])


def test_alternating_flip_config_moves_flipping_into_the_loader() -> None:
    dm = SyntheticDataModule(num_train=64, num_test=16, val_size=16, batch_size=16, augment={"flip": "alternating"})
    dm.setup()
    assert dm.train_transform.flip == "alternating" and isinstance(dm.train_dataloader().transform, AlternatingFlip)
    assert dm.val_dataloader().transform is None
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    augment = BatchAugment(crop_padding=0, flip="alternating")
    assert torch.equal(augment(images), augment.normalize(images))  # no random flip on top of the loader's


@pytest.mark.slow
def test_importing_the_data_package_leaves_lightning_unimported() -> None:
    import subprocess
    import sys

    code = ("import sys, convzoo.data; assert 'lightning' not in sys.modules, 'imported'; "
            "from convzoo.data import SyntheticDataModule; assert 'lightning' in sys.modules; "
            "print(SyntheticDataModule.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "convzoo.data.datamodule"
