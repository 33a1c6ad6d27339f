import pytest
import torch
from torch import nn

from convzoo import ConfigError, build_block
from convzoo.blocks import Classifier, ConvMixerBlock, ConvNormAct, PatchEmbed, Pool, Residual, SeparableConv


def test_conv_norm_act_orders_and_automatic_bias():
    default = ConvNormAct(3, 8)
    assert [n for n, _ in default.named_children()] == ["conv", "norm", "act"]
    assert default.conv.bias is None  # BatchNorm's shift makes a conv bias redundant
    mixer_style = ConvNormAct(3, 8, order="conv_act_norm", act="gelu")
    assert [n for n, _ in mixer_style.named_children()] == ["conv", "act", "norm"]
    assert mixer_style.conv.bias is not None  # the activation sits between conv and norm
    pre_act = ConvNormAct(3, 8, order="norm_act_conv")
    assert pre_act.norm.num_features == 3 and pre_act(torch.randn(1, 3, 4, 4)).shape == (1, 8, 4, 4)
    plain = ConvNormAct(3, 8, norm=None, act=None)
    assert [n for n, _ in plain.named_children()] == ["conv"] and plain.conv.bias is not None


def test_conv_norm_act_rejects_bad_order_and_groups():
    with pytest.raises(ConfigError, match="order='conv_norm' must arrange conv, norm and act"):
        ConvNormAct(3, 8, order="conv_norm")
    pooled = ConvNormAct(3, 8, order="conv_pool_norm_act", pool_size=2)
    assert [n for n, _ in pooled.named_children()] == ["conv", "pool", "norm", "act"] and pooled.conv.bias is None
    assert pooled(torch.randn(1, 3, 8, 8)).shape == (1, 8, 4, 4)
    with pytest.raises(ConfigError, match="groups=3 must divide both in_channels=4 and out_channels=6"):
        ConvNormAct(4, 6, groups=3)


def test_separable_is_depthwise_then_pointwise():
    block = SeparableConv(16, 32, stride=2, norm="batchnorm", act="relu")
    assert block.depthwise.conv.groups == 16 and block.pointwise.conv.kernel_size == (1, 1)
    assert block(torch.randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    xception = SeparableConv(16, 32, norm="batchnorm", act="relu", act_between=False)
    assert not hasattr(xception.depthwise, "act") and hasattr(xception.pointwise, "act")


def test_convmixer_block_matches_the_paper():
    dim, k = 32, 7
    block = ConvMixerBlock(dim, kernel_size=k)
    x = torch.randn(2, dim, 9, 9)
    depthwise = block.depthwise.block
    assert depthwise.conv.groups == dim and depthwise.conv.kernel_size == (k, k)
    assert [type(m) for m in depthwise.children()] == [type(depthwise.conv), nn.GELU, nn.BatchNorm2d]
    assert [type(m) for m in list(block.pointwise.children())[1:]] == [nn.GELU, nn.BatchNorm2d]
    expected_params = (dim * k * k + dim + 2 * dim) + (dim * dim + dim + 2 * dim)
    assert sum(p.numel() for p in block.parameters()) == expected_params
    # Reference forward, written out as in the paper's listing.
    block.eval()
    with torch.no_grad():
        y = depthwise.norm(nn.functional.gelu(depthwise.conv(x))) + x
        pw = block.pointwise
        y = pw.norm(nn.functional.gelu(pw.conv(y)))
        assert torch.allclose(block(x), y, atol=1e-6)


def test_patch_embed_cuts_non_overlapping_patches():
    stem = PatchEmbed(3, 16, patch_size=4)
    assert stem.conv.kernel_size == stem.conv.stride == (4, 4) and stem.conv.padding == (0, 0)
    assert stem(torch.randn(1, 3, 32, 32)).shape == (1, 16, 8, 8)


def test_pool_classifier_and_residual():
    assert Pool(8, pool="avg", pool_size=3)(torch.randn(1, 8, 9, 9)).shape == (1, 8, 3, 3)
    with pytest.raises(ConfigError, match="Unknown pool 'maks'. Did you mean 'max'"):
        Pool(8, pool="maks")
    head = Classifier(8, num_classes=5, dropout=0.5, scale=0.5)
    head.eval()
    x = torch.randn(3, 8, 4, 4)
    assert torch.allclose(head(x), head.fc(x.mean((2, 3))) * 0.5)
    inner = ConvNormAct(8, 8)
    block = Residual(inner)
    assert torch.allclose(block(x), x + inner(x))


@pytest.mark.parametrize("config", [
    {"block": "conv", "out_channels": 8},
    {"block": "conv_norm_act", "out_channels": 8, "norm": "groupnorm", "act": "silu"},
    {"block": "separable", "out_channels": 8, "norm": "layernorm", "act": "hardswish"},
    {"block": "convmixer", "kernel_size": 3},
    {"block": "pool"},
])
def test_blocks_script_and_report_out_channels(config):
    block = build_block(config, in_channels=8)
    x = torch.randn(1, 8, 8, 8)
    assert block(x).shape[1] == block.out_channels
    scripted = torch.jit.script(block.eval())
    assert torch.allclose(scripted(x), block(x))


def test_whitening_stem_decorrelates_its_input():
    from convzoo.blocks import WhiteningConv

    stem = WhiteningConv(3, kernel_size=2, eps=0.0)
    mixing = torch.tensor([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, 0.5, 0.7]])
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(256, 3, 8, 8))  # correlated channels
    stem.init_from_data(images)
    out = stem.conv(images) - stem.conv.bias.view(1, -1, 1, 1)
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)  # the second half is the negation
    assert torch.allclose(half.T @ half / len(half), torch.eye(12), atol=1e-3)
    assert torch.allclose(out[:, 12:], -out[:, :12], atol=1e-5)
    assert not stem.conv.weight.requires_grad and stem.conv.bias.requires_grad and stem.out_channels == 24
