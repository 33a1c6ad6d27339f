"""Train a convzoo network on CIFAR-10: ``python train.py model=convmixer trainer.max_epochs=5``.

All logic lives in :func:`convzoo.training.train` (through :mod:`convzoo.cli`, which the installed
``convzoo-train`` script shares); this file only lets Hydra compose the checkout's configs.
``python train.py resume=<run_dir>`` continues a run in its own directory with its own overrides.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from convzoo.cli import run  # imported here so that `train.py --help` answers before torch loads

    return run(cfg)


if __name__ == "__main__":
    if not any(arg.startswith("-") for arg in sys.argv[1:]):  # Hydra's flags (--help, -m) answer before torch loads
        from convzoo.cli import check_command_line

        sys.argv = check_command_line(sys.argv)
    main()
