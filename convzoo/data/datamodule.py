"""Lightning data modules that keep the whole dataset as uint8 tensors and augment on the device.

The airbench recipe: decode once, index batches straight out of memory
(:class:`~convzoo.data.loader.InMemoryLoader`), move a uint8 batch (4x smaller than float) and
augment and normalise it on the training device in ``on_after_batch_transfer``.

Example:
    >>> from convzoo.data import SyntheticDataModule
    >>> dm = SyntheticDataModule(num_train=256, num_test=64, val_size=64, batch_size=32)
    >>> dm.setup()
    >>> images, labels = next(iter(dm.train_dataloader()))
    >>> images.dtype, images.shape, len(dm.train_dataloader())
    (torch.uint8, torch.Size([32, 3, 32, 32]), 6)
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from convzoo.data.augment import CIFAR10_MEAN, CIFAR10_STD, AlternatingFlip, BatchAugment, Normalize, channel_stats
from convzoo.data.cifar10 import CIFAR10, CIFAR10_CLASSES, CIFAR100, ImageData, find_cifar, load_cifar
from convzoo.data.image_folder import RESIZE_MODES, holdout_count, load_image_folder, parse_image_size
from convzoo.data.loader import InMemoryLoader
from convzoo.errors import ConfigError, suggest

__all__ = [
    "CIFAR100DataModule",
    "CIFAR10DataModule",
    "ImageFolderDataModule",
    "SyntheticDataModule",
    "TensorDataModule",
]

# BatchAugment arguments that come from the data module, not from its `augment` config.
_SET_BY_THE_DATA = ("mean", "std", "channels_last", "dtype")


def _split(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


def _given_statistics(mean: Sequence[float] | None, std: Sequence[float] | None) -> tuple[tuple[float, ...], ...]:
    def three_numbers(values: Sequence[float] | None) -> bool:
        return values is not None and len(values) == 3 and all(isinstance(v, (int, float)) for v in values)

    if not (three_numbers(mean) and three_numbers(std) and min(std) > 0):
        raise ConfigError(
            f"data.mean={mean}, data.std={std}: give both, as three numbers in [0, 1] units with std > 0 "
            f"(e.g. data.mean=[0.5,0.5,0.5] data.std=[0.25,0.25,0.25]), or neither"
        )
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class TensorDataModule(L.LightningDataModule):
    """Base for data modules whose whole dataset fits in memory as uint8 tensors.

    Subclasses implement :meth:`load` (returning :class:`~convzoo.data.cifar10.ImageData`).
    :meth:`setup` loads once and splits the training images (by ``seed``) into train and val;
    the test loader serves the official test set. Augmentation and normalisation run on the
    training device in :meth:`on_after_batch_transfer`: the train transform
    (:class:`~convzoo.data.augment.BatchAugment`) while ``trainer.training``, the eval transform
    (:class:`~convzoo.data.augment.Normalize`) otherwise, giving float32 batches (autocast does the
    rest) in channels-last layout when ``channels_last``.

    The normalisation statistics are the class's (CIFAR-10's published ones), those given as
    ``mean``/``std``, or, for a data set without published ones (``mean = None`` on the class),
    computed from the training split by :meth:`setup`.

    Args:
        batch_size: training batch size per device.
        eval_batch_size: batch size for val/test (``None``: ``batch_size``).
        val_size: training images held out for validation, a count or a fraction in (0, 1) (0: no
            validation batches); unused when the data set brings its own validation split.
        subset: keep only the first ``subset`` images of the shuffled training split (quick runs).
        test_subset: keep only the first ``test_subset`` test images.
        seed: seeds the train/val split and the per-epoch shuffles.
        augment: :class:`~convzoo.data.augment.BatchAugment` arguments (crop_padding, flip, cutout,
            rand_augment, padding_mode); ``flip: alternating`` mirrors each training image in
            every other epoch (:class:`~convzoo.data.augment.AlternatingFlip`, applied by the loader)
            instead of at random.
        channels_last: return NHWC-strided batches.
        on_device: when attached to a trainer, move the dataset to its device once, so batches are
            indexed on the device and the per-step host-to-device copy disappears.
        mean, std: per-channel normalisation statistics in [0, 1] units (both or neither).

    Example:
        >>> dm = SyntheticDataModule(num_train=128, num_test=32, val_size=32, batch_size=16)
        >>> dm.setup()
        >>> len(dm.train_images), len(dm.val_images), len(dm.test_images)
        (96, 32, 32)
    """

    classes: tuple[str, ...] = CIFAR10_CLASSES
    num_classes: int = 10
    mean: tuple[float, ...] | None = CIFAR10_MEAN
    std: tuple[float, ...] | None = CIFAR10_STD
    input_shape: tuple[int, int, int] = (3, 32, 32)

    def __init__(
        self,
        batch_size: int = 512,
        eval_batch_size: int | None = None,
        val_size: float | int = 5000,
        subset: int | None = None,
        test_subset: int | None = None,
        seed: int = 0,
        augment: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        on_device: bool = True,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                            ("subset", subset), ("test_subset", test_subset)):
            if value is not None and value < 1:
                hint = "or null for all of them" if name.endswith("subset") else f"e.g. data.{name}=128"
                raise ConfigError(f"data.{name}={value} must be at least 1 ({hint}).")
        if val_size < 0:
            raise ConfigError(f"data.val_size={val_size} must be >= 0 (0: no validation).")
        # Hydra hands nested configs over as DictConfig; plain dicts keep checkpoints loadable with
        # torch.load(weights_only=True) and hparams readable.
        augment = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in (augment or {}).items()}
        accepted = [name for name in inspect.signature(BatchAugment).parameters if name not in _SET_BY_THE_DATA]
        for key in augment:
            if key not in accepted:
                raise ConfigError(f"data.augment.{key} is not known.{suggest(key, accepted)} "
                                  f"It accepts: {', '.join(accepted)}.")
        if augment.get("flip", True) not in (True, False, "alternating"):
            raise ConfigError(f"data.augment.flip={augment['flip']!r} is not known; use true, false or alternating.")
        # recorded in checkpoints, so a run's data config can be read back and the module rebuilt
        self.save_hyperparameters()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_size, self.subset, self.test_subset, self.seed = val_size, subset, test_subset, seed
        self.channels_last, self.on_device = channels_last, on_device
        self.augment = augment
        if mean is not None or std is not None:
            self.mean, self.std = _given_statistics(mean, std)
        self.train_transform: BatchAugment | None = None
        self.eval_transform: Normalize | None = None
        if self.mean is not None:  # else computed from the training images in setup()
            self._build_transforms()
        self.train_images: Tensor | None = None
        self.train_labels: Tensor | None = None
        self.val_images: Tensor | None = None
        self.val_labels: Tensor | None = None
        self.test_images: Tensor | None = None
        self.test_labels: Tensor | None = None
        self._train_loader: InMemoryLoader | None = None
        self._train_loader_state: Mapping[str, int] | None = None  # from a checkpoint, for the next train loader

    def _build_transforms(self) -> None:
        try:
            self.train_transform = BatchAugment(**self.augment, mean=self.mean, std=self.std, channels_last=self.channels_last)
        except ConfigError as error:
            raise ConfigError(f"data.augment.{error}") from None
        self.eval_transform = Normalize(self.mean, self.std, channels_last=self.channels_last)

    def load(self) -> ImageData:
        """Return the full dataset as uint8 tensors; called once by :meth:`setup`."""
        raise NotImplementedError(f"{type(self).__name__} must implement load()")

    def describe(self) -> dict[str, Any]:
        """What a run records about its data (after :meth:`setup`): classes, statistics, shapes and sizes.

        Example:
            >>> dm = SyntheticDataModule(num_train=64, num_test=16, val_size=16, num_classes=3)
            >>> dm.setup(); info = dm.describe()
            >>> info["classes"], info["sizes"]
            (['class_0', 'class_1', 'class_2'], {'train': 48, 'val': 16, 'test': 16})
        """
        if self.train_images is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before describe()")
        return {
            "dataset": type(self).__name__,
            "classes": list(self.classes),
            "mean": list(self.mean),
            "std": list(self.std),
            "input_shape": list(self.input_shape),
            "sizes": {"train": len(self.train_labels), "val": len(self.val_labels), "test": len(self.test_labels)},
        }

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        data = self.load()
        self.classes = data.classes
        self.num_classes = len(data.classes)
        n = len(data.train_labels)
        if data.val_images is not None:  # the data set's own validation split; shuffle only for subset
            train_idx, val_idx = _split(n, 0, self.seed)
            val_images, val_labels = data.val_images, data.val_labels
        else:
            train_idx, val_idx = _split(n, holdout_count(self.val_size, n, "data.val_size"), self.seed)
            val_images, val_labels = data.train_images[val_idx], data.train_labels[val_idx]
        if self.subset is not None:
            if not 0 < self.subset <= len(train_idx):
                raise ConfigError(f"data.subset={self.subset} must be in [1, {len(train_idx)}] (the train split); "
                                  f"use a smaller subset or null for all of them.")
            train_idx = train_idx[: self.subset]
        test_end = len(data.test_labels) if self.test_subset is None else self.test_subset
        if not 0 < test_end <= len(data.test_labels):
            raise ConfigError(f"data.test_subset={self.test_subset} must be in [1, {len(data.test_labels)}]; "
                              f"use a smaller test_subset or null for all of them.")
        self.train_images, self.train_labels = data.train_images[train_idx], data.train_labels[train_idx]
        self.val_images, self.val_labels = val_images, val_labels
        self.test_images, self.test_labels = data.test_images[:test_end], data.test_labels[:test_end]
        if self.mean is None:
            self.mean, self.std = channel_stats(self.train_images)
            self._build_transforms()
        transform = self.train_transform
        height, width = data.train_images.shape[-2:]
        if transform.padding_mode == "reflect" and transform.crop_padding >= min(height, width):
            raise ConfigError(f"data.augment.crop_padding={transform.crop_padding} must be smaller than the "
                              f"{height}x{width} images with padding_mode=reflect; lower it (4 is usual) "
                              f"or use padding_mode=zeros.")

    def _loader(self, images: Tensor | None, labels: Tensor | None, train: bool) -> InMemoryLoader:
        if images is None or labels is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for a dataloader")
        rank, world_size, epoch_fn, progress_fn = 0, 1, None, None
        trainer = self.trainer
        if trainer is not None:
            # Lightning only injects a DistributedSampler into real DataLoaders, so shard here.
            rank, world_size = trainer.global_rank, trainer.world_size
            epoch_fn = lambda: trainer.current_epoch  # noqa: E731
            if train:  # the batches of this epoch whose training step ran: where a resumed run continues
                progress_fn = lambda: trainer.fit_loop.epoch_loop.batch_progress.current.processed  # noqa: E731
            if self.on_device:
                device = trainer.strategy.root_device
                images, labels = images.to(device), labels.to(device)
        return InMemoryLoader(
            images,
            labels,
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            epoch_fn=epoch_fn,
            progress_fn=progress_fn,
            # which image is mirrored depends on the image and the epoch: the loader knows both
            transform=AlternatingFlip(len(labels), self.seed) if train and self.augment.get("flip") == "alternating" else None,
        )

    def train_dataloader(self) -> InMemoryLoader:
        self._train_loader = self._loader(self.train_images, self.train_labels, train=True)
        if self._train_loader_state is not None:
            self._train_loader.load_state_dict(self._train_loader_state)
            self._train_loader_state = None
        return self._train_loader

    # The training loader's position also travels as the data module's state. Lightning restores a
    # stateful loader itself only if it creates the loader after loading the checkpoint; a module whose
    # configure_optimizers asks for trainer.estimated_stepping_batches (ours) makes it create the
    # loader first, and the data module's state is restored before either happens.
    def state_dict(self) -> dict[str, Any]:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._train_loader_state = state_dict.get("train_loader")  # for the next train loader ...
        if self._train_loader is not None and self._train_loader_state is not None:
            self._train_loader.load_state_dict(self._train_loader_state)  # ... or the one in use

    def val_dataloader(self) -> InMemoryLoader:
        return self._loader(self.val_images, self.val_labels, train=False)

    def test_dataloader(self) -> InMemoryLoader:
        return self._loader(self.test_images, self.test_labels, train=False)

    def predict_dataloader(self) -> InMemoryLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return (self.train_transform(images) if training else self.eval_transform(images)), labels


class CifarDataModule(TensorDataModule):
    """A CIFAR "python version" layout (:class:`~convzoo.data.cifar10.CifarFormat`) held in memory.

    Args:
        root: folder holding the layout's folder (``cifar-10-batches-py/``, ``cifar-100-python/``) or that folder.
        download: fetch the official archive (md5-checked) in ``prepare_data`` when missing.
        **kwargs: :class:`TensorDataModule` arguments.
    """

    format = CIFAR10

    def __init__(self, root: str = "data", download: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.root, self.download = str(root), download
        self.num_classes = self.format.num_classes

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, so only one process downloads.
        find_cifar(self.root, self.format, download=self.download)

    def load(self) -> ImageData:
        return load_cifar(self.root, self.format, download=self.download)


class CIFAR10DataModule(CifarDataModule):
    """CIFAR-10 from the canonical ``cifar-10-batches-py`` layout (45,000/5,000/10,000 by default).

    Normalised with the published CIFAR-10 statistics (:data:`~convzoo.data.CIFAR10_MEAN`/``STD``).

    Example:
        >>> dm = CIFAR10DataModule(root=os.environ["CONVZOO_DATA"], batch_size=512)  # doctest: +SKIP
        >>> dm.setup(); len(dm.train_images)  # doctest: +SKIP
        45000
    """


class CIFAR100DataModule(CifarDataModule):
    """CIFAR-100 from the canonical ``cifar-100-python`` layout: 100 fine classes, or the 20 coarse ones.

    Normalised with statistics computed from the training split (unless ``mean``/``std`` are given).

    Args:
        labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).
        root, download, **kwargs: as :class:`CifarDataModule`.

    Example:
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
            raise ConfigError(f"data.labels: {error}") from None
        super().__init__(root, download, **kwargs)


class ImageFolderDataModule(TensorDataModule):
    """Your own images in torchvision's ``ImageFolder`` layout, decoded once (see :mod:`convzoo.data.image_folder`).

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
        **kwargs: :class:`TensorDataModule` arguments.

    Example:
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
        return load_image_folder(self.root, self.image_size, self.resize, self.test_size, self.num_workers,
                                 progress=rank_zero_only.rank == 0)


class SyntheticDataModule(TensorDataModule):
    """Random uint8 CIFAR-shaped images with random labels from a seeded generator: no files needed.

    For smoke tests and trying the library without the dataset; nothing in it is learnable beyond
    memorisation. Uses CIFAR-10's statistics so it exercises exactly the CIFAR pipeline.

    Example:
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
        generator = torch.Generator().manual_seed(self.seed)

        def draw(n: int) -> tuple[Tensor, Tensor]:
            images = torch.randint(0, 256, (n, *self.input_shape), dtype=torch.uint8, generator=generator)
            return images, torch.randint(0, self.num_classes, (n,), generator=generator)

        return ImageData(*draw(self.num_train), *draw(self.num_test), self.classes)
