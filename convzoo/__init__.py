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
from convzoo.ops.depthwise import DepthwiseConv2d, fast_depthwise
from convzoo.errors import ConfigError
from convzoo.network.build import ConvNet, build_block, build_model
from convzoo.network.summary import ModelSummary, summary
from convzoo.network.weights import WeightTransfer, load_weights
from convzoo.network.pretrained import list_pretrained
from convzoo.network.zoo import create_model, list_models
from convzoo.ops.norm_act import fused_norm_act
from convzoo.registry import ACTIVATIONS, BLOCKS, INITS, NORMS, Registry

register_block = BLOCKS.register
"""Register your own block under ``name`` (and ``aliases``) so a spec's ``block:`` can name it: ``BLOCKS.register``.

A block is a class or function taking ``in_channels`` (the builder fills it in from the measured
shapes) and giving a module with an ``out_channels`` attribute. Its other arguments are the spec
layer's keys, checked against its signature.

Args:
    name (str): the block's name in specs.
    *aliases (str): other names for it.
    override (bool): replace a registered block of that name (a built-in, say).

Returns:
    (Callable): a decorator that registers the class or function and returns it unchanged.

Examples:
    >>> import torch
    >>> from torch import nn
    >>> from convzoo import build_model, register_block
    >>> @register_block("doubled_conv")
    ... class DoubledConv(nn.Conv2d):
    ...     def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
    ...         super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    ...     def forward(self, x):
    ...         return 2 * super().forward(x)
    >>> net = build_model({"in_channels": 3, "layers": [{"block": "doubled_conv", "out_channels": 8}]})
    >>> net(torch.randn(1, 3, 16, 16)).shape
    torch.Size([1, 8, 16, 16])
"""
_moved.install()

__all__ = [
    "ACTIVATIONS", "BLOCKS", "INITS", "NORMS", "ConfigError", "ConvNet", "DepthwiseConv2d", "ModelSummary", "Registry",
    "WeightTransfer", "build_block", "build_model", "create_model", "fast_depthwise", "fused_norm_act", "list_models",
    "list_pretrained", "load_weights", "register_block", "summary",
]
