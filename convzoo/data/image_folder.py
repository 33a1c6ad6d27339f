"""Your own images: torchvision's ``ImageFolder`` layout decoded once into uint8 tensors of one size.

The layout is ImageFolder's (``<split>/<class>/<image>``), found with torchvision's own
``find_classes``/``make_dataset``:

```text
root/train/cat/0001.jpg       root/cat/0001.jpg      (no train/: root itself is the training
root/train/dog/0002.png   or  root/dog/0002.png       split, val and test are held out of it)
root/val/...   (optional: else val_size training images are held out, by seed)
root/test/...  (optional: else test_size of train/ is held out, the same for every seed)
```

Every image is decoded by TorchCodec (``decode_image``: JPEG, PNG, WebP; the successor of
torchvision's decoders) or ImageFolder's own PIL loader (BMP, TIFF, PPM/PGM), converted to RGB
(grayscale replicated, alpha dropped), turned upright by its EXIF orientation, resized (shorter side to the target, then the centre cropped; or stretched)
and written into one preallocated (N, 3, H, W) uint8 tensor, in parallel threads.

Examples:
    >>> data = load_image_folder("~/data/flowers", image_size=64)  # doctest: +SKIP
    >>> data.train_images.shape, data.classes  # doctest: +SKIP
    (torch.Size([3303, 3, 64, 64]), ('daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'))
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, make_dataset
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from convzoo.data.cifar10 import CorruptDataError, DataNotFoundError, ImageData
from convzoo.errors import ConfigError

__all__ = [
    "IMAGE_EXTENSIONS",
    "RESIZE_MODES",
    "decode_images",
    "holdout_count",
    "load_image_folder",
    "parse_image_size",
    "scan_image_folder",
]

RESIZE_MODES = ("center_crop", "stretch")
"""How images are brought to one size: the shorter side to the target, then the centre cropped; or stretched."""
SPLITS = ("train", "val", "test")
# libjpeg-turbo/libpng/libwebp through TorchCodec; the rest of what ImageFolder reads goes through PIL.
_CODEC_DECODES = (".jpg", ".jpeg", ".png", ".webp")
# Fixed, so every run on a folder without test/ is tested on the same images whatever its seed.
_TEST_SPLIT_SEED = 0
_PROGRESS_FROM = 1000   # images; smaller folders decode in a moment


IMAGE_EXTENSIONS: tuple[str, ...] = IMG_EXTENSIONS
"""The file extensions read as images (torchvision's ``IMG_EXTENSIONS``, as ImageFolder reads them)."""
_FIX = (
    "set data.root=DIR to a folder holding train/<class>/<image> (optional val/ and test/ beside it) "
    f"or <class>/<image> directly; images are {', '.join(IMAGE_EXTENSIONS)}"
)


def parse_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from an int or a pair, checked.

    Examples:
        >>> parse_image_size(64), parse_image_size([48, 64])
        ((64, 64), (48, 64))
    """
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        size: tuple = (image_size, image_size)
    else:
        size = tuple(image_size) if isinstance(image_size, Sequence) and not isinstance(image_size, str) else ()
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ConfigError(f"data.image_size must be a positive int or [height, width], got {image_size!r}")
    return size  # type: ignore[return-value]


def _samples(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """``(path, label)`` of every image in ``folder/<class>/``; an empty class folder is an error."""
    samples = make_dataset(str(folder), class_to_idx, extensions=IMAGE_EXTENSIONS, allow_empty=True)
    counts = torch.bincount(torch.tensor([label for _, label in samples], dtype=torch.int64),
                            minlength=len(class_to_idx))
    names = list(class_to_idx)
    for name, count in zip(names, counts.tolist()):
        if count == 0 and (folder / name).is_dir():
            raise DataNotFoundError(
                f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
                f"add images to it or remove the folder."
            )
    if not samples:
        raise DataNotFoundError(f"{folder} holds no images in its class folders. Fix: {_FIX}.")
    return samples


def scan_image_folder(root: str | Path) -> tuple[tuple[str, ...], dict[str, list[tuple[str, int]]]]:
    """The class names (train/'s folders, sorted) and ``{split: [(path, label), ...]}`` for the splits present.

    Raises [`DataNotFoundError`][convzoo.errors.DataNotFoundError] for a missing root, no class folders, an empty class folder or a
    split without images, and [`CorruptDataError`][convzoo.errors.CorruptDataError] for a val/test class that train/ lacks.

    Examples:
        >>> scan_image_folder("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.errors.DataNotFoundError: image folder not found: /nonexistent does not exist. Fix: ...
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataNotFoundError(f"image folder not found: {root} does not exist. Fix: {_FIX}.")
    if (root / "train").is_dir():
        folders = {split: root / split for split in SPLITS if (root / split).is_dir()}
    elif any((root / split).is_dir() for split in SPLITS[1:]):
        raise DataNotFoundError(f"{root} has val/ or test/ but no train/ folder. Fix: add {root / 'train'}/<class>/<image>.")
    else:
        folders = {"train": root}
    try:
        classes, class_to_idx = find_classes(str(folders["train"]))
    except FileNotFoundError:
        raise DataNotFoundError(f"no class folders in {folders['train']}. Fix: {_FIX}.") from None
    splits = {}
    for split, folder in folders.items():
        if split != "train":
            try:
                extra = sorted(set(find_classes(str(folder))[0]) - set(classes))
            except FileNotFoundError:
                raise DataNotFoundError(f"no class folders in {folder}. Fix: {_FIX}.") from None
            if extra:
                raise CorruptDataError(
                    f"{folder} has class folder(s) {', '.join(extra)} that {folders['train']} does not have; "
                    f"the classes are train/'s folders: add them there or remove them from {split}/."
                )
        splits[split] = _samples(folder, class_to_idx)
    return tuple(classes), splits


@functools.cache
def _decode_file() -> Callable[[str], Tensor]:
    """TorchCodec's ``decode_image`` (RGB, EXIF orientation applied): torchvision 0.29 deprecated its own
    decoders in its favour. Where TorchCodec cannot load (a torch older than its build), torchvision's."""
    try:
        from torchcodec.decoders import decode_image

        return functools.partial(decode_image, mode="RGB")
    except (ImportError, OSError, RuntimeError):
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_image as torchvision_decode_image

        return functools.partial(torchvision_decode_image, mode=ImageReadMode.RGB, apply_exif_orientation=True)


def _decode_one(path: str, size: tuple[int, int], resize: str) -> Tensor:
    try:
        if path.lower().endswith(_CODEC_DECODES):
            image = _decode_file()(path)
            image = image[0] if image.ndim == 4 else image  # an animated WebP: its first frame
        else:
            image = TF.pil_to_tensor(default_loader(path))  # ImageFolder's own loader: PIL, converted to RGB
    except Exception as error:  # truncated, not an image, unsupported variant: the user needs the file name
        raise CorruptDataError(
            f"image {path} could not be decoded ({type(error).__name__}: {error}). Delete or replace the file."
        ) from None
    height, width = image.shape[-2:]
    if (height, width) == size:
        return image
    if resize == "stretch":
        return TF.resize(image, list(size), antialias=True)
    scale = max(size[0] / height, size[1] / width)  # the shorter side (relative to the target) fits exactly
    covering = [max(size[0], round(height * scale)), max(size[1], round(width * scale))]
    return TF.center_crop(TF.resize(image, covering, antialias=True), list(size))


def decode_images(
    paths: Sequence[str],
    image_size: int | Sequence[int],
    resize: str = "center_crop",
    num_workers: int | None = None,
    progress: bool = True,
    description: str = "decoding",
) -> Tensor:
    """Decode ``paths`` into one uint8 (N, 3, H, W) tensor, in ``num_workers`` threads (default: all cores).

    The decoders and torchvision's resize release the GIL, so threads decode in parallel without the
    pickling and start-up cost of processes. A progress bar shows for 1,000 images or more.

    Examples:
        >>> decode_images([], 32).shape
        torch.Size([0, 3, 32, 32])
    """
    if resize not in RESIZE_MODES:
        raise ConfigError(f"data.resize={resize!r} is not known; use one of {', '.join(RESIZE_MODES)}")
    size = parse_image_size(image_size)
    out = torch.empty(len(paths), 3, *size, dtype=torch.uint8)

    def work(index: int) -> None:
        out[index] = _decode_one(paths[index], size, resize)

    bar = tqdm(total=len(paths), desc=description, unit="img", disable=not progress or len(paths) < _PROGRESS_FROM)
    executor = ThreadPoolExecutor(max_workers=num_workers or os.cpu_count() or 1)
    try:
        for _ in executor.map(work, range(len(paths))):
            bar.update()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)  # a bad file stops the rest from being decoded
        bar.close()
    return out


def holdout_count(size: float | int, n: int, key: str) -> int:
    """How many of ``n`` images ``size`` holds out: a fraction in (0, 1) or a count in [0, n).

    Examples:
        >>> holdout_count(0.1, 45, "data.val_size"), holdout_count(5, 45, "data.val_size")
        (4, 5)
    """
    if isinstance(size, float) and not (0 < size < 1 or size.is_integer()):
        raise ConfigError(f"{key}={size} is neither a fraction in (0, 1) nor a count of images; "
                          f"give e.g. {key}=0.1 or {key}={max(1, round(0.1 * n))}.")
    count = round(size * n) if isinstance(size, float) and 0 < size < 1 else int(size)
    if not 0 <= count < n:
        raise ConfigError(f"{key}={size} must be in [0, {n}) for {n} training images, or a fraction in (0, 1).")
    return count


def _hold_out_test(samples: list[tuple[str, int]], size: float | int) -> tuple[list, list]:
    count = holdout_count(size, len(samples), "data.test_size (without a test/ folder)")
    if count == 0:
        raise ConfigError("data.test_size=0 leaves no test images: add a test/ folder or hold out a fraction of train/")
    order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(_TEST_SPLIT_SEED)).tolist()
    return [samples[i] for i in order[count:]], [samples[i] for i in order[:count]]


def load_image_folder(
    root: str | Path,
    image_size: int | Sequence[int] = 64,
    resize: str = "center_crop",
    test_size: float | int = 0.1,
    num_workers: int | None = None,
    progress: bool = True,
) -> ImageData:
    """Decode an ImageFolder layout (see the module docstring) into [`ImageData`][convzoo.data.cifar10.ImageData].

    Args:
        root: the dataset folder (``train/`` [``val/``] [``test/``], or class folders directly).
        image_size: side (or ``[height, width]``) every image is resized to.
        resize: ``center_crop`` (shorter side to size, centre crop: no distortion) or ``stretch``.
        test_size: without ``test/``, the fraction (or count) of train/ held out as the test set.
        num_workers: decoding threads (default: all cores).
        progress: show a progress bar for large folders.

    Raises:
        DataNotFoundError: no such folder, no class folders, an empty class folder.
        CorruptDataError: an image that cannot be decoded (named), a val/test class train/ lacks.
    """
    classes, splits = scan_image_folder(root)
    if "test" not in splits:
        splits["train"], splits["test"] = _hold_out_test(splits["train"], test_size)

    def decode(split: str) -> tuple[Tensor, Tensor]:
        paths, labels = zip(*splits[split])
        images = decode_images(paths, image_size, resize, num_workers, progress, f"decoding {split} images")
        return images, torch.tensor(labels, dtype=torch.int64)

    train_images, train_labels = decode("train")
    test_images, test_labels = decode("test")
    val_images, val_labels = decode("val") if "val" in splits else (None, None)
    return ImageData(train_images, train_labels, test_images, test_labels, classes, val_images, val_labels)
