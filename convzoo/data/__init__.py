"""Data: CIFAR-10/100, your own image folders (and a synthetic stand-in) as in-memory uint8 tensors,
augmented in batches on the device.

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
from convzoo.data.datamodule import (
    CIFAR10DataModule,
    CIFAR100DataModule,
    CifarDataModule,
    ImageFolderDataModule,
    InMemoryLoader,
    SyntheticDataModule,
    TensorDataModule,
    channel_stats,
)
from convzoo.data.image_folder import decode_images, load_image_folder, scan_image_folder

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "CIFAR100DataModule",
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
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
