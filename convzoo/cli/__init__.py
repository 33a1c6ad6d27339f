"""Every command line: training (`convzoo.cli.train`: ``train.py`` and ``convzoo-train``) and ``python -m convzoo``
(`convzoo.cli.main`, with the subcommands of `convzoo.cli.inspect` and `convzoo.cli.deploy`).

The training names are looked up on first use, so ``python -m convzoo`` does not import Hydra.
"""

import importlib
from typing import Any

__all__ = ["check_command_line", "run", "train_main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("convzoo.cli.train"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
