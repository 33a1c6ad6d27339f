"""Classify image files with a trained network: a convzoo checkpoint or an exported artifact.

Each image, of any size and mode, is converted to RGB (grey for a one-channel network), resized
to the network's input size (bilinear, antialiased; an image already that size is untouched),
scaled to [0, 1] and normalised with the statistics the checkpoint or artifact carries
([`DeployInfo`][convzoo.deploy.checkpoint.DeployInfo]): the same transform as evaluation in training, so a
CIFAR-10 test image saved as PNG gets exactly the prediction its tensor gets.

Examples:
    ```python
    from convzoo.deploy.predict import load_predictor, predict_files
    predictor = load_predictor("outputs/2026-11-22/12-00-00/checkpoints/best.ckpt")  # or a .onnx / .pt2 / .pt
    for path, top in predict_files(predictor, ["cat.png", "photos/"], topk=3):
        print(path, top)            # [("cat", 0.91), ("dog", 0.05), ("deer", 0.01)]
    ```
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from convzoo.data import normalize
from convzoo.deploy.checkpoint import DeployInfo, load_checkpoint
from convzoo.errors import ConfigError, at
from convzoo.network.weights import load_failure

__all__ = ["Predictor", "find_images", "load_image", "load_predictor", "predict_files", "predict_images"]


@dataclass(frozen=True)
class Predictor:
    """A network as a function from a normalised float32 batch to its class scores, and its [`DeployInfo`][convzoo.deploy.checkpoint.DeployInfo]."""

    run: Callable[[Tensor], Tensor]
    info: DeployInfo
    source: str


def load_predictor(path: str | os.PathLike, allow_imports: bool = False) -> Predictor:
    """A checkpoint (``.ckpt``) or an artifact of ``python -m convzoo export`` (``.onnx``, ``.pt2``, ``.pt``).

    A checkpoint is read as data ([`load_checkpoint`][convzoo.deploy.checkpoint.load_checkpoint]; its spec's ``imports:``
    only with ``allow_imports=True``), and so are the pickles inside a ``.pt2``; a ``.pt`` is
    TorchScript, whose reader builds TorchScript types only (no Python object a pickle names). A file
    that does not load is refused in one line naming it.
    """
    path = Path(path)
    if path.suffix == ".ckpt":
        net, info = load_checkpoint(path, allow_imports=allow_imports)

        def run(x: Tensor) -> Tensor:
            with torch.no_grad():
                return net(x)
    else:
        from convzoo.deploy.export import MissingExtraError, format_of, load_exported, read_metadata

        if not path.is_file():
            raise ConfigError(f"{str(path)!r} does not exist; pass a checkpoint (.ckpt) or an exported model.")
        try:
            fmt = format_of(path)
        except ValueError as error:
            raise ConfigError(f"{error} Or pass a checkpoint (.ckpt).") from None
        try:
            info, outputs = read_metadata(path), load_exported(path, fmt)
        except (MissingExtraError, ConfigError):
            raise
        except Exception as failure:  # not an artifact of ours: a state dict named .pt, a refused pickle, ...
            raise ConfigError(load_failure(repr(str(path)), failure, kind=f"{fmt} artifact of python -m convzoo export",
                                           fix="Pass a checkpoint (.ckpt) or a model exported by python -m convzoo "
                                               "export.")) from None

        def run(x: Tensor) -> Tensor:
            return outputs(x)[0]
    if len(info.outputs) != 1 or not info.classes:
        raise at(repr(str(path)), f"{info.name!r} has outputs {', '.join(info.outputs)} and "
                                  f"{len(info.classes)} classes; predict needs a classifier (one output: class logits).")
    return Predictor(run, info, str(path))


def _readable_suffixes() -> set[str]:
    Image.init()
    return {suffix for suffix, kind in Image.registered_extensions().items() if kind in Image.OPEN}


def find_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders searched recursively for every image format Pillow reads, sorted."""
    found: list[Path] = []
    suffixes = _readable_suffixes()
    for entry in map(Path, paths):
        if entry.is_dir():
            images = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            if not images:
                raise ConfigError(f"folder {str(entry)!r} holds no image files that Pillow reads (.png, .jpg, .bmp, "
                                  f".webp, ...).")
            found += images
        elif entry.is_file():
            found.append(entry)
        else:
            raise ConfigError(f"{str(entry)!r} does not exist; pass image files or folders of images.")
    return found


def load_image(path: str | os.PathLike, info: DeployInfo) -> Tensor:
    """One image file as a uint8 ``(in_channels, *input_size)`` tensor.

    Examples:
        >>> import tempfile
        >>> from convzoo import build_model
        >>> from convzoo.deploy import deploy_info
        >>> path = tempfile.mkdtemp() + "/grey.png"
        >>> Image.new("LA", (50, 20), (128, 255)).save(path)
        >>> info = deploy_info(build_model({"layers": [{"block": "classifier", "num_classes": 10}]}))
        >>> image = load_image(path, info)
        >>> image.shape, image.dtype, image[:, 0, 0].tolist()
        (torch.Size([3, 32, 32]), torch.uint8, [128, 128, 128])
    """
    mode = {1: "L", 3: "RGB"}.get(info.in_channels)
    if mode is None:
        raise ConfigError(f"predict reads images as RGB or grey, not for a {info.in_channels}-channel network.")
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ConfigError(f"{os.fspath(path)!r} is not an image Pillow can read: {error}") from None
    tensor = TF.pil_to_tensor(image)
    if tuple(tensor.shape[1:]) != tuple(info.input_size):
        tensor = TF.resize(tensor, list(info.input_size), antialias=True)
    return tensor


def predict_images(predictor: Predictor, images: Tensor, batch_size: int = 256) -> Tensor:
    """Class probabilities ``(N, classes)`` for uint8 images ``(N, C, H, W)`` of the network's input size."""
    info = predictor.info
    chunks = []
    for start in range(0, len(images), batch_size):
        scores = predictor.run(normalize(images[start:start + batch_size], info.mean, info.std))
        if scores.dim() != 2 or scores.shape[1] != len(info.classes):
            raise at(predictor.source, f"{info.name!r} returns {tuple(scores.shape)} per batch; predict needs "
                                       f"a classifier, whose output is class logits (batch, {len(info.classes)}).")
        chunks.append(scores.float().softmax(-1))
    return torch.cat(chunks)


def predict_files(predictor: Predictor, paths: Sequence[str | os.PathLike], topk: int = 5,
                  batch_size: int = 256) -> list[tuple[Path, list[tuple[str, float]]]]:
    """The ``topk`` (class name, probability) pairs of every image in ``paths`` (files or folders)."""
    if topk < 1:
        raise ConfigError(f"topk must be >= 1, got {topk}.")
    files = find_images(paths)
    results = []
    classes = predictor.info.classes
    for start in range(0, len(files), batch_size):  # decode one batch of files at a time
        chunk = files[start:start + batch_size]
        images = torch.stack([load_image(path, predictor.info) for path in chunk])
        top = predict_images(predictor, images, batch_size).topk(min(topk, len(classes)), dim=-1)
        for path, values, indices in zip(chunk, top.values.tolist(), top.indices.tolist()):
            results.append((path, [(classes[i], p) for i, p in zip(indices, values)]))
    return results
