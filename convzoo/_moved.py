"""Where each module that moved into a package (0.3.0: packages by concern) used to live.

An old path still imports, for one release: ``import convzoo.classifier`` gives the very module
[`convzoo.training.module`][convzoo.training.module] (one object under two names, so ``isinstance`` checks, pickles,
``monkeypatch`` and the Hydra ``_target_`` paths in saved runs' ``.hydra/config.yaml`` all keep
working), and warns once with a ``DeprecationWarning`` naming the new path. One line per old path;
`install` is called by ``convzoo/__init__.py``; the docs' migration page is generated from
`MOVED`.

Examples:
    >>> import convzoo.classifier, convzoo.training.module
    >>> convzoo.classifier is convzoo.training.module
    True
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "MOVED_IN", "install"]

MOVED_IN = "0.3.0"
"""The release that moved the modules (the old paths go in the release after it)"""

MOVED = {
    "convzoo.spec": "convzoo.specs",
    "convzoo.model": "convzoo.network.build",
    "convzoo.summary": "convzoo.network.summary",
    "convzoo.zoo": "convzoo.network.zoo",
    "convzoo.weights": "convzoo.network.weights",
    "convzoo.classifier": "convzoo.training.module",
    "convzoo.validation": "convzoo.training.config_checks",
    "convzoo.training.validation": "convzoo.training.config_checks",
    "convzoo.preflight": "convzoo.training.preflight",
    "convzoo.callbacks": "convzoo.training.callbacks",
    "convzoo.divergence": "convzoo.training.divergence",
    "convzoo.schedules": "convzoo.training.schedules",
    "convzoo.resume": "convzoo.training.resume",
    "convzoo.records": "convzoo.training.records",
    "convzoo.tracking": "convzoo.training.tracking",
    "convzoo.allocator": "convzoo.training.allocator",
    "convzoo.run_directory": "convzoo.runs.directory",
    "convzoo.plots": "convzoo.runs.plots",
    "convzoo.compare": "convzoo.runs.compare",
    "convzoo.export": "convzoo.deploy.export",
    "convzoo.predict": "convzoo.deploy.predict",
    "convzoo.deploy_cli": "convzoo.cli.deploy",
    "convzoo.errors.arguments": "convzoo.arguments",
    "convzoo.depthwise": "convzoo.ops.depthwise",
    "convzoo.norm_act": "convzoo.ops.norm_act",
    "convzoo.global_pool": "convzoo.ops.global_pool",
    "convzoo.kernels": "convzoo.ops.kernels",
}
"""Old module path -> the module that holds its code now"""


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers an old path with the new module: after ``exec_module`` the import system returns what
    ``sys.modules`` holds under the name, so the placeholder it created is dropped."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        new = MOVED[module.__name__]
        warnings.warn(f"{module.__name__} moved to {new} in convzoo {MOVED_IN}; import {new} instead "
                      f"(the old path goes in the next minor release)", DeprecationWarning, stacklevel=2)
        sys.modules[module.__name__] = importlib.import_module(new)


class _Package(ModuleType):
    """The convzoo package, guarding its public names: the import system binds every imported
    submodule on its parent, so ``import convzoo.summary`` (an old path) would otherwise replace the
    function ``convzoo.summary`` with a module for the rest of the process."""

    def __setattr__(self, name: str, value: object) -> None:
        current = vars(self).get(name)
        if (isinstance(value, ModuleType) and f"{self.__name__}.{name}" in MOVED
                and current is not None and not isinstance(current, ModuleType)):
            return
        super().__setattr__(name, value)


def install() -> None:
    """Let the old paths import (idempotent)."""
    sys.modules["convzoo"].__class__ = _Package
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())  # before any finder that might hold a stale copy of an old file
