"""Using a trained network: loading a checkpoint ([`convzoo.deploy.checkpoint`][convzoo.deploy.checkpoint]), exporting it
([`convzoo.deploy.export`][convzoo.deploy.export]) and predicting with it ([`convzoo.deploy.predict`][convzoo.deploy.predict])."""

from convzoo.deploy.checkpoint import DeployInfo, deploy_info, load_checkpoint

__all__ = ["DeployInfo", "deploy_info", "load_checkpoint"]
