"""The in-memory Lightning data module every convzoo data set builds on: [`TensorDataModule`][convzoo.data.in_memory.TensorDataModule].

The airbench recipe: decode once, index batches straight out of memory
([`InMemoryLoader`][convzoo.data.loader.InMemoryLoader]), move a uint8 batch (4x smaller than float) and
augment and normalise it on the training device in ``on_after_batch_transfer``. A data set
([`convzoo.data.datamodule`][convzoo.data.datamodule]) only says how to [`load`][convzoo.data.in_memory.TensorDataModule.load] its images.

Examples:
    >>> from convzoo.data import SyntheticDataModule
    >>> dm = SyntheticDataModule(num_train=256, num_test=64, val_size=64, batch_size=32)
    >>> dm.setup()
    >>> images, labels = next(iter(dm.train_dataloader()))
    >>> images.dtype, images.shape, len(dm.train_dataloader())
    (torch.uint8, torch.Size([32, 3, 32, 32]), 6)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor

from convzoo.data.augment import CIFAR10_MEAN, CIFAR10_STD, AlternatingFlip, BatchAugment, Normalize, channel_stats
from convzoo.data.cifar10 import CIFAR10_CLASSES, ImageData
from convzoo.data.image_folder import holdout_count
from convzoo.data.loader import InMemoryLoader
from convzoo.arguments import builder_signature
from convzoo.errors import ConfigError, suggest

__all__ = ["TensorDataModule"]

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

    Subclasses implement [`load`][convzoo.data.in_memory.TensorDataModule.load] (returning [`ImageData`][convzoo.data.cifar10.ImageData]).
    [`setup`][convzoo.data.in_memory.TensorDataModule.setup] loads once and splits the training images (by ``seed``) into train and val;
    the test loader serves the official test set. Augmentation and normalisation run on the
    training device in [`on_after_batch_transfer`][convzoo.data.in_memory.TensorDataModule.on_after_batch_transfer]: the train transform
    ([`BatchAugment`][convzoo.data.augment.BatchAugment]) while ``trainer.training``, the eval transform
    ([`Normalize`][convzoo.data.augment.Normalize]) otherwise, giving float32 batches (autocast does the
    rest) in channels-last layout when ``channels_last``.

    The normalisation statistics are the class's (CIFAR-10's published ones), those given as
    ``mean``/``std``, or, for a data set without published ones (``mean = None`` on the class),
    computed from the training split by [`setup`][convzoo.data.in_memory.TensorDataModule.setup].

    Args:
        batch_size: training batch size per device.
        eval_batch_size: batch size for val/test (``None``: ``batch_size``).
        val_size: training images held out for validation, a count or a fraction in (0, 1) (0: no
            validation batches); unused when the data set brings its own validation split.
        subset: keep only the first ``subset`` images of the shuffled training split (quick runs).
        test_subset: keep only the first ``test_subset`` test images.
        seed: seeds the train/val split and the per-epoch shuffles.
        augment: [`BatchAugment`][convzoo.data.augment.BatchAugment] arguments (crop_padding, flip, cutout,
            rand_augment, padding_mode); ``flip: alternating`` mirrors each training image in
            every other epoch ([`AlternatingFlip`][convzoo.data.augment.AlternatingFlip], applied by the loader)
            instead of at random.
        channels_last: return NHWC-strided batches.
        on_device: when attached to a trainer, move the dataset to its device once, so batches are
            indexed on the device and the per-step host-to-device copy disappears.
        mean: per-channel normalisation mean in [0, 1] units (give ``std`` too, or neither).
        std: per-channel normalisation standard deviation in [0, 1] units.

    Examples:
        >>> from convzoo.data import SyntheticDataModule
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
        accepted = [name for name in builder_signature(BatchAugment)[0] if name not in _SET_BY_THE_DATA]
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
        """Return the full dataset as uint8 tensors; called once by [`setup`][convzoo.data.in_memory.TensorDataModule.setup]."""
        raise NotImplementedError(f"{type(self).__name__} must implement load()")

    def describe(self) -> dict[str, Any]:
        """What a run records about its data (after [`setup`][convzoo.data.in_memory.TensorDataModule.setup]): classes, statistics, shapes and sizes.

        Examples:
            >>> from convzoo.data import SyntheticDataModule
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
        """Load the data once ([`load`][convzoo.data.in_memory.TensorDataModule.load]) and split it: train and val (by ``seed``), test.

        Applies ``subset`` and ``test_subset``, and computes the normalisation statistics from the
        training split when the data set has no published ones. Later calls do nothing.

        Args:
            stage: Lightning's stage (``"fit"``, ``"test"``, ...); every stage gets all splits.

        Raises:
            ConfigError: ``val_size``, ``subset`` or ``test_subset`` do not fit the data, or the
                reflect padding of the crop is not smaller than the images.
        """
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
        """The shuffled training batches of this process (sharded by rank), resuming mid-epoch when a
        checkpoint's loader position was loaded."""
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
        """The training loader's position (``{}`` before there is a training loader), saved in checkpoints."""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the training loader's position, into the loader in use or the next one made."""
        self._train_loader_state = state_dict.get("train_loader")  # for the next train loader ...
        if self._train_loader is not None and self._train_loader_state is not None:
            self._train_loader.load_state_dict(self._train_loader_state)  # ... or the one in use

    def val_dataloader(self) -> InMemoryLoader:
        """The validation batches, in order (``eval_batch_size``)."""
        return self._loader(self.val_images, self.val_labels, train=False)

    def test_dataloader(self) -> InMemoryLoader:
        """The test batches, in order (``eval_batch_size``)."""
        return self._loader(self.test_images, self.test_labels, train=False)

    def predict_dataloader(self) -> InMemoryLoader:
        """The test batches (what ``trainer.predict`` runs on)."""
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: tuple[Tensor, Tensor], dataloader_idx: int) -> tuple[Tensor, Tensor]:
        """Augment and normalise a batch on its device: the train transform while the trainer trains, else the eval one.

        Args:
            batch: ``(uint8 images, labels)`` on the training device.
            dataloader_idx: which loader the batch came from (unused).

        Returns:
            ``(float images, labels)``.
        """
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        return (self.train_transform(images) if training else self.eval_transform(images)), labels
