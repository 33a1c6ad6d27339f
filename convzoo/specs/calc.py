"""The two resolvers model families use inside a spec: [`calc`][convzoo.specs.calc.calc] (``${calc:16 * ${...widen}}``)
and [`lookup`][convzoo.specs.calc.lookup] (a row of a table). Importing the module registers them with OmegaConf."""

from __future__ import annotations

import ast
import operator
from typing import Any

from omegaconf import OmegaConf

from convzoo.errors import ConfigError

__all__ = ["calc", "lookup"]


def _exact_division(a: float, b: float) -> float:
    if isinstance(a, int) and isinstance(b, int):
        if a % b:
            raise ConfigError(f"{a} / {b} = {a / b:.4g} is not a whole number")
        return a // b
    return a / b


_OPERATORS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _exact_division,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}


def calc(expression: Any) -> int | float:
    """Arithmetic inside a spec: ``${calc:16 * ${...widen}}``, ``"${calc:'(${...depth} - 2) / 6'}"``.

    Numbers, ``+ - * / // % **`` and parentheses (quote the argument when it has parentheses).
    ``/`` between whole numbers must come out whole, so a depth that does not fit the family's
    formula fails instead of being rounded.

    Examples:
        >>> calc("16 * 10"), calc("(56 - 2) / 6"), calc("64 * 0.5")
        (160, 9, 32.0)
    """

    def evaluate(node: ast.AST) -> int | float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = evaluate(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ConfigError("it may only hold numbers, + - * / // % ** and parentheses")

    try:
        return evaluate(ast.parse(str(expression).strip(), mode="eval").body)
    except (ConfigError, SyntaxError, ZeroDivisionError) as error:
        raise ConfigError(f"calc: cannot evaluate {str(expression)!r}: {error}.") from None


def lookup(table: Any, *keys: Any) -> Any:
    """Pick from a table in the spec: ``${lookup:${...layouts},${...depth},0}`` is ``layouts[depth][0]``.

    An unknown key fails with the keys the table has.

    Examples:
        >>> lookup({18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}, 34, 1)
        4
    """
    value = table
    for key in keys:
        options = list(value.keys()) if hasattr(value, "keys") else list(range(len(value)))
        if key not in options:
            raise ConfigError(f"lookup: {key!r} is not one of the table's keys ({', '.join(map(str, options))})")
        value = value[key]
    return value


for _name, _resolver in (("calc", calc), ("lookup", lookup)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
