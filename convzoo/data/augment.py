"""Batched tensor augmentation: whole-batch ops on any device, no per-image Python loop.

Every random op draws its randomness for the whole batch at once, from ``generator`` when given
(on the generator's device, then moved) or from torch's global RNG on the images' device, which
``lightning.seed_everything`` seeds.

Examples:
    >>> import torch
    >>> from convzoo.data.augment import BatchAugment, Normalize
    >>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    >>> train, evaluate = BatchAugment(crop_padding=4, flip=True, cutout=8), Normalize()
    >>> train(images).dtype, evaluate(images).shape
    (torch.float32, torch.Size([8, 3, 32, 32]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convzoo.errors import ConfigError, suggest

__all__ = [
    "TTA_MODES",
    "tta_views",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "AlternatingFlip",
    "BatchAugment",
    "Normalize",
    "channel_stats",
    "cutout",
    "normalize",
    "rand_augment",
    "random_crop",
    "random_flip",
    "resize",
]

PADDING_MODES = ("reflect", "zeros")
FLIP_MODES = (True, False, "alternating")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""CIFAR-10's published per-channel mean (RGB, pixels / 255): the default normalisation."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""CIFAR-10's published per-channel standard deviation (RGB, pixels / 255)."""


def _device(images: Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else images.device


def _randint(high: int, size: tuple[int, ...], images: Tensor, generator: torch.Generator | None) -> Tensor:
    drawn = torch.randint(0, high, size, generator=generator, device=_device(images, generator))
    return drawn.to(images.device, non_blocking=True)


def _rand(size: tuple[int, ...], images: Tensor, generator: torch.Generator | None) -> Tensor:
    drawn = torch.rand(size, generator=generator, device=_device(images, generator))
    return drawn.to(images.device, non_blocking=True)


def normalize(
    images: Tensor,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    dtype: torch.dtype = torch.float32,
    channels_last: bool = False,
) -> Tensor:
    """``(images - mean) / std`` per channel as a new ``dtype`` tensor; uint8 input is scaled by 1/255.

    Float input is taken to be in [0, 1]. ``channels_last`` returns NHWC memory layout (same shape),
    which is what cuDNN convolutions prefer under mixed precision.

    Examples:
        >>> x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
        >>> normalize(x, mean=(0.5,) * 3, std=(0.5,) * 3)[0, :, 0, 0].tolist()
        [1.0, 1.0, 1.0]
    """
    pixel = 255.0 if images.dtype == torch.uint8 else 1.0
    mean_t = torch.tensor(mean, dtype=torch.float64).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float64).view(1, -1, 1, 1)
    # One fused multiply-add on a fresh copy instead of (x / 255 - mean) / std: fewer full-size temporaries.
    scale = (1.0 / (std_t * pixel)).to(images.device, dtype)
    shift = (-mean_t / std_t).to(images.device, dtype)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    out = images.to(dtype=dtype, memory_format=memory_format, copy=True)
    return out.mul_(scale).add_(shift)


def random_crop(
    images: Tensor,
    padding: int,
    generator: torch.Generator | None = None,
    padding_mode: str = "reflect",
) -> Tensor:
    """Translate each image by a random (dy, dx) in ``[-padding, padding]``: a random same-size crop
    of the image padded by ``padding`` px (``"reflect"`` or ``"zeros"``).

    Instead of materialising the padded batch, each output pixel gathers its source pixel through
    reflected/clamped indices: two gathers for the whole batch, no Python loop, no host sync.

    Examples:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> torch.equal(random_crop(x, 0), x)
        True
        >>> random_crop(x, 2).shape
        torch.Size([1, 1, 4, 4])
    """
    if padding < 0:
        raise ValueError(f"random_crop padding must be >= 0, got {padding}")
    if padding == 0:
        return images
    n, c, h, w = images.shape
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding must be smaller than the image ({h}x{w}), got {padding}")
    if padding_mode not in ("reflect", "zeros"):
        raise ValueError(f"padding_mode must be 'reflect' or 'zeros', got {padding_mode!r}")
    # offset s in [0, 2p] picks the window starting at row s of the padded image = source row i + s - p
    offsets = _randint(2 * padding + 1, (n, 2), images, generator) - padding
    rows = torch.arange(h, device=images.device) + offsets[:, :1]
    cols = torch.arange(w, device=images.device) + offsets[:, 1:]
    if padding_mode == "reflect":
        rows = (h - 1) - ((h - 1) - rows.abs()).abs()
        cols = (w - 1) - ((w - 1) - cols.abs()).abs()
        inside = None
    else:
        inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < w))[:, None, None, :]
        rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    out = images.gather(2, rows[:, None, :, None].expand(n, c, h, w))
    out = out.gather(3, cols[:, None, None, :].expand(n, c, h, w))
    return out if inside is None else out.masked_fill(~inside, 0)


def resize(images: Tensor, size: int) -> Tensor:
    """Resize a float batch to ``size`` x ``size`` (bilinear, antialiased when shrinking), keeping
    its memory format; the identity at the current size. Progressive resizing trains early epochs
    on smaller images this way.

    Examples:
        >>> resize(torch.ones(2, 3, 32, 32), 24).shape
        torch.Size([2, 3, 24, 24])
    """
    if size < 1:
        raise ValueError(f"resize size must be >= 1, got {size}")
    if tuple(images.shape[-2:]) == (size, size):
        return images
    channels_last = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
    out = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def random_flip(images: Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> Tensor:
    """Mirror each image left-right with probability ``p``.

    The choice is ``torch.rand(N, generator=generator) < p``, so the same seeded generator reproduces it.

    Examples:
        >>> x = torch.arange(4.0).view(1, 1, 1, 4)
        >>> random_flip(x, p=1.0).flatten().tolist()
        [3.0, 2.0, 1.0, 0.0]
    """
    chosen = _rand((len(images),), images, generator) < p
    return torch.where(chosen.view(-1, 1, 1, 1), images.flip(-1), images)


class AlternatingFlip:
    """airbench's flip, a transform of ``(images, index, epoch)``: a fixed random half of the
    ``num_images`` images (chosen by ``seed``) is mirrored in even epochs, the other half in odd ones,
    so every image is seen both ways within two epochs, which random flipping only achieves on average.

    ``index`` holds the images' positions in the data set; [`InMemoryLoader`][convzoo.data.loader.InMemoryLoader]
    passes them (its ``transform``).

    Examples:
        >>> flip = AlternatingFlip(4, seed=0)
        >>> x = torch.arange(8.0).view(4, 1, 1, 2)
        >>> mirrored = lambda epoch: flip(x, torch.arange(4), epoch).ne(x).flatten(1).all(1)
        >>> (mirrored(0) ^ mirrored(1)).all().item(), torch.equal(mirrored(0), mirrored(2))
        (True, True)
    """

    def __init__(self, num_images: int, seed: int = 0):
        self.flip_first = torch.rand(num_images, generator=torch.Generator().manual_seed(seed)) < 0.5

    def __call__(self, images: Tensor, index: Tensor, epoch: int) -> Tensor:
        if self.flip_first.device != index.device:  # moved once, to where the data lives
            self.flip_first = self.flip_first.to(index.device)
        flip = (self.flip_first[index] ^ (epoch % 2 == 1)).view(-1, 1, 1, 1)
        return torch.where(flip, images.flip(-1), images)


def cutout(images: Tensor, size: int, generator: torch.Generator | None = None, fill: float = 0.0) -> Tensor:
    """Set one ``size`` x ``size`` square per image to ``fill``, centred uniformly at random
    (squares may be clipped by the border, as in DeVries & Taylor 2017).

    Applied after [`normalize`][convzoo.data.augment.normalize], ``fill=0`` means "the dataset mean colour".

    Examples:
        >>> x = torch.ones(2, 3, 8, 8)
        >>> (cutout(x, 4) == 0).sum(dim=(1, 2, 3)).le(3 * 16).all().item()
        True
    """
    if size <= 0:
        return images
    n, _, h, w = images.shape
    centres = torch.stack([_randint(h, (n,), images, generator), _randint(w, (n,), images, generator)], dim=1)
    top_left = centres - size // 2
    ys = torch.arange(h, device=images.device)
    xs = torch.arange(w, device=images.device)
    in_rows = (ys >= top_left[:, :1]) & (ys < top_left[:, :1] + size)
    in_cols = (xs >= top_left[:, 1:]) & (xs < top_left[:, 1:] + size)
    # clone + in-place fill keeps the memory format (out-of-place masked_fill drops channels_last)
    return images.clone().masked_fill_((in_rows[:, :, None] & in_cols[:, None, :])[:, None], fill)


def rand_augment(images: Tensor, num_ops: int = 2, magnitude: int = 9, group_size: int = 64) -> Tensor:
    """torchvision's ``v2.RandAugment`` on uint8 images, drawing new ops for every ``group_size`` images.

    RandAugment on a batched tensor applies the *same* ops to all of it, so the batch is split into
    groups: ``group_size=1`` is the per-image recipe (one Python call per image, slow), larger groups
    cost fewer calls but correlate the ops within a group. 32-128 keeps the overhead small while a
    512 batch still sees 4-16 different op pairs. Uses torch's global RNG (torchvision takes no generator).

    Examples:
        >>> x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
        >>> rand_augment(x, num_ops=2, magnitude=9, group_size=4).shape
        torch.Size([8, 3, 32, 32])
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"rand_augment expects uint8 images (before normalize), got {images.dtype}")
    from torchvision.transforms import v2

    policy = v2.RandAugment(num_ops=num_ops, magnitude=magnitude)
    return torch.cat([policy(group) for group in images.split(group_size)])


# torchvision's RandAugment has 31 magnitude bins (0..30) by default.
_RAND_AUGMENT_LIMITS = {"num_ops": (0, None), "magnitude": (0, 30), "group_size": (1, None)}


def _check_rand_augment(options: Mapping[str, Any]) -> None:
    for key, value in options.items():
        if key not in _RAND_AUGMENT_LIMITS:
            raise ConfigError(f"rand_augment.{key} is not known.{suggest(key, _RAND_AUGMENT_LIMITS)} "
                              f"It accepts: {', '.join(_RAND_AUGMENT_LIMITS)}.")
        low, high = _RAND_AUGMENT_LIMITS[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
            accepted = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
            raise ConfigError(f"rand_augment.{key}={value!r} must be {accepted}.")


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 (N, C, H, W) images, in [0, 1] units.

    Sums are exact integers, accumulated over chunks of about 4M values, so a large dataset
    needs no float copy of itself.

    Examples:
        >>> images = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1).expand(2, 3, 2, 2)
        >>> channel_stats(images)
        ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or not len(images):
        raise ValueError(f"channel_stats expects uint8 (N, C, H, W) images with N > 0, got {images.dtype} {tuple(images.shape)}")
    total = torch.zeros(images.shape[1], dtype=torch.int64)
    squares = torch.zeros(images.shape[1], dtype=torch.int64)
    for chunk in images.split(max(1, 2**22 // images[0].numel())):
        chunk = chunk.to(torch.int64)
        total += chunk.sum(dim=(0, 2, 3))
        squares += chunk.square().sum(dim=(0, 2, 3))
    count = images.numel() // images.shape[1]
    mean = total.double() / count
    std = (squares.double() / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


class Normalize(nn.Module):
    """The evaluation transform: [`normalize`][convzoo.data.augment.normalize] with fixed statistics and layout.

    Examples:
        >>> Normalize(channels_last=True)(torch.zeros(2, 3, 4, 4, dtype=torch.uint8)).is_contiguous(
        ...     memory_format=torch.channels_last)
        True
    """

    def __init__(
        self,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.mean, self.std = tuple(mean), tuple(std)
        self.channels_last, self.dtype = channels_last, dtype

    def forward(self, images: Tensor) -> Tensor:
        """[`normalize`][convzoo.data.augment.normalize] ``images`` (uint8) with this transform's statistics, dtype and layout."""
        return normalize(images, self.mean, self.std, self.dtype, self.channels_last)

    def extra_repr(self) -> str:
        """The statistics, layout and dtype, for ``repr``."""
        return f"mean={self.mean}, std={self.std}, channels_last={self.channels_last}, dtype={self.dtype}"


class BatchAugment(nn.Module):
    """The training transform for a uint8 batch: random crop, flip, RandAugment (optional), then
    [`normalize`][convzoo.data.augment.normalize], then [`resize`][convzoo.data.augment.resize] (optional), then cutout (so its squares hold the mean colour).

    Args:
        crop_padding: max translation in px (0 disables the crop).
        flip: random horizontal flip with p=0.5 (``True``); ``"alternating"``: no random flip here, the
            loader mirrors each image every other epoch instead ([`AlternatingFlip`][convzoo.data.augment.AlternatingFlip], given to
            [`InMemoryLoader`][convzoo.data.loader.InMemoryLoader] as its ``transform`` by the data modules).
        cutout: side of the cutout square in px (0 disables it).
        rand_augment: ``{"num_ops": 2, "magnitude": 9, "group_size": 64}`` to enable RandAugment
            (see [`rand_augment`][convzoo.data.augment.rand_augment]), ``None`` to skip it.
        padding_mode: ``"reflect"`` (airbench) or ``"zeros"`` (classic torchvision RandomCrop).
        size: output side length (``None``: the input's). A plain attribute, so
            [`ProgressiveResizing`][convzoo.training.callbacks.ProgressiveResizing] can change it between epochs.
        mean: per-channel mean in [0, 1] units, for [`normalize`][convzoo.data.augment.normalize].
        std: per-channel standard deviation in [0, 1] units.
        channels_last: return NHWC-strided batches.
        dtype: the output's dtype.

    Examples:
        >>> augment = BatchAugment(crop_padding=4, flip=True, rand_augment={"num_ops": 2, "magnitude": 9})
        >>> augment(torch.zeros(4, 3, 32, 32, dtype=torch.uint8)).shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(
        self,
        crop_padding: int = 4,
        flip: bool | str = True,
        cutout: int = 0,
        rand_augment: Mapping[str, Any] | None = None,
        padding_mode: str = "reflect",
        size: int | None = None,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if padding_mode not in PADDING_MODES:
            raise ConfigError(f"padding_mode={padding_mode!r} is not known; use one of {', '.join(PADDING_MODES)}."
                              f"{suggest(str(padding_mode), PADDING_MODES)}")
        for name, value in (("crop_padding", crop_padding), ("cutout", cutout)):
            if value < 0:
                raise ConfigError(f"{name}={value} must be >= 0 pixels (0 turns it off).")
        if flip not in FLIP_MODES or not isinstance(flip, (bool, str)):
            raise ConfigError(f"flip={flip!r} is not known; use true, false or alternating.")
        self.crop_padding, self.flip, self.cutout, self.padding_mode = crop_padding, flip, cutout, padding_mode
        self.size = size
        self.rand_augment = dict(rand_augment) if rand_augment is not None else None
        if self.rand_augment is not None:
            _check_rand_augment(self.rand_augment)
        self.normalize = Normalize(mean, std, channels_last, dtype)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The augmented, normalised batch.

        Args:
            images: a uint8 ``(N, C, H, W)`` batch.
            generator: the random generator of the crop, flip and cutout (default: torch's global one).

        Returns:
            A float batch of this transform's dtype and layout (``size`` when it resizes).
        """
        if self.crop_padding:
            images = random_crop(images, self.crop_padding, generator, self.padding_mode)
        if self.flip is True:
            images = random_flip(images, generator)
        if self.rand_augment is not None:
            images = rand_augment(images, **self.rand_augment)
        images = self.normalize(images)
        if self.size is not None:
            images = resize(images, self.size)
        return cutout(images, self.cutout, generator) if self.cutout else images

    def extra_repr(self) -> str:
        """The augmentation settings, for ``repr``."""
        return (
            f"crop_padding={self.crop_padding}, padding_mode={self.padding_mode!r}, flip={self.flip}, "
            f"cutout={self.cutout}, rand_augment={self.rand_augment}, size={self.size}"
        )


TTA_MODES = ("none", "flip", "flip_translate")
"""Test-time augmentation modes: the recipes' ``module.tta`` and ``python -m convzoo evaluate --tta``"""


def tta_views(x: Tensor, mode: str) -> list[tuple[Tensor, float]]:
    """Test-time views of a batch and their weights: the batch, its mirror (``flip``), and 1-px
    diagonal shifts of both (``flip_translate``, airbench94's six views).

    Args:
        x: a normalised batch ``(N, C, H, W)``.
        mode: one of ``TTA_MODES``.

    Returns:
        ``(view, weight)`` pairs; average the logits with these weights.

    Examples:
        >>> [w for _, w in tta_views(torch.zeros(1, 3, 4, 4), "flip_translate")]
        [1.0, 1.0, 0.5, 0.5, 0.5, 0.5]
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"tta={mode!r} is not known; use one of {', '.join(TTA_MODES)}.{suggest(str(mode), TTA_MODES)}")
    views = [(x, 1.0)]
    if mode in ("flip", "flip_translate"):
        views.append((x.flip(-1), 1.0))
    if mode == "flip_translate":
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        for shifted in (padded[..., :-2, :-2], padded[..., 2:, 2:]):
            views += [(shifted, 0.5), (shifted.flip(-1), 0.5)]
    return views
