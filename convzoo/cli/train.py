"""Training from the command line: ``train.py`` in a checkout and the ``convzoo-train`` script of an
installed package take the same Hydra command line and share `check_command_line` and `run`.

A mistake in the command line or config is printed as one ``error:`` line (exit code 2), a run
whose loss diverges stops with one line too (exit code 3); anything else is a bug and shows its
traceback. ``resume=<run_dir>`` continues a run in its own directory with its own overrides.

Examples:
    ```bash
    convzoo-train model=resnet_cifar model.depth=56 trainer.max_epochs=30
    ```
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

__all__ = ["check_command_line", "run", "train_main"]

#: The config `check_command_line` checked in this process (see `_as_checked`) and its model spec as the check
#: resolved it; ``None`` until it has checked one. `run` passes the resolved spec to ``train`` when Hydra's config
#: is this one, so the run neither checks nor resolves it again.
_checked: tuple[dict[str, Any], Any] | None = None


def _as_checked(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as plain data, apart from ``paths.output_dir``: the run directory does not exist when the
    command line is checked, and the checks do not read it (``train`` claims it)."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    (plain.get("paths") or {}).pop("output_dir", None)
    return plain


def _print_lightning_messages_once() -> None:
    """``import lightning`` gives the "lightning" logger a console handler of its own *and* lets its
    records propagate to the root logger, which Hydra has already given a console (and train.log)
    handler: every Lightning message would print twice. Hydra's handlers keep them (once, and in the log file)."""
    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)


def run(cfg: DictConfig) -> float | None:
    """Train with a composed config; what the user can fix is reported in one line (see [`convzoo.errors`][convzoo.errors])."""
    from convzoo.errors import exit_code, report
    from convzoo.training.run import train

    _print_lightning_messages_once()
    try:
        resolved = _checked[1] if _checked is not None and _as_checked(cfg) == _checked[0] else None
        metrics = train(cfg, checked=resolved)
    except Exception as error:
        if exit_code(error) is None:
            raise
        # These carry the whole story (what, where, how to fix); a traceback would only bury it.
        raise SystemExit(report(error)) from None
    # A sweeper (e.g. Optuna) optimises the value returned here.
    return metrics.get(cfg.get("optimized_metric", "val/acc_best"))


def check_command_line(argv: list[str]) -> list[str]:
    """``argv`` with ``resume=<run_dir>`` expanded; a single run's overrides, keys and types checked first.

    Hydra would report a bad override on many lines (exit code 1), and only after creating the run
    directory; this reports it on one line and exits 2 before the run directory exists. The config
    checked here is remembered, so that `run` does not check it again. Runs with Hydra flags
    (``--help``, ``-m``, ``--cfg`` ...) go to Hydra untouched, and each of their runs is checked by ``train``.
    """
    global _checked
    overrides = argv[1:]
    if any(arg.startswith("-") for arg in overrides):
        return argv
    from omegaconf import open_dict

    from convzoo.config import compose, override_key, resume_overrides
    from convzoo.errors import ConfigError, report
    from convzoo.training.config_checks import check_config

    try:
        cfg = compose([o for o in resume_overrides(overrides) if not override_key(o).startswith("hydra")])
        overrides = resume_overrides(overrides, hydra_run=True)
        with open_dict(cfg):
            cfg.paths.output_dir = "."  # the run directory does not exist yet; nothing is written here
        resolved = check_config(cfg)
    except ConfigError as error:
        raise SystemExit(report(error)) from None
    _checked = (_as_checked(cfg), resolved)
    return [argv[0], *overrides]


@hydra.main(config_path="pkg://convzoo.configs", config_name="train", version_base="1.3")
def _train_with_packaged_configs(cfg: DictConfig) -> float | None:
    return run(cfg)


def train_main() -> None:
    """The ``convzoo-train`` console script: ``train.py``'s command line on the configs the package carries."""
    sys.argv = check_command_line(sys.argv)
    _train_with_packaged_configs()
