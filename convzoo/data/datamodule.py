"""Lightning data modules that keep the whole dataset as uint8 tensors and augment on the device.

The airbench recipe: decode once, index batches straight out of memory (no Dataset/DataLoader,
no worker processes), move a uint8 batch (4x smaller than float) and augment and normalise it on
the training device in ``on_after_batch_transfer``.

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
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor

from convzoo.data.augment import CIFAR10_MEAN, CIFAR10_STD, BatchAugment, Normalize
from convzoo.data.cifar10 import CIFAR10_CLASSES, ImageData, find_cifar10, load_cifar10
from convzoo.registry import ConfigError, suggest

__all__ = ["CIFAR10DataModule", "InMemoryLoader", "SyntheticDataModule", "TensorDataModule"]

# BatchAugment arguments that come from the data module, not from its `augment` config.
_SET_BY_THE_DATA = ("mean", "std", "channels_last", "dtype")


class InMemoryLoader:
    """Batches of ``(images, labels)`` by fancy-indexing in-memory tensors with a per-epoch order.

    The order for epoch ``e`` is a permutation from a generator seeded with ``seed + e`` (identity
    when ``shuffle=False``), so runs are reproducible and a resumed run sees the same order.
    With ``world_size > 1`` each ``rank`` gets a disjoint, equal-size, strided share of that order,
    as ``DistributedSampler`` does: ``drop_last=True`` drops the remainder (and a last partial
    batch), ``drop_last=False`` pads the order by wrapping around so every sample is seen (a few
    twice) and keeps the last partial batch.

    The epoch is ``epoch_fn()`` when given (the data module passes the trainer's current epoch),
    else the value set by :meth:`set_epoch` (0 initially), like ``DistributedSampler``.

    ``alternating_flip`` mirrors a fixed random half of the images in even epochs and the other
    half in odd ones (airbench): every image is seen both ways within two epochs, which random
    flipping only achieves on average.

    The loader is resumable mid-epoch (Lightning saves :meth:`state_dict` in every checkpoint and
    hands it to :meth:`load_state_dict` on resume): as the order is a function of the epoch, its
    state is just ``{"epoch", "batches"}`` and the next iteration of that epoch starts after
    ``batches``. ``progress_fn`` reports how many batches the training has consumed; Lightning
    fetches one batch ahead, so counting the batches yielded would skip one on resume.

    Example:
        >>> images = torch.zeros(10, 3, 32, 32, dtype=torch.uint8)
        >>> loader = InMemoryLoader(images, torch.arange(10), batch_size=4, shuffle=True, seed=0)
        >>> [len(y) for _, y in loader], len(loader)
        ([4, 4, 2], 3)
        >>> rank1 = InMemoryLoader(images, torch.arange(10), batch_size=4, rank=1, world_size=2)
        >>> [y.tolist() for _, y in rank1]
        [[1, 3, 5, 7], [9]]
        >>> batches = iter(loader); first = next(batches); loader.state_dict()
        {'epoch': 0, 'batches': 1}
        >>> resumed = InMemoryLoader(images, torch.arange(10), batch_size=4, shuffle=True, seed=0)
        >>> resumed.load_state_dict(loader.state_dict())
        >>> [y.tolist() for _, y in resumed] == [y.tolist() for _, y in list(loader)[1:]]
        True
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] | None = None,
        alternating_flip: bool = False,
        progress_fn: Callable[[], int] | None = None,
    ):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch_fn, self.progress_fn = epoch_fn, progress_fn
        self.epoch = 0
        self._yielded = 0  # batches of the current iteration handed out so far
        self._resume_at: tuple[int, int] | None = None  # (epoch, batch) where the next iteration starts
        self.flip_first = None
        if alternating_flip:  # which images are mirrored in even epochs; fixed for the whole run
            flip_first = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)) < 0.5
            self.flip_first = flip_first.to(images.device)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration uses (ignored when ``epoch_fn`` is set)."""
        self.epoch = epoch

    def _shard_size(self) -> int:
        n = len(self.labels)
        return n // self.world_size if self.drop_last else math.ceil(n / self.world_size)

    def __len__(self) -> int:
        size = self._shard_size()
        return size // self.batch_size if self.drop_last else math.ceil(size / self.batch_size)

    def current_epoch(self) -> int:
        return self.epoch_fn() if self.epoch_fn is not None else self.epoch

    def indices(self) -> Tensor:
        """This rank's sample indices, in order, for the current epoch."""
        n = len(self.labels)
        if self.shuffle:
            epoch = self.current_epoch()
            # CPU generator: the same permutation whatever device the data lives on
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(n)
        total = self._shard_size() * self.world_size
        if total > n:  # wrap around so every rank has the same number of samples
            order = torch.cat([order, order[: total - n]])
        return order[self.rank : total : self.world_size]

    def state_dict(self) -> dict[str, int]:
        """Where the iteration stands: the epoch and how many of its batches were consumed."""
        done = self.progress_fn() if self.progress_fn is not None else self._yielded
        return {"epoch": self.current_epoch(), "batches": done}

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        """Start the iteration of ``state_dict["epoch"]`` after its first ``state_dict["batches"]`` batches."""
        self._resume_at = (int(state_dict["epoch"]), int(state_dict["batches"]))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch = self.current_epoch()
        first = 0
        # A resumed run skips what the checkpointed run trained on. Lightning may iterate once before
        # it has restored the epoch counter (sizing the loader); the position waits for its epoch.
        if self._resume_at is not None and epoch >= self._resume_at[0]:
            resume_epoch, first = self._resume_at
            self._resume_at = None
            first = first if resume_epoch == epoch else 0
        self._yielded = first
        order = self.indices().to(self.images.device)
        odd_epoch = epoch % 2 == 1
        for index in range(first, len(self)):
            batch = order[index * self.batch_size : (index + 1) * self.batch_size]
            images = self.images[batch]
            if self.flip_first is not None:
                flip = (self.flip_first[batch] ^ odd_epoch).view(-1, 1, 1, 1)
                images = torch.where(flip, images.flip(-1), images)
            self._yielded = index + 1
            yield images, self.labels[batch]


def _split(n: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[val_size:], order[:val_size]


class TensorDataModule(L.LightningDataModule):
    """Base for data modules whose whole dataset fits in memory as uint8 tensors.

    Subclasses implement :meth:`load` (returning :class:`~convzoo.data.cifar10.ImageData`).
    :meth:`setup` loads once and splits the training images (by ``seed``) into train and val;
    the test loader serves the official test set. Augmentation and normalisation run on the
    training device in :meth:`on_after_batch_transfer`: the train transform
    (:class:`~convzoo.data.augment.BatchAugment`) while ``trainer.training``, the eval transform
    (:class:`~convzoo.data.augment.Normalize`) otherwise, giving float32 batches (autocast does the
    rest) in channels-last layout when ``channels_last``.

    Args:
        batch_size: training batch size per device.
        eval_batch_size: batch size for val/test (``None``: ``batch_size``).
        val_size: training images held out for validation (0: no validation loader batches).
        subset: keep only the first ``subset`` images of the shuffled training split (quick runs).
        test_subset: keep only the first ``test_subset`` test images.
        seed: seeds the train/val split and the per-epoch shuffles.
        augment: :class:`~convzoo.data.augment.BatchAugment` arguments (crop_padding, flip, cutout,
            rand_augment, padding_mode); ``flip: alternating`` mirrors each training image in
            every other epoch (see :class:`InMemoryLoader`) instead of at random.
        channels_last: return NHWC-strided batches.
        on_device: when attached to a trainer, move the dataset to its device once, so batches are
            indexed on the device and the per-step host-to-device copy disappears.

    Example:
        >>> dm = SyntheticDataModule(num_train=128, num_test=32, val_size=32, batch_size=16)
        >>> dm.setup()
        >>> len(dm.train_images), len(dm.val_images), len(dm.test_images)
        (96, 32, 32)
    """

    classes: tuple[str, ...] = CIFAR10_CLASSES
    num_classes: int = 10
    mean: tuple[float, ...] = CIFAR10_MEAN
    std: tuple[float, ...] = CIFAR10_STD
    input_shape: tuple[int, int, int] = (3, 32, 32)

    def __init__(
        self,
        batch_size: int = 512,
        eval_batch_size: int | None = None,
        val_size: int = 5000,
        subset: int | None = None,
        test_subset: int | None = None,
        seed: int = 0,
        augment: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        on_device: bool = True,
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
        # flip="alternating" is a property of the epoch order, so the loader does it, not the transform
        self.alternating_flip = augment.get("flip") == "alternating"
        if self.alternating_flip:
            augment["flip"] = False
        try:
            self.train_transform = BatchAugment(**augment, mean=self.mean, std=self.std, channels_last=channels_last)
        except ConfigError as error:
            raise ConfigError(f"data.augment.{error}") from None
        self.eval_transform = Normalize(self.mean, self.std, channels_last=channels_last)
        self.train_images: Tensor | None = None
        self.train_labels: Tensor | None = None
        self.val_images: Tensor | None = None
        self.val_labels: Tensor | None = None
        self.test_images: Tensor | None = None
        self.test_labels: Tensor | None = None
        self._train_loader: InMemoryLoader | None = None
        self._train_loader_state: Mapping[str, int] | None = None  # from a checkpoint, for the next train loader

    def load(self) -> ImageData:
        """Return the full dataset as uint8 tensors; called once by :meth:`setup`."""
        raise NotImplementedError(f"{type(self).__name__} must implement load()")

    def setup(self, stage: str | None = None) -> None:
        if self.train_images is not None:
            return
        data = self.load()
        self.classes = data.classes
        self.num_classes = len(data.classes)
        n = len(data.train_labels)
        if not 0 <= self.val_size < n:
            raise ConfigError(f"data.val_size={self.val_size} must be in [0, {n}) for {n} training images; "
                              f"e.g. data.val_size={min(5000, n // 10)}.")
        train_idx, val_idx = _split(n, self.val_size, self.seed)
        if self.subset is not None:
            if not 0 < self.subset <= len(train_idx):
                raise ConfigError(f"data.subset={self.subset} must be in [1, {len(train_idx)}] (the train split); "
                                  f"use a smaller subset or null for all of them.")
            train_idx = train_idx[: self.subset]
        test_end = len(data.test_labels) if self.test_subset is None else self.test_subset
        if not 0 < test_end <= len(data.test_labels):
            raise ConfigError(f"data.test_subset={self.test_subset} must be in [1, {len(data.test_labels)}]; "
                              f"use a smaller test_subset or null for all of them.")
        transform = self.train_transform
        height, width = data.train_images.shape[-2:]
        if transform.padding_mode == "reflect" and transform.crop_padding >= min(height, width):
            raise ConfigError(f"data.augment.crop_padding={transform.crop_padding} must be smaller than the "
                              f"{height}x{width} images with padding_mode=reflect; lower it (4 is usual) "
                              f"or use padding_mode=zeros.")
        self.train_images, self.train_labels = data.train_images[train_idx], data.train_labels[train_idx]
        self.val_images, self.val_labels = data.train_images[val_idx], data.train_labels[val_idx]
        self.test_images, self.test_labels = data.test_images[:test_end], data.test_labels[:test_end]

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
            alternating_flip=train and self.alternating_flip,
            progress_fn=progress_fn,
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


class CIFAR10DataModule(TensorDataModule):
    """CIFAR-10 from the canonical ``cifar-10-batches-py`` layout (45,000/5,000/10,000 by default).

    Args:
        root: folder holding ``cifar-10-batches-py/`` (or that folder itself).
        download: fetch the official archive (md5-checked) in ``prepare_data`` when missing.
        **kwargs: :class:`TensorDataModule` arguments.

    Example:
        >>> dm = CIFAR10DataModule(root=os.environ["CONVZOO_DATA"], batch_size=512)  # doctest: +SKIP
        >>> dm.setup(); len(dm.train_images)  # doctest: +SKIP
        45000
    """

    def __init__(self, root: str = "data", download: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.root, self.download = str(root), download

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node, so only one process downloads.
        find_cifar10(self.root, download=self.download)

    def load(self) -> ImageData:
        return load_cifar10(self.root, download=self.download)


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
        val_size: int = 128,
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
