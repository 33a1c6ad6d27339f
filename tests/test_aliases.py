"""Every import path that worked before the packages by concern (0.3) still works, for one release:
the documented names, the old module paths, the console scripts and every Hydra ``_target_``,
in the shipped configs and in saved runs' ``.hydra/config.yaml`` (which hold the old paths)."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_object

from convzoo._moved import MOVED

REPO = Path(__file__).resolve().parent.parent

#: (module, name) pairs README documents
DOCUMENTED = [
    ("convzoo.config", "compose"), ("convzoo.training", "train"), ("convzoo.classifier", "load_model"),
    ("convzoo.classifier", "ImageClassifier"), ("convzoo.deploy", "load_checkpoint"), ("convzoo.deploy", "deploy_info"),
    ("convzoo.export", "read_metadata"), ("convzoo.export", "export_model"), ("convzoo.predict", "load_predictor"),
    ("convzoo.layers", "conv_output_size"), ("convzoo.errors", "ConfigError"), ("convzoo.errors", "one_line"),
    ("convzoo.data", "CIFAR10DataModule"), ("convzoo.data", "ImageFolderDataModule"),
    ("convzoo.weight_init", "apply_init"), ("convzoo.weights", "read_checkpoint_file"), ("convzoo.runs", "find_runs"),
    ("convzoo.model", "build_model"), ("convzoo.spec", "upgrade_legacy_spec"), ("convzoo.cli", "train_main"),
]

#: the ``_target_`` paths of 0.2's shipped configs, as saved runs hold them
OLD_TARGETS = [
    "convzoo.callbacks.FreezeParameters", "convzoo.callbacks.Lookahead", "convzoo.callbacks.ThroughputProgressBar",
    "convzoo.divergence.NonFiniteLossGuard", "convzoo.resume.AtomicCheckpointIO", "convzoo.resume.MidEpochCheckpoint",
    "convzoo.resume.RandomState", "convzoo.run_directory.RunDirectoryGuard", "convzoo.schedules.constant",
    "convzoo.schedules.one_cycle", "convzoo.schedules.piecewise_linear", "convzoo.schedules.step_decay",
    "convzoo.schedules.warmup_cosine", "convzoo.tracking.MLFlowLogger",
]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_new_module(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_an_old_path_keeps_the_public_name_it_shadows():
    """``convzoo.summary`` is both an old module path and a public function: importing the old path
    must not replace the function (a doctest and three doc pages broke that way, depending on order)."""
    code = ("import warnings, convzoo; warnings.simplefilter('ignore'); import convzoo.summary; "
            "from convzoo.summary import ModelSummary; print(callable(convzoo.summary), ModelSummary.__name__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "ModelSummary"]


@pytest.mark.parametrize("module, name", DOCUMENTED)
def test_documented_names_import(module, name):
    assert getattr(importlib.import_module(module), name) is not None


def test_the_package_namespace():
    import convzoo

    assert [name for name in convzoo.__all__ if not hasattr(convzoo, name)] == []
    assert convzoo.__version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_console_scripts_resolve():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    for target in scripts.values():
        module, name = target.split(":")
        assert callable(getattr(importlib.import_module(module), name)), target


def _targets(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "_target_" and isinstance(value, str) and value.startswith("convzoo."):
                yield value
            yield from _targets(value)
    elif isinstance(node, list):
        for value in node:
            yield from _targets(value)


def test_every_shipped_target_resolves():
    targets = {t for path in (REPO / "configs").rglob("*.yaml") for t in _targets(yaml.safe_load(path.read_text()))}
    assert len(targets) >= len(OLD_TARGETS)
    assert [t for t in sorted(targets) if get_object(t) is None] == []


@pytest.mark.parametrize("old", OLD_TARGETS)
def test_a_saved_runs_old_target_resolves_to_the_same_object(old):
    module, name = old.rsplit(".", 1)
    assert get_object(old) is getattr(importlib.import_module(MOVED[module]), name)


def test_the_network_package_imports_neither_lightning_nor_hydra():
    code = ("import sys, convzoo.network, convzoo.specs, convzoo.layers, convzoo.blocks, convzoo.weight_init; "
            "loaded = [m for m in ('lightning', 'hydra') if m in sys.modules]; assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("old", ["convzoo.classifier", "convzoo.callbacks"])
def test_an_old_path_warns_naming_the_new_one(old):
    code = (f"import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            f"try:\n    import {old}\nexcept DeprecationWarning as warning:\n    print(warning)\n")
    printed = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert f"{old} moved to {MOVED[old]} in convzoo" in printed
