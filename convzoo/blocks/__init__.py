"""Built-in blocks; importing this package registers them in ``BLOCKS``."""

from convzoo.blocks.attention import SqueezeExcite
from convzoo.blocks.conv import Conv, ConvNormAct
from convzoo.blocks.convmixer import ConvMixerBlock, PatchEmbed
from convzoo.blocks.heads import Classifier, Pool
from convzoo.blocks.merge import Add, Concat, Identity, Upsample, ZeroPadShortcut
from convzoo.blocks.residual import Residual
from convzoo.blocks.separable import SeparableConv
from convzoo.blocks.whitening import WhiteningConv

__all__ = [
    "Add", "Classifier", "Concat", "Conv", "ConvMixerBlock", "ConvNormAct", "Identity", "PatchEmbed", "Pool",
    "Residual", "SeparableConv", "SqueezeExcite", "Upsample", "WhiteningConv", "ZeroPadShortcut",
]
