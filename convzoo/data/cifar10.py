"""Read the canonical "CIFAR-10 python version" layout into uint8 tensors, once, without PIL.

The official archive unpacks to ``cifar-10-batches-py/`` holding ``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta``: Python-2 pickles of dicts whose ``data`` is
a uint8 array of shape (rows, 3072) (1024 red, 1024 green, 1024 blue values per image).

Example:
    >>> from convzoo.data import load_cifar10
    >>> data = load_cifar10("~/data")  # doctest: +SKIP
    >>> data.train_images.shape, data.test_labels.dtype  # doctest: +SKIP
    (torch.Size([50000, 3, 32, 32]), torch.int64)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convzoo.registry import ConfigError

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageData",
    "find_cifar10",
    "load_cifar10",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
ROW_WIDTH = 3 * 32 * 32

_FIXES = (
    "set data.root=<dir> (or the CONVZOO_DATA environment variable) to a folder holding "
    f"{CIFAR10_FOLDER}/, or pass data.download=true to fetch the official archive (170 MB, md5-checked)"
)


class DataNotFoundError(ConfigError, FileNotFoundError):
    """The dataset files are not where the config says, or cannot be read (the message names the path and the fixes)."""


class CorruptDataError(ConfigError):
    """A dataset file exists but cannot be read as what it should be (truncated, wrong content)."""


@dataclass(frozen=True)
class ImageData:
    """A dataset as tensors: uint8 images (N, 3, H, W), int64 labels (N,), and class names.

    Example:
        >>> import torch
        >>> d = ImageData(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.zeros(4, dtype=torch.int64),
        ...               torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), ("a",))
        >>> len(d.train_labels), len(d.test_labels)
        (4, 2)
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: tuple[str, ...]


class _NumpyOnlyUnpickler(pickle.Unpickler):
    # The batches only need numpy's array reconstruction; refusing every other global means a
    # tampered file cannot run code on load (plain pickle.load would).
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in the pickle")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _corrupt(path: Path, problem: str) -> CorruptDataError:
    return CorruptDataError(
        f"CIFAR-10 file {path} is {problem}. Delete the folder {path.parent} and download it again "
        f"(data.download=true) or copy it again from a good source."
    )


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except OSError as error:  # permission problems and the like are not corruption
        raise DataNotFoundError(
            f"cannot read CIFAR-10 file {path}: {error.strerror or error}. Fix the file's permissions "
            f"or point data.root (or CONVZOO_DATA) at a readable copy."
        ) from None
    except Exception as error:  # any unpickling failure means the bytes are wrong
        raise _corrupt(path, f"truncated or corrupt: could not unpickle it ({type(error).__name__}: {error})") from None
    if not isinstance(entry, dict):
        raise _corrupt(path, f"not a CIFAR-10 batch: expected a pickled dict, got {type(entry).__name__}")
    return entry


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    missing = [key for key in ("data", "labels") if key not in entry]
    if missing:
        raise _corrupt(path, f"not a CIFAR-10 batch: missing key(s) {', '.join(missing)} (has {sorted(entry)})")
    data, labels = entry["data"], entry["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == ROW_WIDTH):
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _corrupt(
            path, f"malformed: expected Nx{ROW_WIDTH} uint8 data (10000x{ROW_WIDTH} in the official files), got {got}"
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise _corrupt(path, f"malformed: labels are not integers ({error})") from None
    if labels.shape != (len(data),):
        raise _corrupt(path, f"malformed: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES)):
        raise _corrupt(path, f"malformed: labels outside 0..9 (found {labels.min()}..{labels.max()})")
    return data, labels


def _candidate_folder(root: str | Path) -> Path:
    root = Path(root).expanduser().absolute()
    # Accept the batches folder itself as well as its parent: both are natural things to point at.
    if root.name == CIFAR10_FOLDER or (root / TRAIN_FILES[0]).is_file():
        return root
    return root / CIFAR10_FOLDER


def _missing_files(folder: Path) -> list[str]:
    return [name for name in (*TRAIN_FILES, *TEST_FILES) if not (folder / name).is_file()]


def _not_found(folder: Path, missing: list[str]) -> DataNotFoundError:
    where = f"{folder} (folder does not exist)" if not folder.is_dir() else str(folder)
    return DataNotFoundError(f"CIFAR-10 not found: looked in {where}, missing {', '.join(missing)}. Fix: {_FIXES}.")


def find_cifar10(root: str | Path, download: bool = False) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` (or ``root`` itself), downloading it if asked.

    Only checks that the files exist; :func:`load_cifar10` reads them. Raises
    :class:`DataNotFoundError` naming the folder, the missing files and the fixes.

    Example:
        >>> find_cifar10("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.data.cifar10.DataNotFoundError: CIFAR-10 not found: looked in /nonexistent/cifar-10-batches-py ...
    """
    folder = _candidate_folder(root)
    missing = _missing_files(folder)
    if missing and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(url=CIFAR10_URL, download_root=str(folder.parent), md5=CIFAR10_MD5)
        except Exception as error:  # no network, bad checksum, full disk: all end the same way for the user
            raise DataNotFoundError(
                f"{_not_found(folder, missing)} Download failed: {type(error).__name__}: {error}"
            ) from error
        missing = _missing_files(folder)
    if missing:
        raise _not_found(folder, missing)
    return folder


def _verify_md5(folder: Path) -> None:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    official = (*CIFAR10.train_list, *CIFAR10.test_list)
    bad = [name for name, md5 in official if not check_integrity(str(folder / name), md5)]
    if bad:
        raise _corrupt(
            folder / bad[0], f"not the official file: md5 mismatch ({', '.join(bad)} differ from the official list)"
        )


def _read_classes(folder: Path) -> tuple[str, ...]:
    # The meta file only carries the names; the fixed official order is a safe fallback without it.
    path = folder / META_FILE
    if not path.is_file():
        return CIFAR10_CLASSES
    names = _unpickle(path).get("label_names")
    if not (isinstance(names, list) and len(names) == len(CIFAR10_CLASSES)):
        raise _corrupt(path, f"malformed: expected 10 label_names, got {names!r}")
    return tuple(str(name) for name in names)


def _stack(folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_batch(folder / name) for name in names]
    # concatenate copies even a single part, so the tensor owns writable memory, not the pickle's
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
    return images, torch.from_numpy(labels)


def load_cifar10(root: str | Path, download: bool = False, verify: bool = False) -> ImageData:
    """Load CIFAR-10 as uint8 (N, 3, 32, 32) image tensors and int64 labels (50,000 train, 10,000 test).

    Args:
        root: a folder holding ``cifar-10-batches-py/``, or that folder itself.
        download: fetch and unpack the official archive (md5-checked) when the files are missing.
        verify: check every file's md5 against the official list (about a second) before reading.

    Raises:
        DataNotFoundError: files missing (and not downloaded); the message names path and fixes.
        CorruptDataError: a file is truncated, not a CIFAR-10 batch, or fails ``verify``.

    Example:
        >>> data = load_cifar10(os.environ["CONVZOO_DATA"])  # doctest: +SKIP
        >>> data.classes[:2]  # doctest: +SKIP
        ('airplane', 'automobile')
    """
    folder = find_cifar10(root, download=download)
    if verify:
        _verify_md5(folder)
    train_images, train_labels = _stack(folder, TRAIN_FILES)
    test_images, test_labels = _stack(folder, TEST_FILES)
    return ImageData(train_images, train_labels, test_images, test_labels, _read_classes(folder))
