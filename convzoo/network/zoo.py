"""The model zoo by name: every config in ``configs/model/``, built like timm's ``create_model``.

Example:
    >>> from convzoo import create_model
    >>> net = create_model("resnet_cifar", depth=56, num_classes=100)
    >>> sum(p.numel() for p in net.parameters())
    858868
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convzoo.network.build import ConvNet, build_model
from convzoo.errors import ConfigError, suggest

__all__ = ["create_model", "list_models", "model_table"]


def list_models() -> list[str]:
    """The names ``create_model`` and ``model=NAME`` accept."""
    from convzoo.config import config_dir

    return sorted(path.stem for path in (config_dir() / "model").glob("*.yaml"))


def zoo_spec(name: str, **overrides: Any):
    """The composed (unresolved) spec of zoo model ``name`` with top-level keys replaced by ``overrides``."""
    from convzoo.config import compose

    names = list_models()
    if name not in names:
        raise ConfigError(f"Unknown model {name!r}.{suggest(name, names)} Models: {', '.join(names)}.")
    spec = compose([f"model={name}"]).model
    for key, value in overrides.items():
        if key not in spec:
            keys = [k for k in spec if k != "layers"]
            raise ConfigError(
                f"model {name!r} has no key {key!r}.{suggest(key, keys)} Its keys: {', '.join(keys)}."
            )
        spec[key] = value
    return spec


def create_model(name: str, outputs: Sequence[str] | str | None = None, **overrides: Any) -> ConvNet:
    """Build zoo model ``name`` (a config in ``configs/model/``) with its top-level keys overridden.

    ``create_model("resnet_cifar", depth=56, num_classes=100)`` is what
    ``model=resnet_cifar model.depth=56 model.num_classes=100`` gives ``train.py``; ``outputs``
    returns intermediate layers (see :func:`~convzoo.network.build.build_model`).
    """
    return build_model(zoo_spec(name, **overrides), outputs=outputs)


def _description(name: str) -> str:
    """A model config's header comment up to its first colon: what the model is."""
    from convzoo.config import config_dir

    header = []
    for line in (config_dir() / "model" / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# ").rstrip())
    return " ".join(header).split(": ")[0]


def model_table() -> list[dict[str, Any]]:
    """Every zoo model at its default size: parameters and FLOPs, measured on the meta device (no memory)."""
    import torch

    from convzoo.network.summary import summary

    rows = []
    for name in list_models():
        with torch.device("meta"):
            network = create_model(name)
        table = summary(network)
        rows.append({
            "model": name,
            "params": table.total_params,
            "mflops": table.total_flops / 1e6,
            "input": "x".join(map(str, (network.in_channels, *network.input_size))),
            "outputs": ", ".join(f"{i['module']} {i['num_chs']}" for i in network.feature_info),
            "description": _description(name),
        })
    return rows
