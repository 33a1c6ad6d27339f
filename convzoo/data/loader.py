"""Batches straight out of in-memory tensors, in a reproducible, resumable, shardable order (pure torch).

The airbench recipe: decode once, then index batches by fancy-indexing the whole dataset held as
uint8 tensors (no Dataset/DataLoader, no worker processes). The Lightning data modules
([`convzoo.data.in_memory`][convzoo.data.in_memory]) serve their splits through it; a plain PyTorch loop uses it the same way.

Examples:
    >>> images, labels = torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10)
    >>> loader = InMemoryLoader(images, labels, batch_size=4, shuffle=True, drop_last=True, seed=0)
    >>> for epoch in range(2):
    ...     loader.set_epoch(epoch)
    ...     print([len(y) for _, y in loader])
    [4, 4]
    [4, 4]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import Tensor

__all__ = ["InMemoryLoader"]


class InMemoryLoader:
    """Batches of ``(images, labels)`` by fancy-indexing in-memory tensors with a per-epoch order.

    The order for epoch ``e`` is a permutation from a generator seeded with ``seed + e`` (identity
    when ``shuffle=False``), so runs are reproducible and a resumed run sees the same order.
    With ``world_size > 1`` each ``rank`` gets a disjoint, equal-size, strided share of that order,
    as ``DistributedSampler`` does: ``drop_last=True`` drops the remainder (and a last partial
    batch), ``drop_last=False`` pads the order by wrapping around so every sample is seen (a few
    twice) and keeps the last partial batch.

    The epoch is ``epoch_fn()`` when given (the data module passes the trainer's current epoch),
    else the value set by [`set_epoch`][convzoo.data.loader.InMemoryLoader.set_epoch] (0 initially), like ``DistributedSampler``.

    ``transform(images, index, epoch)``, when given, changes each batch where the data lives, knowing
    which images they are (their positions in ``images``) and the epoch: what depends on the image
    and the epoch rather than on chance, such as airbench's alternating flip
    ([`AlternatingFlip`][convzoo.data.augment.AlternatingFlip]).

    The loader is resumable mid-epoch (Lightning saves [`state_dict`][convzoo.data.loader.InMemoryLoader.state_dict] in every checkpoint and
    hands it to [`load_state_dict`][convzoo.data.loader.InMemoryLoader.load_state_dict] on resume): as the order is a function of the epoch, its
    state is just ``{"epoch", "batches"}`` and the next iteration of that epoch starts after
    ``batches``. ``progress_fn`` reports how many batches the training has consumed; Lightning
    fetches one batch ahead, so counting the batches yielded would skip one on resume.

    Examples:
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
        progress_fn: Callable[[], int] | None = None,
        transform: Callable[[Tensor, Tensor, int], Tensor] | None = None,
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
        self.epoch_fn, self.progress_fn, self.transform = epoch_fn, progress_fn, transform
        self.epoch = 0
        self._yielded = 0  # batches of the current iteration handed out so far
        self._resume_at: tuple[int, int] | None = None  # (epoch, batch) where the next iteration starts

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
        """The epoch whose order is served: the trainer's (``epoch_fn``) when attached, else the one set by [`set_epoch`][convzoo.data.loader.InMemoryLoader.set_epoch]."""
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
        for index in range(first, len(self)):
            batch = order[index * self.batch_size : (index + 1) * self.batch_size]
            images = self.images[batch]
            if self.transform is not None:
                images = self.transform(images, batch, epoch)
            self._yielded = index + 1
            yield images, self.labels[batch]
