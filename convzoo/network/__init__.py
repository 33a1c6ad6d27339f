"""Building networks: a spec through the build pipeline to a ``ConvNet``, its summary, the zoo of
named models and weight loading. Plain torch: importing it loads neither Lightning nor Hydra."""

from convzoo.network.build import ConvNet, FeatureInfo, GraphNet, build_block, build_model
from convzoo.network.summary import ModelSummary, summary
from convzoo.network.weights import WeightTransfer, load_weights
from convzoo.network.zoo import create_model, list_models

__all__ = ["ConvNet", "FeatureInfo", "GraphNet", "ModelSummary", "WeightTransfer", "build_block", "build_model",
           "create_model", "list_models", "load_weights", "summary"]
