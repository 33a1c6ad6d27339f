"""Training: ``train(cfg)`` runs one configured fit and test ([`convzoo.training.run`][convzoo.training.run]), with the
LightningModule, the config checks, callbacks, schedules, resuming and the run's records.

Examples:
    ```python
    from convzoo.config import compose
    from convzoo.training import train
    metrics = train(compose(["model=resnet_cifar", "trainer.max_epochs=1"]))
    ```
"""

from convzoo.training.run import fit_model_to_data, train

__all__ = ["fit_model_to_data", "train"]
