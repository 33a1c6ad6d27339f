"""Train a convzoo network on CIFAR-10: ``python train.py model=convmixer trainer.max_epochs=5``.

All logic lives in :func:`convzoo.training.train` (through :func:`convzoo.cli.run`, which the
installed ``convzoo-train`` script shares); this file only lets Hydra compose the checkout's configs.
"""

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from convzoo.cli import run  # imported here so that `train.py --help` answers before torch loads

    return run(cfg)


if __name__ == "__main__":
    main()
