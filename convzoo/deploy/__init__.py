"""Using a trained network: loading a checkpoint (:mod:`convzoo.deploy.checkpoint`), exporting it
(:mod:`convzoo.deploy.export`) and predicting with it (:mod:`convzoo.deploy.predict`)."""

from convzoo.deploy.checkpoint import DeployInfo, deploy_info, load_checkpoint

__all__ = ["DeployInfo", "deploy_info", "load_checkpoint"]
