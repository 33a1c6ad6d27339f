"""The record of an initialisation: one [`InitEntry`][convzoo.weight_init.record.InitEntry] per parameter, what it got and its
measured statistics, plus the choices made (``InitRecord.config``, for hyperparameter logging).

Examples:
    >>> from torch import nn
    >>> record = InitRecord.measure(nn.Linear(4, 2), {})
    >>> [(entry.name, entry.scheme) for entry in record]
    [('weight', 'unchanged'), ('bias', 'unchanged')]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from convzoo.tables import Column, text_table, write_csv

__all__ = ["InitEntry", "InitRecord", "tensor_stats", "PRETRAINED", "UNCHANGED"]

PRETRAINED = "pretrained"
"""What the record says of a parameter copied from a checkpoint."""
UNCHANGED = "unchanged"
"""What the record says of a parameter no rule covered."""


def tensor_stats(tensor: Tensor) -> tuple[float, float]:
    """Mean and std (correction 0) of a tensor, in float64 so the record is an accurate check
    whatever the parameter dtype; NaN for empty or meta tensors."""
    if tensor.numel() == 0 or tensor.is_meta:
        return math.nan, math.nan
    values = tensor.detach().to(torch.float64)
    return values.mean().item(), values.std(correction=0).item()


@dataclass
class InitEntry:
    """What happened to one parameter. ``mean``/``std`` (std with correction 0) are measured
    after initialisation; ``scheme`` is ``"unchanged"`` when no rule covered the parameter."""

    name: str
    shape: tuple[int, ...]
    numel: int
    layer_type: str
    scheme: str
    args: dict[str, Any]
    mean: float
    std: float

    def as_row(self) -> dict[str, Any]:
        """Flat, scalar-only dict (shape as ``"64x3x3x3"``, args as ``"k=v k=v"``)."""
        return {
            "name": self.name,
            "layer_type": self.layer_type,
            "shape": "x".join(str(s) for s in self.shape) or "scalar",
            "numel": self.numel,
            "scheme": self.scheme,
            "args": " ".join(f"{k}={v}" for k, v in self.args.items()),
            "mean": self.mean,
            "std": self.std,
        }


_RECORD_COLUMNS = (
    Column("name"), Column("layer_type", "layer"), Column("shape"), Column("scheme"), Column("args"),
    Column("mean", format="{:+.4g}".format), Column("std", format="{:.4g}".format),
)


class InitRecord(list):
    """The list of [`InitEntry`][convzoo.weight_init.record.InitEntry] returned by [`apply_init`][convzoo.weight_init.apply.apply_init], one per parameter, in
    ``model.named_parameters()`` order, plus ``config`` (the choices made, for hparam logging).

    Examples:
        >>> from torch import nn
        >>> from convzoo.weight_init import apply_init
        >>> record = apply_init(nn.Linear(4, 2), "xavier_uniform")
        >>> [row["scheme"] for row in record.as_rows()]
        ['xavier_uniform', 'constant']
        >>> record.config["scheme"], record.config["bias"]
        ('xavier_uniform', 0.0)
    """

    def __init__(self, entries: list[InitEntry] = (), config: dict[str, Any] | None = None):
        super().__init__(entries)
        self.config: dict[str, Any] = config or {}

    def as_rows(self) -> list[dict[str, Any]]:
        """One flat dict per parameter, for loggers and CSV."""
        return [entry.as_row() for entry in self]

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write [`as_rows`][convzoo.weight_init.record.InitRecord.as_rows] to ``path`` (parent folders are created)."""
        write_csv(path, self.as_rows(), fieldnames=list(InitEntry.__dataclass_fields__))

    @classmethod
    def measure(cls, model: nn.Module, done: Mapping[int, tuple[str, dict[str, Any]]],
                config: dict[str, Any] | None = None) -> InitRecord:
        """One entry per parameter of ``model`` with its measured mean/std; ``done`` maps
        ``id(parameter)`` to the ``(scheme, args)`` it got, the rest are [`UNCHANGED`][convzoo.weight_init.record.UNCHANGED]."""
        entries: list[InitEntry] = []
        seen: set[int] = set()
        # Walk modules, not named_parameters(), to know each parameter's owning layer type; the order
        # (and the de-duplication of shared parameters) is the same as named_parameters().
        for module_name, module in model.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                if id(param) in seen:
                    continue
                seen.add(id(param))
                scheme, args = done.get(id(param), (UNCHANGED, {}))
                mean, std = tensor_stats(param)
                entries.append(InitEntry(
                    name=f"{module_name}.{param_name}" if module_name else param_name,
                    shape=tuple(param.shape), numel=param.numel(), layer_type=type(module).__name__,
                    scheme=scheme, args=args, mean=mean, std=std,
                ))
        return cls(entries, config)

    def by_name(self) -> dict[str, InitEntry]:
        """Entries keyed by parameter name."""
        return {entry.name: entry for entry in self}

    def __str__(self) -> str:
        return text_table(self.as_rows(), _RECORD_COLUMNS)

    def __repr__(self) -> str:
        return f"InitRecord({len(self)} parameters, config={self.config!r})"


