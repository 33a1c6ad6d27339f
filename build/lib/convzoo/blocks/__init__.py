"""Built-in blocks; importing this package registers them in ``BLOCKS``."""

from convzoo.blocks.attention import SqueezeExcite
from convzoo.blocks.conv import Conv, ConvNormAct, NormAct
from convzoo.blocks.convmixer import ConvMixerBlock, PatchEmbed
from convzoo.blocks.convnext import ConvNeXtBlock
from convzoo.blocks.densenet import DenseLayer, DenseTransition
from convzoo.blocks.heads import Classifier, Pool
from convzoo.blocks.merge import Add, Concat, Identity, Upsample, ZeroPadShortcut
from convzoo.blocks.mobilenet import InvertedResidual
from convzoo.blocks.residual import Residual
from convzoo.blocks.resnet import BasicBlock, Bottleneck, PreActBasicBlock
from convzoo.blocks.separable import SeparableConv
from convzoo.blocks.whitening import WhiteningConv

__all__ = [
    "Add", "BasicBlock", "Bottleneck", "Classifier", "Concat", "Conv", "ConvMixerBlock", "ConvNeXtBlock",
    "ConvNormAct", "DenseLayer", "DenseTransition", "Identity", "InvertedResidual", "NormAct", "PatchEmbed",
    "Pool", "PreActBasicBlock", "Residual", "SeparableConv", "SqueezeExcite", "Upsample", "WhiteningConv",
    "ZeroPadShortcut",
]
