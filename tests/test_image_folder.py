"""Your own images (convzoo.data.image_folder, ImageFolderDataModule) on real files the tests write:
PNG, JPEG and BMP of mixed sizes in RGB, grayscale, RGBA and palette modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from convzoo.data import (
    CorruptDataError,
    DataNotFoundError,
    ImageFolderDataModule,
    channel_stats,
    decode_images,
    load_image_folder,
    scan_image_folder,
)
from convzoo.registry import ConfigError

# Each class has its own colour, so a decoded image shows which folder it came from.
COLOURS = {"bird": (0, 0, 255), "cat": (255, 0, 0), "dog": (128, 128, 128)}
# (PIL mode, file suffix, width, height): every class gets every variant.
VARIANTS = [
    ("RGB", "png", 40, 30),
    ("RGB", "jpg", 50, 50),
    ("L", "png", 24, 60),
    ("L", "jpeg", 70, 20),
    ("RGBA", "png", 33, 33),
    ("P", "png", 16, 16),
    ("RGB", "bmp", 20, 25),
    ("RGB", "png", 64, 48),
]


def write_image(path: Path, mode: str, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    image = Image.new("RGB", size, colour)
    if mode == "L":
        image = image.convert("L")  # grey stays grey; other colours become their luminance
    elif mode == "RGBA":
        image = image.convert("RGBA")
        image.putalpha(100)  # translucent: the alpha channel is dropped, the colour kept
    elif mode == "P":
        image = image.convert("P")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95) if path.suffix in (".jpg", ".jpeg") else image.save(path)


def write_split(folder: Path, copies: int = 1) -> int:
    count = 0
    for name, colour in COLOURS.items():
        for copy in range(copies):
            for index, (mode, suffix, width, height) in enumerate(VARIANTS):
                if mode == "L" and name != "dog":
                    mode = "RGB"  # grayscale only for the grey class, so colours stay exact
                write_image(folder / name / f"{copy}_{index}.{suffix}", mode, (width, height), colour)
                count += 1
    return count


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    write_split(root / "train", copies=2)   # 48 images
    write_split(root / "val")               # 24
    return root


def mean_colours(images: torch.Tensor) -> torch.Tensor:
    return images.float().mean(dim=(2, 3))


def test_decodes_every_mode_and_size_into_rgb_tensors(folder: Path) -> None:
    data = load_image_folder(folder, image_size=16, test_size=6)
    assert data.classes == ("bird", "cat", "dog")  # train/'s folders, sorted (ImageFolder's order)
    assert data.train_images.shape == (42, 3, 16, 16) and data.train_images.dtype == torch.uint8
    assert data.test_images.shape == (6, 3, 16, 16) and data.val_images.shape == (24, 3, 16, 16)
    images = torch.cat([data.train_images, data.test_images, data.val_images])
    labels = torch.cat([data.train_labels, data.test_labels, data.val_labels])
    expected = torch.tensor([COLOURS[data.classes[label]] for label in labels], dtype=torch.float32)
    # PNG/BMP (RGB, L, RGBA, P) are exact; JPEG within a few levels
    assert (mean_colours(images) - expected).abs().max() <= 4
    assert torch.bincount(labels).tolist() == [24, 24, 24]


def test_lossless_files_decode_exactly(tmp_path: Path) -> None:
    paths = []
    for mode, colour in [("RGB", (255, 0, 0)), ("L", (128, 128, 128)), ("RGBA", (0, 0, 255)), ("P", (0, 255, 0))]:
        paths.append(str(tmp_path / f"{mode}.png"))
        write_image(Path(paths[-1]), mode, (37, 23), colour)
    images = decode_images(paths, [12, 20], progress=False)
    assert images.shape == (4, 3, 12, 20)
    assert images[:, :, 0, 0].tolist() == [[255, 0, 0], [128, 128, 128], [0, 0, 255], [0, 255, 0]]
    assert all(torch.equal(image, image[:, :1, :1].expand_as(image)) for image in images)


def test_center_crop_keeps_the_middle_and_stretch_squeezes_all(tmp_path: Path) -> None:
    # 64 wide x 32 high: green | red (the middle half) | blue
    image = Image.new("RGB", (64, 32), (255, 0, 0))
    image.paste((0, 255, 0), (0, 0, 16, 32))
    image.paste((0, 0, 255), (48, 0, 64, 32))
    path = tmp_path / "bands.png"
    image.save(path)
    cropped = decode_images([str(path)], 16, resize="center_crop", progress=False)[0]
    stretched = decode_images([str(path)], 16, resize="stretch", progress=False)[0]
    red = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    # antialiasing blends only the outermost columns with the neighbouring bands
    assert torch.equal(cropped[:, :, 1:-1], red.expand(3, 16, 14))
    assert stretched[:, 8, 0].tolist() == [0, 255, 0] and stretched[:, 8, -1].tolist() == [0, 0, 255]
    assert torch.equal(stretched[:, :, 6:10], red.expand(3, 16, 4))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a phone photo taken upright
    path = tmp_path / "photo.jpg"
    image.save(path, exif=exif)
    # at its displayed size (20 wide, 40 high) the decoder returns it unresized
    from convzoo.data.image_folder import _decode_one

    assert _decode_one(str(path), (40, 20), "center_crop").shape == (3, 40, 20)


def test_without_val_and_test_folders_they_are_held_out(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    write_split(root, copies=2)  # class folders directly under root: 48 images

    def module(seed: int) -> ImageFolderDataModule:
        dm = ImageFolderDataModule(root=str(root), image_size=8, val_size=0.25, test_size=0.125, seed=seed,
                                   batch_size=8)
        dm.setup()
        return dm

    a, b = module(0), module(1)
    assert (len(a.train_images), len(a.val_images), len(a.test_images)) == (32, 10, 6)
    assert torch.equal(a.test_images, b.test_images)  # the test set is the folder's, whatever the seed
    assert not torch.equal(a.val_images, b.val_images)  # the val split follows the seed
    keys = [{row.numpy().tobytes() + bytes([int(y)]) for row, y in zip(x.flatten(1), labels)}
            for x, labels in [(a.train_images, a.train_labels), (a.val_images, a.val_labels),
                              (a.test_images, a.test_labels)]]
    assert sum(map(len, keys)) <= 48


def test_statistics_come_from_the_training_images_unless_given(folder: Path) -> None:
    dm = ImageFolderDataModule(root=str(folder), image_size=16, test_size=6)
    assert dm.train_transform is None  # not known before the images are
    dm.setup()
    mean, std = channel_stats(dm.train_images)
    assert dm.mean == mean and dm.std == std and dm.eval_transform.mean == mean
    pixels = dm.train_images.double().div(255)
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), pixels.mean(dim=(0, 2, 3)))
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), pixels.permute(1, 0, 2, 3).flatten(1).std(1, correction=0))
    normalised = dm.eval_transform(dm.train_images)
    assert normalised.mean(dim=(0, 2, 3)).abs().max() < 1e-4 and (normalised.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3
    given = ImageFolderDataModule(root=str(folder), image_size=16, test_size=6, mean=[0.5] * 3, std=[0.25] * 3)
    given.setup()
    assert given.mean == (0.5, 0.5, 0.5) and given.train_transform.normalize.std == (0.25, 0.25, 0.25)
    assert given.describe()["classes"] == ["bird", "cat", "dog"]


@pytest.mark.parametrize("mean, std", [([0.5] * 3, None), ([0.5] * 2, [0.2] * 2), ([0.5] * 3, [0.2, 0.0, 0.2])])
def test_bad_statistics_are_config_errors(mean, std) -> None:
    with pytest.raises(ConfigError, match="give both, as three numbers in \\[0, 1\\] units with std > 0"):
        ImageFolderDataModule(root="x", mean=mean, std=std)


@pytest.mark.parametrize("override, message", [
    ({"image_size": [16]}, "data.image_size must be a positive int or \\[height, width\\]"),
    ({"resize": "squash"}, "data.resize='squash' is not known; use one of center_crop, stretch"),
])
def test_bad_options_are_config_errors(override, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ImageFolderDataModule(root="x", **override)


def test_missing_root_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=f"image folder not found: {tmp_path / 'nowhere'} does not exist"):
        load_image_folder(tmp_path / "nowhere")


def test_empty_class_folder_names_it(folder: Path) -> None:
    (folder / "train" / "fish").mkdir()
    with pytest.raises(DataNotFoundError) as info:
        scan_image_folder(folder)
    message = str(info.value)
    assert f"class folder {folder / 'train' / 'fish'} holds no images" in message and "\n" not in message


def test_folder_without_class_folders_or_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataNotFoundError, match=f"no class folders in {tmp_path}"):
        scan_image_folder(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.txt").write_text("still no images")
    with pytest.raises(DataNotFoundError, match=f"class folder {tmp_path / 'cat'} holds no images"):
        scan_image_folder(tmp_path)


def test_unreadable_image_names_the_file(folder: Path) -> None:
    bad = folder / "train" / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.raises(CorruptDataError) as info:
        load_image_folder(folder, image_size=8, test_size=6, num_workers=2)
    assert f"image {bad} could not be decoded" in str(info.value) and "Delete or replace" in str(info.value)
    truncated = folder / "train" / "dog" / "cut.jpg"
    write_image(truncated, "RGB", (64, 64), (1, 2, 3))
    truncated.write_bytes(truncated.read_bytes()[:100])
    bad.unlink()
    with pytest.raises(CorruptDataError, match=f"image {truncated} could not be decoded"):
        load_image_folder(folder, image_size=8, test_size=6)


def test_val_class_unknown_to_train_is_named(folder: Path) -> None:
    write_image(folder / "val" / "fish" / "0.png", "RGB", (8, 8), (1, 1, 1))
    with pytest.raises(CorruptDataError, match=f"{folder / 'val'} has class folder\\(s\\) fish that"):
        scan_image_folder(folder)


def test_split_folders_without_train_are_refused(tmp_path: Path) -> None:
    write_split(tmp_path / "val")
    with pytest.raises(DataNotFoundError, match="has val/ or test/ but no train/ folder"):
        scan_image_folder(tmp_path)


def test_test_size_that_leaves_nothing_is_refused(folder: Path) -> None:
    with pytest.raises(ConfigError, match="data.test_size .*must be in \\[0, 48\\)"):
        load_image_folder(folder, image_size=8, test_size=48)
    with pytest.raises(ConfigError, match="data.test_size=0 leaves no test images"):
        load_image_folder(folder, image_size=8, test_size=0)


@pytest.mark.slow
def test_train_py_on_an_image_folder(folder: Path, tmp_path: Path) -> None:
    from test_training import run_train_py

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = run_train_py(run_dir, "data=image_folder", f"data.root={folder}", "data.image_size=24",
                          "data.test_size=6", "data.batch_size=16", "data.augment.crop_padding=2",
                          "model=convmixer_tiny", "model.dim=16", "model.depth=1", "trainer.max_epochs=2")
    output = result.stdout + result.stderr
    assert "model.num_classes: 10 -> 3" in output and "model.input_size: 32 -> 24" in output
    assert output.count("GPU available") == 1  # Lightning's messages once, not again through Hydra's logging
    data = json.loads((run_dir / "data.json").read_text())
    assert data["classes"] == ["bird", "cat", "dog"] and data["input_shape"] == [3, 24, 24]
    assert data["sizes"] == {"train": 42, "val": 24, "test": 6}
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert list(hparams["classes"]) == data["classes"] and list(hparams["input_mean"]) == data["mean"]
    assert hparams["model"]["num_classes"] == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 <= metrics["test/acc"] <= 1
