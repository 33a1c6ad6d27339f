"""The data sets as Lightning data modules: CIFAR-10/100, your own image folders, and a synthetic stand-in.

Each says only how to load its images ([`load`][convzoo.data.in_memory.TensorDataModule.load]);
splitting, statistics, loaders and on-device augmentation are [`TensorDataModule`][convzoo.data.in_memory.TensorDataModule]'s.

Examples:
    >>> from convzoo.data import SyntheticDataModule
    >>> dm = SyntheticDataModule(num_train=256, num_test=64, val_size=64, batch_size=32)
    >>> dm.setup(); len(dm.train_dataloader()), dm.num_classes
    (6, 10)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from convzoo.data.cifar10 import CIFAR10, CIFAR100, ImageData, find_cifar, load_cifar
from convzoo.data.image_folder import RESIZE_MODES, load_image_folder, parse_image_size
from convzoo.data.in_memory import TensorDataModule
from convzoo.errors import ConfigError, at

__all__ = [
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "CifarDataModule",
    "ImageFolderDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
]


class CifarDataModule(TensorDataModule):
    """A CIFAR "python version" layout ([`CifarFormat`][convzoo.data.cifar10.CifarFormat]) held in memory.

    Args:
        root: folder holding the layout's folder (``cifar-10-batches-py/``, ``cifar-100-python/``) or that folder.
        download: fetch the official archive (md5-checked) in ``prepare_data`` when missing.
        **kwargs: [`TensorDataModule`][convzoo.data.in_memory.TensorDataModule] arguments.
    """

    format = CIFAR10

    def __init__(self, root: str = "data", download: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.root, self.download = str(root), download
        self.num_classes = self.format.num_classes

    def prepare_data(self) -> None:
        """Find the data (downloading it with ``download=True``); Lightning calls this on one process per node."""
        # Lightning calls this on one process per node, so only one process downloads.
        find_cifar(self.root, self.format, download=self.download)

    def load(self) -> ImageData:
        """The data set's train and test splits (see [`load_cifar`][convzoo.data.cifar10.load_cifar])."""
        return load_cifar(self.root, self.format, download=self.download)


class CIFAR10DataModule(CifarDataModule):
    """CIFAR-10 from the canonical ``cifar-10-batches-py`` layout (45,000/5,000/10,000 by default).

    Normalised with the published CIFAR-10 statistics ([`CIFAR10_MEAN`][convzoo.data.augment.CIFAR10_MEAN]/``STD``).

    Examples:
        >>> dm = CIFAR10DataModule(root=os.environ["CONVZOO_DATA"], batch_size=512)  # doctest: +SKIP
        >>> dm.setup(); len(dm.train_images)  # doctest: +SKIP
        45000
    """


class CIFAR100DataModule(CifarDataModule):
    """CIFAR-100 from the canonical ``cifar-100-python`` layout: 100 fine classes, or the 20 coarse ones.

    Normalised with statistics computed from the training split (unless ``mean``/``std`` are given).

    Args:
        labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        root: as [`CifarDataModule`][convzoo.data.datamodule.CifarDataModule].
        download: as [`CifarDataModule`][convzoo.data.datamodule.CifarDataModule].
        **kwargs: [`TensorDataModule`][convzoo.data.in_memory.TensorDataModule] arguments.

    Examples:
        >>> dm = CIFAR100DataModule(root="~/data", labels="coarse")
        >>> dm.num_classes, dm.format.label_key
        (20, 'coarse_labels')
    """

    format = CIFAR100
    classes: tuple[str, ...] = ()
    mean = None
    std = None

    def __init__(self, root: str = "data", download: bool = False, labels: str = "fine", **kwargs: Any):
        try:
            self.format = CIFAR100.with_labels(labels)
        except ValueError as error:
            raise at("data.labels", str(error)) from None
        super().__init__(root, download, **kwargs)


class ImageFolderDataModule(TensorDataModule):
    """Your own images in torchvision's ``ImageFolder`` layout, decoded once (see [`convzoo.data.image_folder`][convzoo.data.image_folder]).

    The classes are train/'s folder names (sorted); ``val/`` and ``test/`` are used when present,
    else ``val_size`` training images (by ``seed``) and ``test_size`` of them (fixed) are held out.
    Normalised with statistics computed from the training split (unless ``mean``/``std`` are given).

    Args:
        root: the dataset folder.
        image_size: side (or ``[height, width]``) every image is resized to when decoded.
        resize: ``center_crop`` (shorter side to size, centre crop) or ``stretch``.
        test_size: without ``test/``, the fraction (or count) of train/ held out for testing.
        num_workers: decoding threads (default: all cores).
        val_size: without ``val/``, the fraction (or count) of the training images held out.
        **kwargs: [`TensorDataModule`][convzoo.data.in_memory.TensorDataModule] arguments.

    Examples:
        >>> dm = ImageFolderDataModule(root="~/data/flowers", image_size=96)
        >>> dm.input_shape
        (3, 96, 96)
    """

    classes: tuple[str, ...] = ()
    mean = None
    std = None

    def __init__(
        self,
        root: str = "data",
        image_size: int | Sequence[int] = 64,
        resize: str = "center_crop",
        test_size: float | int = 0.1,
        num_workers: int | None = None,
        val_size: float | int = 0.1,
        **kwargs: Any,
    ):
        super().__init__(val_size=val_size, **kwargs)
        size = parse_image_size(image_size)
        if resize not in RESIZE_MODES:
            raise ConfigError(f"data.resize={resize!r} is not known; use one of {', '.join(RESIZE_MODES)}")
        self.root, self.image_size, self.resize = str(root), size, resize
        self.test_size, self.num_workers = test_size, num_workers
        self.input_shape = (3, *size)

    def load(self) -> ImageData:
        """The folder's images, decoded and resized (see [`load_image_folder`][convzoo.data.image_folder.load_image_folder])."""
        return load_image_folder(self.root, self.image_size, self.resize, self.test_size, self.num_workers,
                                 progress=rank_zero_only.rank == 0)


class SyntheticDataModule(TensorDataModule):
    """Random uint8 CIFAR-shaped images with random labels from a seeded generator: no files needed.

    For smoke tests and trying the library without the dataset; nothing in it is learnable beyond
    memorisation. Uses CIFAR-10's statistics so it exercises exactly the CIFAR pipeline.

    Examples:
        >>> dm = SyntheticDataModule(num_train=64, num_test=16, val_size=16)
        >>> dm.setup(); dm.train_images.shape, dm.test_labels.max().item() < 10
        (torch.Size([48, 3, 32, 32]), True)
    """

    def __init__(
        self,
        num_train: int = 512,
        num_test: int = 256,
        val_size: float | int = 128,
        num_classes: int = 10,
        **kwargs: Any,
    ):
        super().__init__(val_size=val_size, **kwargs)
        for name, value in (("num_train", num_train), ("num_test", num_test), ("num_classes", num_classes)):
            if value < 1:
                raise ConfigError(f"data.{name}={value} must be at least 1.")
        self.num_train, self.num_test = num_train, num_test
        self.num_classes = num_classes
        self.classes = tuple(f"class_{i}" for i in range(num_classes))

    def load(self) -> ImageData:
        """Random images and labels, the same for the same ``seed``."""
        generator = torch.Generator().manual_seed(self.seed)

        def draw(n: int) -> tuple[Tensor, Tensor]:
            images = torch.randint(0, 256, (n, *self.input_shape), dtype=torch.uint8, generator=generator)
            return images, torch.randint(0, self.num_classes, (n,), generator=generator)

        return ImageData(*draw(self.num_train), *draw(self.num_test), self.classes)
