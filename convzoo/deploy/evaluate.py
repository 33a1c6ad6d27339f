"""Test-set accuracy of a trained network: top-1, per class, and the confusion matrix.

The network is a zoo model with its shipped weights, a checkpoint, or a run directory's final
checkpoint ([`load_for_evaluation`][convzoo.deploy.evaluate.load_for_evaluation]); the images are a data set's test split as uint8 tensors,
normalised with the statistics the weights were trained with. Plain torch: no Lightning.

Examples:
    >>> import torch
    >>> from convzoo import build_model
    >>> net = build_model({"num_classes": 3, "layers": [{"block": "conv", "out_channels": 4},
    ...                                                 {"block": "classifier"}]})
    >>> images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    >>> result = evaluate(net, images, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), mean=(0.5,) * 3, std=(0.25,) * 3,
    ...                   classes=("a", "b", "c"))
    >>> result.confusion.sum().item(), len(result.per_class)
    (8, 3)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convzoo.data.augment import normalize, tta_views
from convzoo.deploy.checkpoint import DeployInfo, deploy_info, load_checkpoint
from convzoo.errors import ConfigError

__all__ = ["Evaluation", "evaluate", "load_for_evaluation", "plot_confusion"]


@dataclass(frozen=True)
class Evaluation:
    """What [`evaluate`][convzoo.deploy.evaluate.evaluate] measured.

    Attributes:
        top1: the fraction of images whose highest-scoring class is their label.
        per_class: each class's name and the fraction of its images classified right.
        confusion: ``confusion[true, predicted]`` image counts, int64 (classes x classes).
        tta: the test-time views averaged (``none``: one view).
    """

    top1: float
    per_class: tuple[tuple[str, float], ...]
    confusion: torch.Tensor
    tta: str = "none"

    def table(self) -> str:
        """Top-1 and the per-class accuracies as aligned text."""
        width = max(len(name) for name, _ in self.per_class)
        lines = [f"top-1 {100 * self.top1:.2f}% on {int(self.confusion.sum())} images (test-time views: {self.tta})"]
        lines += [f"  {name:{width}}  {100 * accuracy:6.2f}%" for name, accuracy in self.per_class]
        return "\n".join(lines)


@torch.no_grad()
def evaluate(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float],
             classes: Sequence[str], tta: str = "none", batch_size: int = 500) -> Evaluation:
    """Classify uint8 ``images`` with ``net`` (in eval mode) and compare with ``labels``.

    Args:
        net: a classifier; its logits are averaged over the test-time views.
        images: uint8 ``(N, C, H, W)``, as the data sets hold them.
        labels: int64 ``(N,)``.
        mean: the per-channel normalisation mean the network was trained with (pixels / 255).
        std: the per-channel normalisation standard deviation.
        classes: the class names, one per logit.
        tta: ``none``, ``flip`` or ``flip_translate`` (the training recipes' test-time augmentation).
        batch_size: images per forward pass.

    Returns:
        The [`Evaluation`][convzoo.deploy.evaluate.Evaluation].
    """
    if len(classes) != getattr(net, "num_classes", len(classes)):
        raise ConfigError(f"{len(classes)} class names for a network with {net.num_classes} outputs.")
    net.eval()
    predictions = []
    parameter = next(net.parameters())
    for start in range(0, len(images), batch_size):
        batch = normalize(images[start:start + batch_size].to(parameter.device), mean, std).to(parameter.dtype)
        views = tta_views(batch, tta)
        logits = sum(weight * net(view).float() for view, weight in views) / sum(weight for _, weight in views)
        predictions.append(logits.argmax(1).cpu())
    predicted = torch.cat(predictions)
    count = len(classes)
    confusion = torch.bincount(labels.cpu() * count + predicted, minlength=count * count).reshape(count, count)
    per_class = tuple((name, (confusion[i, i] / confusion[i].sum().clamp(min=1)).item()) for i, name in enumerate(classes))
    return Evaluation((predicted == labels.cpu()).float().mean().item(), per_class, confusion, tta)


def load_for_evaluation(source: str | os.PathLike, pretrained: str | None = None,
                        allow_imports: bool = False) -> tuple[nn.Module, DeployInfo]:
    """The network to evaluate and how to feed it, from a zoo name, a checkpoint or a run directory.

    Args:
        source: a zoo model name (with ``pretrained``), a checkpoint file, or a run directory (its
            ``checkpoints/last.ckpt``: the final weights, as the presets test them).
        pretrained: the weight set's tag for a zoo name (``cifar10``); model overrides as
            ``name:key=value,key=value`` (``resnet_cifar:depth=56``).
        allow_imports: let a checkpoint's spec import the modules it names (see ``load_checkpoint``).

    Returns:
        The network in eval mode and its [`DeployInfo`][convzoo.deploy.checkpoint.DeployInfo].
    """
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise ConfigError(f"{source} holds no checkpoints/last.ckpt: pass a run directory, a checkpoint or a zoo name.")
    if path.is_file():
        return load_checkpoint(path, allow_imports=allow_imports)
    from convzoo.config import override_key, override_value
    from convzoo.network.pretrained import find_pretrained, load_pretrained
    from convzoo.network.zoo import create_model, list_models

    name, _, given = str(source).partition(":")
    if name not in list_models():
        raise ConfigError(f"{source!r} is neither a file, a run directory nor a zoo model ({', '.join(list_models())}).")
    overrides = {override_key(item): override_value(item) for item in filter(None, given.split(","))}
    entry = find_pretrained(name, pretrained or "cifar10", overrides)
    net = create_model(name, **overrides)
    load_pretrained(net, entry)
    return net.eval(), deploy_info(net, entry["classes"], entry["mean"], entry["std"])


def plot_confusion(result: Evaluation, classes: Sequence[str], path: str | os.PathLike, title: str) -> Path:
    """Draw the confusion matrix (rows: true class, columns: predicted; each row as fractions) to a PNG.

    Args:
        result: what [`evaluate`][convzoo.deploy.evaluate.evaluate] returned.
        classes: the class names.
        path: the PNG to write.
        title: the figure's title (the network and data).

    Returns:
        The PNG's path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.confusion.float() / result.confusion.sum(1, keepdim=True).clamp(min=1)
    size = max(5.0, 0.45 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(classes) <= 20:
        axis.set_xticks(range(len(classes)), classes, rotation=90)
        axis.set_yticks(range(len(classes)), classes)
        for (i, j), value in ((ij, rows[ij].item()) for ij in ((i, j) for i in range(len(classes)) for j in range(len(classes)))):
            if value >= 0.005:
                axis.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=7,
                          color="white" if value > 0.5 else "black")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(f"{title}\ntop-1 {100 * result.top1:.2f}% (test-time views: {result.tta})", fontsize=9)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
