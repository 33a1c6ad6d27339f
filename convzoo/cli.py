"""Training from the command line: ``train.py`` in a checkout and the ``convzoo-train`` script of an
installed package take the same Hydra command line and share :func:`run`.

Example::

    convzoo-train model=resnet_cifar model.depth=56 trainer.max_epochs=30
"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

__all__ = ["run", "train_main"]


def _print_lightning_messages_once() -> None:
    """``import lightning`` gives the "lightning" logger a console handler of its own *and* lets its
    records propagate to the root logger, which Hydra has already given a console (and train.log)
    handler: every Lightning message would print twice. Hydra's handlers keep them (once, and in the log file)."""
    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)


def run(cfg: DictConfig) -> float | None:
    """Train with a composed config; a configuration mistake prints one line and exits with status 2."""
    from convzoo.data import CorruptDataError, DataNotFoundError
    from convzoo.registry import ConfigError
    from convzoo.training import train

    _print_lightning_messages_once()
    try:
        metrics = train(cfg)
    except (ConfigError, DataNotFoundError, CorruptDataError) as error:
        # These carry the whole story (what, where, how to fix); a traceback would only bury it.
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    # A sweeper (e.g. Optuna) optimises the value returned here.
    return metrics.get(cfg.get("optimized_metric", "val/acc_best"))


@hydra.main(config_path="pkg://convzoo.configs", config_name="train", version_base="1.3")
def train_main(cfg: DictConfig) -> float | None:
    """The ``convzoo-train`` console script: the configs shipped inside the installed package."""
    return run(cfg)
