"""Train a convzoo network on CIFAR-10: ``python train.py model=convmixer trainer.max_epochs=5``.

All logic lives in :func:`convzoo.training.train`; this file only lets Hydra compose the config.
``python train.py resume=<run_dir>`` continues a run in its own directory with its own overrides.
A mistake in the command line or config is printed as one ``error:`` line (exit code 2), a run
whose loss diverges stops with one line too (exit code 3); anything else is a bug and shows its
traceback.
"""

import sys

import hydra
from omegaconf import DictConfig


@hydra.main(config_path="configs", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    # Imported here so that `train.py --help` and config errors answer before torch/Lightning load.
    from convzoo.errors import exit_code, report
    from convzoo.training import train

    try:
        metrics = train(cfg)
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
    directory; this reports it on one line and exits 2 before the run directory exists. Runs with
    Hydra flags (``--help``, ``-m``, ``--cfg`` ...) go to Hydra untouched.
    """
    overrides = argv[1:]
    if any(arg.startswith("-") for arg in overrides):
        return argv
    from omegaconf import open_dict

    from convzoo.config import compose, resume_overrides
    from convzoo.errors import ConfigError, report

    try:
        cfg = compose([o for o in resume_overrides(overrides) if not o.lstrip("+~").startswith("hydra")])
        overrides = resume_overrides(overrides, hydra_run=True)
        with open_dict(cfg):
            cfg.paths.output_dir = "."  # the run directory does not exist yet; nothing is written here
        from convzoo.validation import check_config

        check_config(cfg)
    except ConfigError as error:
        raise SystemExit(report(error)) from None
    return [argv[0], *overrides]


if __name__ == "__main__":
    sys.argv = check_command_line(sys.argv)
    main()
