"""The command lines: training (`convzoo.cli.train`, ``train.py`` and ``convzoo-train``) and the
deploy commands of ``python -m convzoo`` (`convzoo.cli.deploy`).

The training names are looked up on first use, so ``python -m convzoo`` does not import Hydra.
"""

import importlib
from typing import Any

__all__ = ["check_command_line", "run", "train_main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("convzoo.cli.train"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
