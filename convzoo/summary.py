"""Per-layer model summary: output shapes, parameters, FLOPs and receptive fields.

FLOPs come from ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs); receptive fields
are propagated through every conv and pooling window in execution order
(``rf += (kernel - 1) * dilation * jump``, ``jump *= stride``), which is exact for chains and
residual blocks.

Example:
    >>> import torch
    >>> from convzoo import build_model
    >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
    ...     {"block": "conv_norm_act", "out_channels": 8, "stride": 2}, {"block": "classifier"}]})
    >>> table = summary(net)
    >>> table.rows[0]["output_shape"], table.rows[0]["receptive_field"], table.total_params
    ((8, 16, 16), 3, 322)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from convzoo.blocks import Residual
from convzoo.registry import BLOCKS

__all__ = ["ModelSummary", "summary", "summary_layers"]

_WINDOWED = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
_GLOBAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def _pair(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else value


def block_name(module: nn.Module) -> str:
    """Registry name of a module's block type (``residual(...)`` for wrapped blocks)."""
    if isinstance(module, Residual):
        return f"residual({block_name(module.block)})"
    for name in BLOCKS.names():
        if type(module) is BLOCKS.get(name):
            return name
    return type(module).__name__


def summary_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules a summary has one row for: each spec layer, and each copy of a repeated one."""
    root = getattr(model, "layers", model)
    prefix = "layers." if root is not model else ""
    rows = []
    for name, module in root.named_children():
        if type(module) is nn.Sequential:  # a repeated layer: one row per copy
            rows.extend((f"{prefix}{name}.{i}", m) for i, m in module.named_children())
        else:
            rows.append((f"{prefix}{name}", module))
    return rows


@dataclass
class ModelSummary:
    """Rows (one dict per layer) and totals; ``str()`` gives an aligned table."""

    rows: list[dict[str, Any]]
    input_shape: tuple[int, ...]
    total_params: int = field(init=False)
    trainable_params: int = field(init=False)
    total_flops: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_params = sum(r["params"] for r in self.rows)
        self.trainable_params = sum(r["trainable_params"] for r in self.rows)
        self.total_flops = sum(r["flops"] for r in self.rows)

    @property
    def totals(self) -> dict[str, int]:
        return {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "flops": self.total_flops,
            "macs": self.total_flops // 2,
        }

    def __str__(self) -> str:
        header = ("layer", "block", "output shape", "params", "trainable", "MFLOPs", "RF")
        lines = [
            (r["layer"], r["block"], "x".join(map(str, r["output_shape"])), f"{r['params']:,}",
             f"{r['trainable_params']:,}", f"{r['flops'] / 1e6:,.2f}", str(r["receptive_field"]))
            for r in self.rows
        ]
        total = ("total", "", "", f"{self.total_params:,}", f"{self.trainable_params:,}",
                 f"{self.total_flops / 1e6:,.2f}", "")
        widths = [max(len(row[i]) for row in (header, *lines, total)) for i in range(len(header))]
        right = {3, 4, 5, 6}

        def fmt(row: tuple[str, ...]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(fmt(header))
        shape = "x".join(map(str, self.input_shape))
        return "\n".join(line.rstrip() for line in [f"input {shape}", fmt(header), rule, *map(fmt, lines), rule, fmt(total)])


def summary(model: nn.Module, input_size: tuple[int, ...] | None = None, device: torch.device | str | None = None) -> ModelSummary:
    """Summarise ``model`` for one input of ``input_size`` = (channels, height, width).

    ``input_size`` defaults to a :class:`~convzoo.model.ConvNet`'s own ``in_channels`` and
    ``input_size``. The model runs once, in eval mode and without gradients, on ``device``
    (default: where its parameters are).
    """
    if input_size is None:
        input_size = (model.in_channels, *model.input_size)
    device = device or next(model.parameters()).device
    layers = summary_layers(model)
    owner = {id(m): i for i, (_, layer) in enumerate(layers) for m in layer.modules()}
    shapes: dict[int, tuple[int, ...]] = {}
    field_at: dict[int, int | str] = {}
    state = {"rf": 1, "jump": 1}

    def track_window(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        if isinstance(module, _GLOBAL):
            state["rf"] = "global"
        elif state["rf"] != "global":
            kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            dilation = _pair(getattr(module, "dilation", 1))
            state["rf"] += (kernel - 1) * dilation * state["jump"]
            state["jump"] *= stride
        if id(module) in owner:
            field_at[owner[id(module)]] = state["rf"]

    def track_layer(index: int):
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            shapes[index] = tuple(output.shape[1:])
            field_at.setdefault(index, state["rf"])
        return hook

    handles = [m.register_forward_hook(track_window) for m in model.modules() if isinstance(m, _WINDOWED + _GLOBAL)]
    handles += [layer.register_forward_hook(track_layer(i)) for i, (_, layer) in enumerate(layers)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    flops = counter.get_flop_counts()
    root_name = type(model).__name__
    rows = []
    for index, (name, layer) in enumerate(layers):
        params = list(layer.parameters())
        rows.append({
            "layer": name,
            "block": block_name(layer),
            "output_shape": shapes.get(index, ()),
            "params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in params if p.requires_grad),
            "flops": int(sum(flops.get(f"{root_name}.{name}", {}).values())),
            "receptive_field": field_at.get(index, 1),
        })
    return ModelSummary(rows, tuple(input_size))
