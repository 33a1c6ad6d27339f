"""Train a convzoo network on CIFAR-10: ``python train.py model=convmixer trainer.max_epochs=5``.

All logic lives in :func:`convzoo.training.train`; this file only lets Hydra compose the config.
"""

import logging
import sys

import hydra
from omegaconf import DictConfig


def _print_lightning_messages_once() -> None:
    """``import lightning`` gives the "lightning" logger a console handler of its own *and* lets its
    records propagate to the root logger, which Hydra has already given a console (and train.log)
    handler: every Lightning message would print twice. Hydra's handlers keep them (once, and in the log file)."""
    lightning_logger = logging.getLogger("lightning")
    if logging.getLogger().handlers:
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    # Imported here so that `train.py --help` and config errors answer before torch/Lightning load.
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


if __name__ == "__main__":
    main()
