"""Data: CIFAR-10/100, your own image folders (and a synthetic stand-in) as in-memory uint8 tensors,
augmented in batches on the device.

The loader ([`convzoo.data.loader`][convzoo.data.loader]), the batched augmentation ([`convzoo.data.augment`][convzoo.data.augment])
and the readers are plain torch; the Lightning data modules ([`convzoo.data.datamodule`][convzoo.data.datamodule], on the base
[`convzoo.data.in_memory`][convzoo.data.in_memory]) are imported on first use, so ``import convzoo.data`` does not import Lightning.

Examples:
    >>> from convzoo.data import SyntheticDataModule
    >>> dm = SyntheticDataModule(batch_size=64)
    >>> dm.setup(); dm.num_classes, dm.input_shape
    (10, (3, 32, 32))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from convzoo.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AlternatingFlip,
    BatchAugment,
    Normalize,
    channel_stats,
    cutout,
    normalize,
    rand_augment,
    random_crop,
    random_flip,
    resize,
)
from convzoo.data.cifar10 import (
    CIFAR10,
    CIFAR10_CLASSES,
    CIFAR100,
    CifarFormat,
    CorruptDataError,
    DataNotFoundError,
    ImageData,
    find_cifar,
    find_cifar10,
    load_cifar,
    load_cifar10,
)
from convzoo.data.image_folder import decode_images, load_image_folder, scan_image_folder
from convzoo.data.loader import InMemoryLoader

if TYPE_CHECKING:
    from convzoo.data.datamodule import (
        CIFAR10DataModule,
        CIFAR100DataModule,
        CifarDataModule,
        ImageFolderDataModule,
        SyntheticDataModule,
    )
    from convzoo.data.in_memory import TensorDataModule

# name -> module, imported when the name is first asked for (Hydra's `_target_: convzoo.data.X` too)
_LAZY = {**{name: "convzoo.data.datamodule" for name in (
    "CIFAR100DataModule", "CIFAR10DataModule", "CifarDataModule", "ImageFolderDataModule", "SyntheticDataModule")},
    "TensorDataModule": "convzoo.data.in_memory"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR100DataModule",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "AlternatingFlip",
    "BatchAugment",
    "CIFAR10DataModule",
    "CifarDataModule",
    "CifarFormat",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageData",
    "ImageFolderDataModule",
    "InMemoryLoader",
    "Normalize",
    "SyntheticDataModule",
    "TensorDataModule",
    "channel_stats",
    "cutout",
    "decode_images",
    "find_cifar",
    "find_cifar10",
    "load_cifar",
    "load_cifar10",
    "load_image_folder",
    "normalize",
    "rand_augment",
    "random_crop",
    "random_flip",
    "resize",
    "scan_image_folder",
]
