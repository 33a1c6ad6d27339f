"""Model specs -> ``nn.Module``: channel inference, repeats, multipliers and validation.

A spec is a mapping (plain dict, OmegaConf/Hydra node, or a YAML file)::

    in_channels: 3            # image channels
    num_classes: 10           # passed to every block that takes num_classes and is not given one
    input_size: 32            # int or [H, W]: used to check every layer's output is >= 1x1
    width_multiplier: 1.0     # scales every out_channels (rounded to channel_divisor)
    depth_multiplier: 1.0     # scales every explicit repeat (rounded up)
    channel_divisor: 1
    imports: [my_project.blocks]   # modules imported first, so their blocks can be named below
    layers:
      - {block: patch_embed, out_channels: 256, patch_size: 2}
      - {block: convmixer, kernel_size: 5, repeat: 8}
      - {block: classifier}

Each layer's ``in_channels`` is the previous layer's ``out_channels``; a layer may also carry
``repeat`` (stacked copies), ``residual: true`` (``x + block(x)`` around each copy) and ``name``
(the submodule name; the layer index otherwise). Any other top-level key is a free variable for
interpolation, e.g. ``dim: 256`` with ``out_channels: ${...dim}`` inside a layer.

The whole network is first assembled on PyTorch's ``meta`` device, where no memory is allocated
and shapes still propagate: every bad spec fails there, naming the layer, before a real tensor exists.
"""

from __future__ import annotations

import importlib
import math
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from convzoo.blocks import Residual  # importing the package also registers the built-in blocks
from convzoo.registry import BLOCKS, ConfigError

__all__ = ["ConvNet", "build_model", "build_block", "load_spec", "SPEC_KEYS", "LAYER_KEYS"]

SPEC_KEYS = ("in_channels", "num_classes", "input_size", "width_multiplier", "depth_multiplier",
             "channel_divisor", "imports", "layers", "name")
LAYER_KEYS = ("block", "repeat", "residual", "name")


class ConvNet(nn.Module):
    """A network assembled from a model spec by :func:`build_model`.

    ``layers`` holds one submodule per spec layer, named by the layer's ``name`` or index; a
    repeated layer is an ``nn.Sequential`` of its copies (``layers.1.0``, ``layers.1.1``, ...).

    Example:
        >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        ...     {"block": "conv_norm_act", "out_channels": 16}, {"block": "classifier"}]})
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, layers: "OrderedDict[str, nn.Module]", spec: dict[str, Any], out_channels: int):
        super().__init__()
        self.layers = nn.Sequential(layers)
        self.spec = spec
        self.in_channels: int = spec["in_channels"]
        self.num_classes: int | None = spec.get("num_classes")
        self.input_size: tuple[int, int] = spec["input_size"]
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def load_spec(spec: Mapping[str, Any] | DictConfig | str | Path) -> dict[str, Any]:
    """Resolve a spec (YAML path, OmegaConf node or dict) to a plain dict with defaults filled in."""
    if isinstance(spec, (str, Path)):
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(f"model spec file {str(path)!r} does not exist.")
        spec = OmegaConf.load(path)
    if not isinstance(spec, (Mapping, DictConfig)):
        raise ConfigError(f"a model spec must be a mapping with a 'layers' list, got {type(spec).__name__}.")
    try:
        resolved = OmegaConf.to_container(OmegaConf.create(spec) if not isinstance(spec, DictConfig) else spec, resolve=True)
    except Exception as error:  # OmegaConf's interpolation errors name the key; keep that, drop the traceback
        raise ConfigError(f"model spec: {error}") from None
    layers = resolved.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ConfigError("model spec needs a non-empty 'layers' list of {block: NAME, ...} entries.")
    size = resolved.get("input_size", 32)
    resolved.update(
        in_channels=resolved.get("in_channels", 3),
        input_size=tuple(size) if isinstance(size, (list, tuple)) else (size, size),
        width_multiplier=resolved.get("width_multiplier", 1.0),
        depth_multiplier=resolved.get("depth_multiplier", 1.0),
        channel_divisor=resolved.get("channel_divisor", 1),
        imports=list(resolved.get("imports") or []),
    )
    return resolved


def _import_modules(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(
                f"imports: could not import {module!r} ({error}). Install the package that provides it "
                f"or put it on PYTHONPATH."
            ) from None


def _scaled_channels(channels: int, multiplier: float, divisor: int) -> int:
    if multiplier == 1.0:
        return channels
    return max(divisor, int(round(channels * multiplier / divisor)) * divisor)


def build_block(config: Mapping[str, Any], in_channels: int) -> nn.Module:
    """Build one block from ``{"block": NAME, **args}`` for ``in_channels`` input channels.

    Example:
        >>> build_block({"block": "separable", "out_channels": 3}, in_channels=3).out_channels
        3
    """
    return BLOCKS.build({**config, "in_channels": in_channels})


def _build_copy(where: str, name: str, args: dict[str, Any]) -> nn.Module:
    BLOCKS.check_arguments(name, args, where=f"{where}: ")
    try:
        module = BLOCKS.get(name)(**args)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{where}: building block {name!r} with {args} failed: {error}") from None
    if not isinstance(getattr(module, "out_channels", None), int):
        raise ConfigError(
            f"{where}: block {name!r} ({type(module).__name__}) has no integer `out_channels` attribute; "
            f"every block must report its output channels so the next layer can be built."
        )
    return module


def _check_forward(where: str, module: nn.Module, x: torch.Tensor, residual: bool) -> torch.Tensor:
    try:
        y = module(x)
    except Exception as error:
        raise ConfigError(
            f"{where}: cannot run on its input of shape {tuple(x.shape)[1:]} (channels, height, width): {error}. "
            f"Check the earlier layers' strides, kernels and padding or the spec's input_size."
        ) from None
    if y.dim() == 4 and min(y.shape[2:]) < 1:
        raise ConfigError(f"{where}: output would be {y.shape[2]}x{y.shape[3]} for a {x.shape[2]}x{x.shape[3]} input; "
                          f"it must be at least 1x1 (reduce the stride/kernel or raise input_size).")
    if residual and y.shape != x.shape:
        raise ConfigError(
            f"{where}: residual needs a shape-preserving block, but it maps {tuple(x.shape[1:])} to "
            f"{tuple(y.shape[1:])}; drop `residual: true` or keep out_channels/stride unchanged."
        )
    if residual:
        y = x + y
    return y


def _assemble(spec: dict[str, Any], check: bool) -> ConvNet:
    channels = spec["in_channels"]
    x = torch.empty(1, channels, *spec["input_size"]) if check else None
    modules: "OrderedDict[str, nn.Module]" = OrderedDict()
    for index, layer in enumerate(spec["layers"]):
        if not isinstance(layer, Mapping) or "block" not in layer:
            raise ConfigError(f"layers[{index}]: expected a mapping with a 'block' key, got {layer!r}.")
        args = {k: v for k, v in layer.items() if k not in LAYER_KEYS}
        block = layer["block"]
        try:
            BLOCKS.get(block)
        except ConfigError as error:
            raise ConfigError(f"layers[{index}]: {error}") from None
        name = str(layer.get("name", index))
        repeat = layer.get("repeat", 1)
        if not isinstance(repeat, int) or repeat < 1:
            raise ConfigError(f"layers[{index}] ({block}): repeat must be a positive integer, got {repeat!r}.")
        if "repeat" in layer:  # only stacks scale with depth, never a stem or a head
            repeat = math.ceil(repeat * spec["depth_multiplier"])
        if "out_channels" in args and isinstance(args["out_channels"], int):
            args["out_channels"] = _scaled_channels(args["out_channels"], spec["width_multiplier"], spec["channel_divisor"])
        if spec.get("num_classes") is not None and "num_classes" not in args \
                and "num_classes" in BLOCKS.signature(block).parameters:
            args["num_classes"] = spec["num_classes"]
        copies = []
        for copy in range(repeat):
            where = f"layers[{index}]" + (f" copy {copy}" if repeat > 1 else "") + f" (block {block!r})"
            given = args.get("in_channels", channels)
            if given != channels:
                raise ConfigError(
                    f"{where}: in_channels={given} but the previous layer gives {channels} channels; "
                    f"drop in_channels from the spec (it is inferred) or fix the previous layer's out_channels."
                )
            module = _build_copy(where, block, {**args, "in_channels": channels})
            if check:
                x = _check_forward(where, module, x, bool(layer.get("residual", False)))
            if layer.get("residual", False):
                module = Residual(module)
            channels = module.out_channels
            copies.append(module)
        modules[name] = copies[0] if repeat == 1 else nn.Sequential(*copies)
    return ConvNet(modules, spec, out_channels=channels)


def build_model(spec: Mapping[str, Any] | DictConfig | str | Path) -> ConvNet:
    """Build a :class:`ConvNet` from a model spec (dict, OmegaConf node, or YAML file path).

    Example:
        >>> net = build_model("configs/model/convmixer.yaml")  # doctest: +SKIP
        >>> sum(p.numel() for p in net.parameters())  # doctest: +SKIP
        594186
    """
    spec = load_spec(spec)
    _import_modules(spec["imports"])
    with torch.device("meta"):
        _assemble(spec, check=True)
    return _assemble(spec, check=False)
