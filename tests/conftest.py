"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import convzoo.blocks  # noqa: F401 -- fill the registries before any test saves them: a module first
import convzoo.weight_init  # noqa: F401 -- imported inside a test would otherwise register for that test only
from convzoo import registry


@pytest.fixture(autouse=True)
def clean_registries():
    """Every test starts from the registries as the package fills them and leaves no entry behind:
    blocks, norms or schemes a test registers are gone after it, whatever the outcome."""
    tables = [value for value in vars(registry).values() if isinstance(value, registry.Registry)]
    saved = [(table._entries.copy(), table._aliases.copy()) for table in tables]
    yield
    for table, (entries, aliases) in zip(tables, saved):
        table._entries, table._aliases = entries, aliases


@pytest.fixture
def cifar10_root() -> Path:
    """The real CIFAR-10 root from ``CONVZOO_DATA``.

    Unset: the test is skipped. Set: the path is returned as is, so a wrong or empty path makes the
    test fail (with the loader's "not found" message) instead of silently skipping.
    """
    root = os.environ.get("CONVZOO_DATA")
    if not root:
        pytest.skip("CONVZOO_DATA is not set (point it at a folder holding cifar-10-batches-py/)")
    return Path(root)


@pytest.fixture(autouse=True)
def mlflow_store_in_tmp(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """logger=mlflow defaults to ./mlruns; tests (and the train.py processes they start) use a temporary store."""
    store = tmp_path_factory.mktemp("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A convzoo checkpoint: a narrow airbench (whitening stem, batch norms) trained for one
    epoch on synthetic data, for the export, predict and weight-transfer tests (a few seconds)."""
    from omegaconf import open_dict

    from convzoo.config import compose
    from convzoo.training import train

    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose(["data=synthetic", "model=airbench", "model.width_multiplier=0.125", "trainer.max_epochs=1",
                   "data.num_train=384", "data.val_size=128", "data.batch_size=64", "data_init_images=256",
                   "test=false", "logger=csv", "callbacks=default"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"
