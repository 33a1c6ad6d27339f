"""Trained weights for zoo models, by name: one manifest, files that cannot run code, checked by sha256.

Each entry of ``convzoo/pretrained/manifest.json`` is one weight set: a zoo model and the overrides it
was trained with, a tag (``cifar10``), the safetensors file (inside the package, or a URL that is
downloaded once into the torch hub cache), its sha256, the data's class names and normalisation, the
measured test accuracy and how it was made (command, wall time, machine, date). Loading reads the
file with safetensors (tensors only: nothing is unpickled), after its sha256 matched the manifest.

Examples:
    >>> from convzoo import create_model, list_pretrained
    >>> [e["name"] for e in list_pretrained("resnet_cifar")][:1]
    ['resnet20']
    >>> net = create_model("resnet_cifar", depth=20, pretrained="cifar10")   # weights checked and loaded
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from convzoo.errors import CheckpointError, ConfigError, suggest

__all__ = ["WEIGHTS_DIR", "find_pretrained", "list_pretrained", "load_pretrained", "pretrained_file", "sha256"]

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "pretrained"
"""Where the shipped weight files and their manifest live (package data)."""
MANIFEST = "manifest.json"
DATA_KEYS = ("in_channels", "num_classes", "input_size")
"""Keys the data decides at training time; weights fit a run whatever its data sets them to, but the head."""


@lru_cache(maxsize=1)
def _manifest(folder: str) -> tuple[dict[str, Any], ...]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return ()
    return tuple(json.loads(path.read_text())["weights"])


def list_pretrained(model: str | None = None) -> list[dict[str, Any]]:
    """The manifest's weight sets (copies), optionally only those of one zoo model.

    Args:
        model: a zoo model name (``"resnet_cifar"``); ``None`` lists every weight set.

    Returns:
        One dict per weight set: ``name`` (its short name, as ``torch.hub`` knows it), ``model``,
        ``overrides``, ``tag``, ``file`` or ``url``, ``sha256``, ``dtype``, ``dataset``, ``classes``,
        ``mean``, ``std``, ``test_acc`` (single view), ``recipe_test_acc`` (with the recipe's
        test-time augmentation), ``tta``, ``command``, ``train_wall_s``, ``machine``, ``date``, ``size_bytes``.

    Examples:
        >>> all(entry["sha256"] for entry in list_pretrained())
        True
    """
    return [json.loads(json.dumps(entry)) for entry in _manifest(str(WEIGHTS_DIR))
            if model is None or entry["model"] == model]


def _describe(entry: Mapping[str, Any]) -> str:
    overrides = ", ".join(f"{k}={v}" for k, v in entry["overrides"].items())
    return f"{entry['tag']!r} ({overrides})" if overrides else repr(entry["tag"])


def find_pretrained(model: str, tag: str, overrides: Mapping[str, Any] | None = None,
                    ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The weight set ``tag`` of zoo model ``model`` that fits a network built with ``overrides``.

    The weights fit when the model config composed with ``overrides`` equals the one composed with
    the weight set's own overrides (so ``depth=20`` matches a set trained at the default depth 20),
    leaving out the keys in ``ignore`` (``DATA_KEYS`` when fine-tuning on other data).

    Args:
        model: a zoo model name.
        tag: the weight set's tag, e.g. ``"cifar10"``.
        overrides: the model's top-level overrides the network is built with.
        ignore: model keys that may differ (their tensors are not transferred when shapes differ).

    Returns:
        The manifest entry.

    Raises:
        ConfigError: in one line, naming the model's available tags and their overrides.

    Examples:
        >>> find_pretrained("resnet_cifar", "cifar10", {"depth": 20})["name"]
        'resnet20'
        >>> find_pretrained("resnet_cifar", "cifar10", {"depth": 32})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        convzoo.errors.ConfigError: model 'resnet_cifar' with depth=32 has no weights tagged 'cifar10'; ...
    """
    from convzoo.network.zoo import zoo_spec

    overrides = dict(overrides or {})
    entries = list_pretrained(model)
    available = ", ".join(_describe(e) for e in entries) or "none"

    def composed(values: Mapping[str, Any]) -> dict[str, Any]:
        spec = zoo_spec(model, **values)
        return {key: value for key, value in spec.items() if key not in ignore}

    tagged = [e for e in entries if e["tag"] == tag]
    if not tagged:
        raise ConfigError(f"model {model!r} has no weights tagged {tag!r}.{suggest(tag, [e['tag'] for e in entries])} "
                          f"Its weights: {available}.")
    wanted = composed(overrides)
    for entry in tagged:
        if composed(entry["overrides"]) == wanted:
            return entry
    given = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "its defaults"
    raise ConfigError(f"model {model!r} with {given} has no weights tagged {tag!r}; its weights: {available}. "
                      f"Build it with those overrides, or train your own (docs: Pretrained weights).")


def sha256(path: str | os.PathLike) -> str:
    """The file's sha256, hex.

    Args:
        path: a file.

    Returns:
        64 hex digits.

    Examples:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile() as f:
        ...     sha256(f.name)[:12]
        'e3b0c44298fc'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_file(entry: Mapping[str, Any]) -> Path:
    """The weight set's file on disk, checked against the manifest's sha256.

    A shipped file is read from the package; a ``url`` is downloaded once into the torch hub cache
    (``torch.hub.get_dir()/checkpoints``). A file whose sha256 differs is refused.

    Args:
        entry: a manifest entry (``list_pretrained()``).

    Returns:
        The file's path.

    Raises:
        CheckpointError: in one line: the file is missing, cannot be downloaded, or was altered.

    Examples:
        >>> pretrained_file(list_pretrained()[0]).suffix
        '.safetensors'
    """
    if entry.get("file"):
        path = WEIGHTS_DIR / entry["file"]
        if not path.is_file():
            raise CheckpointError(f"weights {entry['name']!r}: {path} is missing from the installed package; "
                                  f"reinstall convzoo.")
    else:
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(entry["url"]).name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                torch.hub.download_url_to_file(entry["url"], str(path), hash_prefix=entry["sha256"], progress=False)
            except (OSError, RuntimeError) as error:
                raise CheckpointError(f"weights {entry['name']!r}: cannot download {entry['url']} ({error}); connect to "
                                      f"the network once, or copy the file to {path}.") from None
    found = sha256(path)
    if found != entry["sha256"]:
        raise CheckpointError(f"weights {entry['name']!r}: {path} has sha256 {found[:16]}..., the manifest says "
                              f"{entry['sha256'][:16]}...; the file was altered or truncated: delete it and reinstall "
                              f"convzoo (or download it again).")
    return path


def load_pretrained(net: nn.Module, entry: Mapping[str, Any], strict: bool = True):
    """Load a weight set into ``net`` (safetensors: tensors only, nothing unpickled).

    Args:
        net: a network built from the entry's model and overrides.
        entry: a manifest entry.
        strict: every tensor must fit (``False`` when fine-tuning: a new head keeps its init).

    Returns:
        (WeightTransfer): what [`load_weights`][convzoo.network.weights.load_weights] did.

    Examples:
        >>> from convzoo import create_model
        >>> entry = find_pretrained("resnet_cifar", "cifar10")
        >>> report = load_pretrained(create_model("resnet_cifar"), entry)
        >>> len(report.transferred) > 0 and not report.missing
        True
    """
    from safetensors.torch import load_file

    from convzoo.network.weights import load_weights

    state = load_file(str(pretrained_file(entry)))
    return load_weights(net, state, strict=strict)
