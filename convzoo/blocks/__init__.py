"""Built-in blocks; importing this package registers them in ``BLOCKS``."""

from convzoo.blocks.conv import Conv, ConvNormAct
from convzoo.blocks.convmixer import ConvMixerBlock, PatchEmbed
from convzoo.blocks.heads import Classifier, Pool, Residual
from convzoo.blocks.separable import SeparableConv
from convzoo.blocks.whitening import WhiteningConv

__all__ = ["Conv", "ConvNormAct", "SeparableConv", "PatchEmbed", "ConvMixerBlock", "Pool", "Classifier", "Residual", "WhiteningConv"]
