"""Per-node model summary: inputs, output shapes, parameters, FLOPs and receptive fields.

One row per block copy, as the builder recorded it (``network.nodes``); for any other module,
one row per child. FLOPs come from ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs).
Receptive fields are followed per tensor through every torch function the network calls, so
they are exact for chains, skips and merges alike: a conv or pooling window grows the field by
``(kernel - 1) * dilation * jump`` and multiplies the jump (input pixels between neighbouring
outputs) by its stride; a merge takes the largest field of its inputs; resizing scales the
jump; a global pool (or anything that collapses height and width) makes it ``global``.

Examples:
    >>> import torch
    >>> from convzoo import build_model
    >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
    ...     {"block": "conv_norm_act", "out_channels": 8, "stride": 2}, {"block": "classifier"}]})
    >>> table = summary(net)
    >>> table.rows[0]["output_shape"], table.rows[0]["receptive_field"], table.total_params
    ((8, 16, 16), 3, 322)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from convzoo.network.shapes import Node
from convzoo.tables import Column, text_table, write_csv

__all__ = ["ModelSummary", "summary", "summary_nodes"]

GLOBAL = math.inf


def _first(value: Any) -> int:
    return value[0] if isinstance(value, (tuple, list)) else value


def _arg(args: Sequence[Any], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _window(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[int, int, int, bool] | None:
    """(kernel, stride, dilation, transposed) of a windowed op along the height axis, else None."""
    if func is F.conv2d:
        kernel = _arg(args, kwargs, 1, "weight").shape[-2]
        return kernel, _first(_arg(args, kwargs, 3, "stride", 1)), _first(_arg(args, kwargs, 5, "dilation", 1)), False
    if func is F.conv_transpose2d:
        kernel = _arg(args, kwargs, 1, "weight").shape[-2]
        return kernel, _first(_arg(args, kwargs, 3, "stride", 1)), _first(_arg(args, kwargs, 7, "dilation", 1)), True
    if func in (F.max_pool2d, F.avg_pool2d):
        kernel = _first(_arg(args, kwargs, 1, "kernel_size"))
        stride = _first(_arg(args, kwargs, 2, "stride")) or kernel
        dilation = _first(_arg(args, kwargs, 4, "dilation", 1)) if func is F.max_pool2d else 1
        return kernel, stride, dilation, False
    return None


def _spatial(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape[2:]) if tensor.dim() == 4 else ()


class _ReceptiveFields(TorchFunctionMode):
    """Follows ``(field, jump)`` in input pixels for every tensor computed from the input."""

    def __init__(self, source: torch.Tensor):
        super().__init__()
        # tensors are kept alive with their fields, so an id is never reused while this mode lives
        self.fields: dict[int, tuple[torch.Tensor, float, float]] = {id(source): (source, 1, 1)}

    def field_of(self, tensor: Any) -> float | None:
        entry = self.fields.get(id(tensor)) if isinstance(tensor, torch.Tensor) else None
        return None if entry is None else entry[1]

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        tracked = [self.fields[id(t)] for t in tree_leaves((args, kwargs))
                   if isinstance(t, torch.Tensor) and id(t) in self.fields]
        if not tracked:
            return result
        for output in tree_leaves(result):
            if isinstance(output, torch.Tensor):
                self.fields[id(output)] = (output, *self._propagate(func, args, kwargs, tracked, output))
        return result

    @staticmethod
    def _propagate(func: Any, args: Sequence[Any], kwargs: dict[str, Any],
                   tracked: list[tuple[torch.Tensor, float, float]], output: torch.Tensor) -> tuple[float, float]:
        size = max(entry[1] for entry in tracked)
        # the jump of the input at the output's resolution (a merge, or x * gate in squeeze-excite)
        source, _, jump = next((e for e in tracked if _spatial(e[0]) == _spatial(output)), tracked[0])
        window = _window(func, args, kwargs)
        if size == GLOBAL:
            return GLOBAL, jump
        if window is not None:
            kernel, stride, dilation, transposed = window
            if transposed:
                jump = jump / stride
                return size + (kernel - 1) * dilation * jump, jump
            return size + (kernel - 1) * dilation * jump, jump * stride
        before, after = _spatial(source), _spatial(output)
        if func is F.pad or before == after or not before:
            return size, jump
        if not after or math.prod(after) == 1:  # a global pool, a mean over height and width, a flatten
            return (GLOBAL if math.prod(before) > 1 else size), jump
        return size, jump * before[0] / after[0]  # resizing, subsampling by slicing


@dataclass
class ModelSummary:
    """Rows (one dict per node) and totals; ``str()`` gives an aligned table, [`to_csv`][convzoo.network.summary.ModelSummary.to_csv] a file.

    Made by [`summary`][convzoo.network.summary.summary]; the totals are computed from the rows.

    Attributes:
        rows: one dict per node: ``layer`` (submodule path), ``block``, ``inputs``, ``output_shape``
            (without the batch dimension), ``params``, ``trainable_params``, ``flops`` (one
            multiply-add = 2) and ``receptive_field`` (input pixels, or ``"global"``).
        input_shape: the input it was measured with, ``(channels, height, width)``.
        total_params: the parameters of every row.
        trainable_params: those with ``requires_grad``.
        total_flops: the FLOPs of one forward pass of one image.

    Examples:
        >>> from convzoo import build_model, summary
        >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        ...     {"block": "conv_norm_act", "out_channels": 8, "stride": 2}, {"block": "classifier"}]})
        >>> print(summary(net))
        input 3x32x32
        layer     block          inputs  output shape  params  trainable  MFLOPs      RF
        --------------------------------------------------------------------------------
        layers.0  conv_norm_act  input   8x16x16          232        232    0.11       3
        layers.1  classifier     0       10                90         90    0.00  global
        --------------------------------------------------------------------------------
        total                                             322        322    0.11
    """

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
        """``total_params``, ``trainable_params``, ``flops`` and ``macs`` (half the FLOPs) in one dict."""
        return {
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "flops": self.total_flops,
            "macs": self.total_flops // 2,
        }

    def records(self) -> list[dict[str, Any]]:
        """The rows with shapes and inputs as plain lists (for YAML, JSON and loggers)."""
        return [{**r, "inputs": list(r["inputs"]), "output_shape": list(r["output_shape"])} for r in self.rows]

    def csv_rows(self) -> list[dict[str, Any]]:
        """The rows with shapes as ``CxHxW`` and inputs joined by ``+`` (one CSV line each)."""
        return [{**r, "inputs": "+".join(r["inputs"]), "output_shape": _shape(r["output_shape"])} for r in self.rows]

    def to_csv(self, path: str | Path) -> Path:
        """Write [`csv_rows`][convzoo.network.summary.ModelSummary.csv_rows] to ``path``."""
        return write_csv(path, self.csv_rows())

    def __str__(self) -> str:
        total = {"layer": "total", "params": self.total_params, "trainable_params": self.trainable_params,
                 "flops": self.total_flops}
        return text_table(self.rows, _SUMMARY_COLUMNS, total=total, title=f"input {_shape(self.input_shape)}")


def _shape(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _count(n: int) -> str:
    return f"{n:,}"


_SUMMARY_COLUMNS = (
    Column("layer"),
    Column("block"),
    Column("inputs", format="+".join),
    Column("output_shape", "output shape", format=_shape),
    Column("params", format=_count, right=True),
    Column("trainable_params", "trainable", format=_count, right=True),
    Column("flops", "MFLOPs", format=lambda flops: f"{flops / 1e6:,.2f}", right=True),
    Column("receptive_field", "RF", right=True),
)


def summary_nodes(model: nn.Module) -> list[Node]:
    """What a summary has one row for: the builder's nodes, else each child (and each copy of a repeat)."""
    if getattr(model, "nodes", None):
        return list(model.nodes)
    nodes, previous = [], "input"
    for name, child in model.named_children():
        copies = list(child.named_children()) if type(child) is nn.Sequential else [("", child)]
        for index, module in copies:
            path = f"{name}.{index}" if index else name
            nodes.append(Node(path=path, layer=name, label=type(module).__name__, inputs=(previous,)))
            previous = path
    return nodes


def _display(field_size: float | None) -> int | float | str:
    if field_size is None:
        return 1
    if field_size == GLOBAL:
        return "global"
    return int(field_size) if field_size == int(field_size) else round(field_size, 2)


def summary(model: nn.Module, input_size: tuple[int, ...] | None = None, device: torch.device | str | None = None) -> ModelSummary:
    """Summarise ``model`` for one input of ``input_size`` = (channels, height, width).

    ``input_size`` defaults to a convzoo network's own ``in_channels`` and ``input_size``. The
    model runs once, in eval mode and without gradients, on ``device`` (default: where its
    parameters are); its training mode is restored afterwards. Networks with several outputs are
    summarised the same way. Any ``nn.Module`` works: one row per child (per copy of an
    ``nn.Sequential`` child) when it has no ``nodes``.

    Args:
        model: the network (a convzoo network, or any module when ``input_size`` is given).
        input_size: ``(channels, height, width)`` of one input image.
        device: where to run it.

    Returns:
        The [`ModelSummary`][convzoo.network.summary.ModelSummary]: a row per block copy, totals, ``str()`` a table.

    Examples:
        >>> from convzoo import build_model
        >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        ...     {"block": "conv_norm_act", "out_channels": 8, "stride": 2}, {"block": "classifier"}]})
        >>> table = summary(net, input_size=(3, 64, 64))
        >>> table.rows[0]["output_shape"], table.totals["macs"]
        ((8, 32, 32), 221264)
    """
    if input_size is None:
        input_size = (model.in_channels, *model.input_size)
    device = device or next(model.parameters()).device
    nodes = summary_nodes(model)
    outputs: dict[int, torch.Tensor] = {}

    def record(index: int):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            outputs[index] = output
        return hook

    modules = [model.get_submodule(node.path) for node in nodes]
    handles = [module.register_forward_hook(record(i)) for i, module in enumerate(modules)]
    was_training = model.training
    model.eval()
    x = torch.zeros(1, *input_size, device=device)
    fields = _ReceptiveFields(x)
    try:
        with torch.no_grad(), FlopCounterMode(display=False, depth=None) as counter, fields:
            model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    flops = counter.get_flop_counts()
    root_name = type(model).__name__
    rows = []
    for index, (node, module) in enumerate(zip(nodes, modules)):
        params = list(module.parameters())
        output = outputs.get(index)
        rows.append({
            "layer": node.path,
            "block": node.label,
            "inputs": tuple(node.inputs),
            "output_shape": tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else (),
            "params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in params if p.requires_grad),
            "flops": int(sum(flops.get(f"{root_name}.{node.path}", {}).values())),
            "receptive_field": _display(fields.field_of(output)),
        })
    return ModelSummary(rows, tuple(input_size))
