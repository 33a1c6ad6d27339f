"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
