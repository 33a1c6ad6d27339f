"""Read the canonical CIFAR "python version" layouts into uint8 tensors, once, without PIL.

The official CIFAR-10 archive unpacks to ``cifar-10-batches-py/`` holding ``data_batch_1`` ..
``data_batch_5``, ``test_batch`` and ``batches.meta``; CIFAR-100's to ``cifar-100-python/`` holding
``train``, ``test`` and ``meta``. All are Python-2 pickles of dicts whose ``data`` is a uint8 array
of shape (rows, 3072) (1024 red, 1024 green, 1024 blue values per image). One reader serves both,
parameterised by a [`CifarFormat`][convzoo.data.cifar10.CifarFormat] whose file names, URL and checksums come from torchvision's
own dataset classes.

Examples:
    >>> from convzoo.data import load_cifar10
    >>> data = load_cifar10("~/data")  # doctest: +SKIP
    >>> data.train_images.shape, data.test_labels.dtype  # doctest: +SKIP
    (torch.Size([50000, 3, 32, 32]), torch.int64)
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convzoo.errors import CorruptDataError, DataNotFoundError

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR10_CLASSES",
    "CIFAR10_FOLDER",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "CifarFormat",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageData",
    "find_cifar",
    "find_cifar10",
    "load_cifar",
    "load_cifar10",
]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
"""CIFAR-10's class names, in label order (used when the data set's metadata file is absent)."""
ROW_WIDTH = 3 * 32 * 32


@dataclass(frozen=True)
class ImageData:
    """A dataset as tensors: uint8 images (N, 3, H, W), int64 labels (N,), and class names.

    Examples:
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
    # A dataset with its own validation split (an image folder's val/) brings it; otherwise the
    # data module holds val_size training images out.
    val_images: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class CifarFormat:
    """What tells one CIFAR "python version" layout from another (see [`CIFAR10`][convzoo.data.cifar10.CIFAR10], [`CIFAR100`][convzoo.data.cifar10.CIFAR100]).

    Examples:
        >>> CIFAR100.folder, CIFAR100.train_files, CIFAR100.label_key, CIFAR100.num_classes
        ('cifar-100-python', ('train',), 'fine_labels', 100)
        >>> CIFAR100.with_labels("coarse").num_classes
        20
    """

    name: str
    folder: str
    url: str
    md5: str
    archive_size: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    file_md5s: tuple[tuple[str, str], ...]
    meta_file: str
    label_key: str        # the labels' key in every data file
    names_key: str        # the class names' key in the meta file
    num_classes: int
    fallback_classes: tuple[str, ...] | None = None   # used when the meta file is absent; None: it is required

    @classmethod
    def from_torchvision(cls, dataset: str, **fields: Any) -> CifarFormat:
        """File names, URL and checksums from torchvision's own ``torchvision.datasets.<dataset>`` class."""
        import torchvision.datasets

        tv = getattr(torchvision.datasets, dataset)
        return cls(
            folder=tv.base_folder, url=tv.url, md5=tv.tgz_md5,
            train_files=tuple(name for name, _ in tv.train_list), test_files=tuple(name for name, _ in tv.test_list),
            file_md5s=tuple((name, md5) for name, md5 in (*tv.train_list, *tv.test_list)),
            meta_file=tv.meta["filename"], names_key=tv.meta["key"], **fields,
        )

    def with_labels(self, labels: str) -> CifarFormat:
        """CIFAR-100's ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses) labels."""
        if self.names_key not in ("fine_label_names", "coarse_label_names"):
            raise ValueError(f"{self.name} has one kind of label; fine/coarse labels are CIFAR-100's")
        if labels not in ("fine", "coarse"):
            raise ValueError(f"{self.name} labels must be 'fine' (100 classes) or 'coarse' (20 superclasses), got {labels!r}")
        return replace(self, label_key=f"{labels}_labels", names_key=f"{labels}_label_names",
                       num_classes=100 if labels == "fine" else 20)

    @property
    def required_files(self) -> tuple[str, ...]:
        """The files the data set's folder must hold (the metadata file only when the class names are not built in)."""
        return (*self.train_files, *self.test_files, *(() if self.fallback_classes else (self.meta_file,)))

    def fixes(self) -> str:
        """How to point convzoo at the data, or download it: the end of a not-found error."""
        return (
            "set data.root=<dir> (or the CONVZOO_DATA environment variable) to a folder holding "
            f"{self.folder}/, or pass data.download=true to fetch the official archive ({self.archive_size}, md5-checked)"
        )


CIFAR10 = CifarFormat.from_torchvision(
    "CIFAR10", name="CIFAR-10", archive_size="170 MB", label_key="labels", num_classes=10,
    fallback_classes=CIFAR10_CLASSES,
)
"""CIFAR-10's layout: ``cifar-10-batches-py/`` (five training batches, one test batch), 10 classes."""
CIFAR100 = CifarFormat.from_torchvision(
    "CIFAR100", name="CIFAR-100", archive_size="169 MB", label_key="fine_labels", num_classes=100,
)
"""CIFAR-100's layout: ``cifar-100-python/``, the 100 fine labels (``CIFAR100.with_labels("coarse")``: the 20 superclasses)."""
CIFAR10_URL, CIFAR10_MD5, CIFAR10_FOLDER = CIFAR10.url, CIFAR10.md5, CIFAR10.folder


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


def _corrupt(fmt: CifarFormat, path: Path, problem: str) -> CorruptDataError:
    return CorruptDataError(
        f"{fmt.name} file {path} is {problem}. Delete the folder {path.parent} and download it again "
        f"(data.download=true) or copy it again from a good source."
    )


def _unpickle(fmt: CifarFormat, path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            entry = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except OSError as error:  # permission problems and the like are not corruption
        raise DataNotFoundError(
            f"cannot read CIFAR-10 file {path}: {error.strerror or error}. Fix the file's permissions "
            f"or point data.root (or CONVZOO_DATA) at a readable copy."
        ) from None
    except Exception as error:  # any unpickling failure means the bytes are wrong
        raise _corrupt(fmt, path, f"truncated or corrupt: could not unpickle it ({type(error).__name__}: {error})") from None
    if not isinstance(entry, dict):
        raise _corrupt(fmt, path, f"not a {fmt.name} batch: expected a pickled dict, got {type(entry).__name__}")
    return entry


def _read_batch(fmt: CifarFormat, path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(fmt, path)
    missing = [key for key in ("data", fmt.label_key) if key not in entry]
    if missing:
        raise _corrupt(fmt, path, f"not a {fmt.name} batch: missing key(s) {', '.join(missing)} (has {sorted(entry)})")
    data, labels = entry["data"], entry[fmt.label_key]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == ROW_WIDTH):
        got = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise _corrupt(fmt, path, f"malformed: expected Nx{ROW_WIDTH} uint8 data, got {got}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise _corrupt(fmt, path, f"malformed: labels are not integers ({error})") from None
    if labels.shape != (len(data),):
        raise _corrupt(fmt, path, f"malformed: {len(data)} images but labels of shape {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= fmt.num_classes):
        raise _corrupt(
            fmt, path,
            f"malformed: {fmt.label_key} outside 0..{fmt.num_classes - 1} (found {labels.min()}..{labels.max()})",
        )
    return data, labels


def _candidate_folder(fmt: CifarFormat, root: str | Path) -> Path:
    root = Path(root).expanduser().absolute()
    # Accept the batches folder itself as well as its parent: both are natural things to point at.
    if root.name == fmt.folder or (root / fmt.train_files[0]).is_file():
        return root
    return root / fmt.folder


def _missing_files(fmt: CifarFormat, folder: Path) -> list[str]:
    return [name for name in fmt.required_files if not (folder / name).is_file()]


def _not_found(fmt: CifarFormat, folder: Path, missing: list[str]) -> DataNotFoundError:
    where = f"{folder} (folder does not exist)" if not folder.is_dir() else str(folder)
    return DataNotFoundError(f"{fmt.name} not found: looked in {where}, missing {', '.join(missing)}. Fix: {fmt.fixes()}.")


def find_cifar(root: str | Path, fmt: CifarFormat, download: bool = False) -> Path:
    """The ``fmt.folder`` folder under ``root`` (or ``root`` itself), downloading it if asked.

    Only checks that the files exist; [`load_cifar`][convzoo.data.cifar10.load_cifar] reads them. Raises
    [`DataNotFoundError`][convzoo.errors.DataNotFoundError] naming the folder, the missing files and the fixes.

    Examples:
        >>> find_cifar("/nonexistent", CIFAR100)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.errors.DataNotFoundError: CIFAR-100 not found: looked in /nonexistent/cifar-100-python ...
    """
    folder = _candidate_folder(fmt, root)
    missing = _missing_files(fmt, folder)
    if missing and download:
        from torchvision.datasets.utils import download_and_extract_archive

        try:
            download_and_extract_archive(url=fmt.url, download_root=str(folder.parent), md5=fmt.md5)
        except Exception as error:  # no network, bad checksum, full disk: all end the same way for the user
            raise DataNotFoundError(
                f"{_not_found(fmt, folder, missing)} Download failed: {type(error).__name__}: {error}"
            ) from error
        missing = _missing_files(fmt, folder)
    if missing:
        raise _not_found(fmt, folder, missing)
    return folder


def find_cifar10(root: str | Path, download: bool = False) -> Path:
    """The ``cifar-10-batches-py`` folder under ``root`` (or ``root`` itself): [`find_cifar`][convzoo.data.cifar10.find_cifar] for CIFAR-10.

    Examples:
        >>> find_cifar10("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.errors.DataNotFoundError: CIFAR-10 not found: looked in /nonexistent/cifar-10-batches-py ...
    """
    return find_cifar(root, CIFAR10, download)


def _verify_md5(fmt: CifarFormat, folder: Path) -> None:
    from torchvision.datasets.utils import check_integrity

    bad = [name for name, md5 in fmt.file_md5s if not check_integrity(str(folder / name), md5)]
    if bad:
        raise _corrupt(
            fmt, folder / bad[0], f"not the official file: md5 mismatch ({', '.join(bad)} differ from the official list)"
        )


def _read_classes(fmt: CifarFormat, folder: Path) -> tuple[str, ...]:
    # CIFAR-10's meta file only carries the names; the fixed official order is a safe fallback without it.
    path = folder / fmt.meta_file
    if not path.is_file() and fmt.fallback_classes:
        return fmt.fallback_classes
    names = _unpickle(fmt, path).get(fmt.names_key)
    if not (isinstance(names, list) and len(names) == fmt.num_classes):
        raise _corrupt(fmt, path, f"malformed: expected {fmt.num_classes} {fmt.names_key}, got {names!r}")
    return tuple(str(name) for name in names)


def _stack(fmt: CifarFormat, folder: Path, names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_read_batch(fmt, folder / name) for name in names]
    # concatenate copies even a single part, so the tensor owns writable memory, not the pickle's
    data = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32))
    return images, torch.from_numpy(labels)


def load_cifar(root: str | Path, fmt: CifarFormat, download: bool = False, verify: bool = False) -> ImageData:
    """Load a CIFAR layout ([`CIFAR10`][convzoo.data.cifar10.CIFAR10], [`CIFAR100`][convzoo.data.cifar10.CIFAR100]) as uint8 (N, 3, 32, 32) images and int64 labels.

    Args:
        root: a folder holding ``fmt.folder`` (``cifar-10-batches-py/``, ``cifar-100-python/``), or that folder.
        fmt: the layout; ``CIFAR100.with_labels("coarse")`` reads CIFAR-100's 20 superclass labels.
        download: fetch and unpack the official archive (md5-checked) when the files are missing.
        verify: check every file's md5 against the official list (about a second) before reading.

    Raises:
        DataNotFoundError: files missing (and not downloaded); the message names path and fixes.
        CorruptDataError: a file is truncated, not a batch of this layout, or fails ``verify``.

    Examples:
        >>> data = load_cifar("~/data", CIFAR100)  # doctest: +SKIP
        >>> data.train_images.shape, len(data.classes)  # doctest: +SKIP
        (torch.Size([50000, 3, 32, 32]), 100)
    """
    folder = find_cifar(root, fmt, download=download)
    if verify:
        _verify_md5(fmt, folder)
    train_images, train_labels = _stack(fmt, folder, fmt.train_files)
    test_images, test_labels = _stack(fmt, folder, fmt.test_files)
    return ImageData(train_images, train_labels, test_images, test_labels, _read_classes(fmt, folder))


def load_cifar10(root: str | Path, download: bool = False, verify: bool = False) -> ImageData:
    """Load CIFAR-10 as uint8 (N, 3, 32, 32) image tensors and int64 labels (50,000 train, 10,000 test).

    [`load_cifar`][convzoo.data.cifar10.load_cifar] with the CIFAR-10 layout: ``root`` holds ``cifar-10-batches-py/`` or is that folder.

    Examples:
        >>> data = load_cifar10(os.environ["CONVZOO_DATA"])  # doctest: +SKIP
        >>> data.classes[:2]  # doctest: +SKIP
        ('airplane', 'automobile')
    """
    return load_cifar(root, CIFAR10, download, verify)
