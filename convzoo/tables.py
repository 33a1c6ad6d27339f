"""Rows of dicts as an aligned text table or a CSV file: the one formatter behind the model summary
and the init record (plain Python, no torch).

Examples:
    >>> rows = [{"layer": "stem", "params": 448}, {"layer": "head", "params": 650}]
    >>> print(text_table(rows, [Column("layer"), Column("params", format="{:,}".format, right=True)],
    ...                  total={"layer": "total", "params": 1098}))
    layer  params
    -------------
    stem      448
    head      650
    -------------
    total   1,098
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Column", "text_table", "write_csv"]


@dataclass(frozen=True)
class Column:
    """One column of a text table: the row key it shows, its heading (default: the key), how a
    value is written, and whether it is right-aligned (numbers)."""

    key: str
    heading: str | None = None
    format: Callable[[Any], str] = str
    right: bool = False


def text_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column], total: Mapping[str, Any] | None = None,
               title: str | None = None) -> str:
    """Columns two spaces apart, each as wide as its widest cell, trailing spaces dropped.

    With ``total`` (a row; a column it lacks stays blank) the body sits between two rules and the
    total follows; ``title`` is a first line of its own.
    """
    def cells(row: Mapping[str, Any]) -> list[str]:
        return [column.format(row[column.key]) if column.key in row else "" for column in columns]

    header = [column.heading or column.key for column in columns]
    body = [cells(row) for row in rows]
    footer = [cells(total)] if total is not None else []
    widths = [max(len(line[i]) for line in (header, *body, *footer)) for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(value.rjust(width) if column.right else value.ljust(width)
                         for value, width, column in zip(values, widths, columns))

    lines = [line(header)]
    if total is not None:
        rule = "-" * len(line(header))
        lines += [rule, *map(line, body), rule, *map(line, footer)]
    else:
        lines += map(line, body)
    return "\n".join(text.rstrip() for text in ([title] if title is not None else []) + lines)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None = None) -> Path:
    """Write ``rows`` (flat dicts) with a header line (``fieldnames``, default: the first row's keys),
    creating parent folders; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(fieldnames) if fieldnames is not None else list(rows[0]) if rows else []
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
