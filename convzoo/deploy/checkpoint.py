"""What a trained network needs around it to be used elsewhere: input size, normalisation, class names.

A convzoo checkpoint carries the model spec (``hyper_parameters["model"]``) and, from runs that
record them, the data's class names and normalisation statistics (``hyper_parameters["classes"]``,
``["input_mean"]``, ``["input_std"]``). What a checkpoint does not record is filled with
CIFAR-10's statistics and class names (the data every older run trained on) or, for another
number of classes, ``class_0``, ``class_1``, ...; ``DeployInfo.assumed`` lists what was filled.

Examples:
    >>> from convzoo import build_model
    >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
    ...     {"block": "conv_norm_act", "out_channels": 8}, {"block": "classifier"}]})
    >>> info = deploy_info(net)
    >>> info.input_size, info.classes[:2], info.assumed
    ((32, 32), ('airplane', 'automobile'), ('mean', 'std', 'classes'))
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import torch

from convzoo._version import __version__
from convzoo.data import CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD
from convzoo.network.build import ConvNet, build_model
from convzoo.errors import ConfigError
from convzoo.network.weights import load_weights, read_checkpoint_spec

__all__ = ["DeployInfo", "deploy_info", "load_checkpoint"]

#: The checkpoint's ``hyper_parameters`` keys read for the data's class names and statistics.
CLASSES_KEY, MEAN_KEY, STD_KEY = "classes", "input_mean", "input_std"


@dataclass(frozen=True)
class DeployInfo:
    """How to feed a network and read its outputs.

    The input is a float32 batch ``(N, in_channels, *input_size)`` of images scaled to [0, 1],
    then normalised per channel: ``(x - mean) / std``. ``outputs`` names the network's outputs in
    order (the layers; a classifier has one, its logits over ``classes``).

    Attributes:
        name: the model's name (the spec's ``name``).
        in_channels: image channels.
        input_size: ``(height, width)`` the network was trained at.
        mean: per-channel normalisation mean, in [0, 1] units.
        std: per-channel normalisation standard deviation.
        classes: one name per logit.
        outputs: the output layers' names, in order.
        assumed: the fields the source did not record, filled with defaults (CIFAR-10's statistics, ``class_<i>``).
        convzoo_version: the convzoo version that wrote the record.
    """

    name: str
    in_channels: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...]
    outputs: tuple[str, ...]
    assumed: tuple[str, ...] = ()
    convzoo_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists for tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def to_json(self) -> str:
        """[`to_dict`][convzoo.deploy.checkpoint.DeployInfo.to_dict] as a JSON string."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DeployInfo:
        """Inverse of [`to_dict`][convzoo.deploy.checkpoint.DeployInfo.to_dict]; keys that are not fields (other tools' metadata) are ignored."""
        names = {f.name for f in fields(cls)}
        known = {key: tuple(value) if isinstance(value, list) else value for key, value in values.items() if key in names}
        required = {f.name for f in fields(cls) if f.default is MISSING}
        if not required <= set(known):
            raise ValueError(f"no convzoo deployment record: {', '.join(sorted(required - set(known)))} missing "
                             f"(was the file written by python -m convzoo export?).")
        return cls(**known)

    def describe(self) -> str:
        """One line: input shape and normalisation, outputs, classes."""
        classes = ", ".join(self.classes[:4]) + (", ..." if len(self.classes) > 4 else "")
        assumed = f" ({', '.join(self.assumed)} not recorded: defaults used)" if self.assumed else ""
        return (f"input (batch, {self.in_channels}, {self.input_size[0]}, {self.input_size[1]}) float32, "
                f"pixels / 255 normalised with mean {_rounded(self.mean)} std {_rounded(self.std)}; "
                f"outputs {', '.join(self.outputs)}" + (f"; {len(self.classes)} classes: {classes}" if self.classes else "")
                + assumed)


def _rounded(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def deploy_info(net: ConvNet, classes: Sequence[str] | None = None, mean: Sequence[float] | None = None,
                std: Sequence[float] | None = None) -> DeployInfo:
    """The [`DeployInfo`][convzoo.deploy.checkpoint.DeployInfo] of a built network, given what its data recorded (``None``: not recorded).

    Unrecorded statistics are CIFAR-10's (for a 3-channel input); unrecorded class names are
    CIFAR-10's for 10 classes, else ``class_<i>``. Recorded values that do not fit the network
    (three means for a one-channel input, 10 names for 100 logits) are errors.
    """
    assumed = []
    if mean is None or std is None:
        if net.in_channels != len(CIFAR10_MEAN):
            raise ConfigError(
                f"no normalisation statistics recorded for this {net.in_channels}-channel network, and CIFAR-10's "
                f"are for 3 channels; pass mean= and std= (one value per input channel)."
            )
        mean, std = CIFAR10_MEAN, CIFAR10_STD
        assumed += ["mean", "std"]
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if not len(mean) == len(std) == net.in_channels or min(std) <= 0:
        raise ConfigError(f"normalisation mean {mean} / std {std} does not fit a {net.in_channels}-channel input "
                          f"(one value each per channel, std > 0).")
    count = net.num_classes or 0
    if classes is None:
        classes = CIFAR10_CLASSES if count == len(CIFAR10_CLASSES) else tuple(f"class_{i}" for i in range(count))
        if count:
            assumed.append("classes")
    classes = tuple(str(c) for c in classes)
    if len(classes) != count:
        raise ConfigError(f"{len(classes)} class names recorded for a network with num_classes={net.num_classes}; "
                          f"they must match one to one.")
    return DeployInfo(
        name=str(net.spec.get("name") or "model"),
        in_channels=net.in_channels,
        input_size=tuple(net.input_size),
        mean=mean,
        std=std,
        classes=classes,
        outputs=tuple(net.outputs),
        assumed=tuple(assumed),
    )


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", weights_only: bool = True,
                    allow_imports: bool = False) -> tuple[ConvNet, DeployInfo]:
    """The trained network of a convzoo checkpoint (eval mode) and what it needs to be fed.

    Needs no Lightning: the spec is rebuilt and every tensor loaded with
    [`convzoo.network.weights.load_weights`][convzoo.network.weights.load_weights] (strict: a checkpoint that does not fit is an error).
    Safe for a file from anywhere: it is read as data (``weights_only=True``, so it cannot run code),
    and modules its spec names in ``imports:`` are imported only with ``allow_imports=True`` or if
    imported already. ``weights_only=False`` runs whatever the file pickles: for a file you trust.
    """
    checkpoint, spec = read_checkpoint_spec(
        path, f"checkpoint {str(path)!r}", weights_only=weights_only, allow_imports=allow_imports,
        trusted="If you trust the file and its source, convzoo.deploy.load_checkpoint(path, weights_only=False) "
                "runs what it pickles.")
    hparams = checkpoint["hyper_parameters"]
    net = build_model(spec)
    load_weights(net, checkpoint, strict=True)
    info = deploy_info(net, hparams.get(CLASSES_KEY), hparams.get(MEAN_KEY), hparams.get(STD_KEY))
    return net.to(device).eval(), info
