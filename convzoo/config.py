"""Composing the repo's Hydra configs outside ``train.py`` (CLI helpers, tests, notebooks).

Example:
    >>> cfg = compose(["model=convmixer", "model.dim=128"])  # doctest: +SKIP
    >>> cfg.model.dim  # doctest: +SKIP
    128
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from convzoo.registry import ConfigError

__all__ = ["config_dir", "compose", "model_config"]


def config_dir() -> Path:
    """The config tree: ``$CONVZOO_CONFIG_DIR``, else the ``configs/`` beside the package (a source
    checkout), else the ``convzoo.configs`` package an installed wheel carries."""
    checkout = Path(__file__).resolve().parent.parent / "configs"
    if os.environ.get("CONVZOO_CONFIG_DIR"):
        path = Path(os.environ["CONVZOO_CONFIG_DIR"])
    elif (checkout / "train.yaml").is_file():
        path = checkout
    else:
        path = Path(str(resources.files("convzoo.configs")))
    if not (path / "train.yaml").is_file():
        raise ConfigError(
            f"no Hydra config tree at {path} (looked for train.yaml). Reinstall convzoo (its wheel carries the "
            f"configs as convzoo.configs) or set CONVZOO_CONFIG_DIR to a folder holding train.yaml and its groups."
        )
    return path


def compose(overrides: Sequence[str] = (), config_name: str = "train") -> DictConfig:
    """Compose ``config_name`` with command-line style ``overrides``, exactly as ``train.py`` would."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def model_config(arguments: Sequence[str]) -> tuple[DictConfig, DictConfig | None]:
    """The model a command line names, and the training config it was composed in (``None`` for a file).

    Either a spec file with ``key=value`` overrides (``configs/model/unet.yaml width=32``) or Hydra
    overrides of the training config (``model=convmixer model.dim=512``).
    """
    from omegaconf import OmegaConf

    if arguments and arguments[0].endswith((".yaml", ".yml")):
        path, overrides = Path(arguments[0]), arguments[1:]
        if not path.is_file():
            raise ConfigError(f"model spec file {str(path)!r} does not exist.")
        return OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides))), None
    cfg = compose(arguments)
    return cfg.model, cfg
