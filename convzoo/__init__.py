"""convzoo: conv-net blocks in a registry, networks assembled from YAML specs.

Examples:
    >>> import torch
    >>> from convzoo import build_model
    >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
    ...     {"block": "patch_embed", "out_channels": 64, "patch_size": 2},
    ...     {"block": "convmixer", "kernel_size": 5, "repeat": 2},
    ...     {"block": "classifier"}]})
    >>> net(torch.randn(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from convzoo import _moved
from convzoo._version import __version__  # noqa: F401
from convzoo.depthwise import DepthwiseConv2d, fast_depthwise
from convzoo.errors import ConfigError
from convzoo.network.build import ConvNet, build_block, build_model
from convzoo.network.summary import ModelSummary, summary
from convzoo.network.weights import WeightTransfer, load_weights
from convzoo.network.pretrained import list_pretrained
from convzoo.network.zoo import create_model, list_models
from convzoo.norm_act import fused_norm_act
from convzoo.registry import ACTIVATIONS, BLOCKS, INITS, NORMS, Registry

register_block = BLOCKS.register
_moved.install()

__all__ = [
    "ACTIVATIONS", "BLOCKS", "INITS", "NORMS", "ConfigError", "ConvNet", "DepthwiseConv2d", "ModelSummary", "Registry",
    "WeightTransfer", "build_block", "build_model", "create_model", "fast_depthwise", "fused_norm_act", "list_models",
    "list_pretrained", "load_weights", "register_block", "summary",
]
