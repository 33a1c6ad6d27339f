"""Data: CIFAR-10 (and a synthetic stand-in) as in-memory uint8 tensors, augmented in batches on the device.

Example:
    >>> from convzoo.data import SyntheticDataModule
    >>> dm = SyntheticDataModule(batch_size=64)
    >>> dm.setup(); dm.num_classes, dm.input_shape
    (10, (3, 32, 32))
"""

from convzoo.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchAugment,
    Normalize,
    cutout,
    normalize,
    rand_augment,
    random_crop,
    random_flip,
    resize,
)
from convzoo.data.cifar10 import (
    CIFAR10_CLASSES,
    CorruptDataError,
    DataNotFoundError,
    ImageData,
    find_cifar10,
    load_cifar10,
)
from convzoo.data.datamodule import CIFAR10DataModule, InMemoryLoader, SyntheticDataModule, TensorDataModule

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "BatchAugment",
    "CIFAR10DataModule",
    "CorruptDataError",
    "DataNotFoundError",
    "ImageData",
    "InMemoryLoader",
    "Normalize",
    "SyntheticDataModule",
    "TensorDataModule",
    "cutout",
    "find_cifar10",
    "load_cifar10",
    "normalize",
    "rand_augment",
    "random_crop",
    "random_flip",
    "resize",
]
