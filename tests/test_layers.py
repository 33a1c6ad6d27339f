import itertools

import pytest
import torch
from torch import nn

from convzoo import ConfigError, build_block
from convzoo.layers import conv_output_size, make_act, make_norm, resolve_padding


@pytest.mark.parametrize("size", [5, 8, 17, 32])
def test_output_size_formula_matches_real_convolutions(size):
    for kernel, stride, padding, dilation in itertools.product([1, 2, 3, 5], [1, 2, 3], [0, 1, 2], [1, 2]):
        expected = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        if expected < 1:
            continue
        conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
        real = conv(torch.zeros(1, 1, size, size)).shape[-1]
        assert conv_output_size(size, kernel, stride, padding, dilation) == real == expected


@pytest.mark.parametrize("kernel,dilation", [(1, 1), (3, 1), (5, 1), (7, 1), (3, 2), (3, 3), (5, 2)])
def test_same_padding_keeps_size_for_odd_kernels(kernel, dilation):
    padding = resolve_padding(kernel, dilation)
    assert padding == dilation * (kernel - 1) // 2
    assert conv_output_size(13, kernel, 1, padding, dilation) == 13
    block = build_block({"block": "conv", "kernel_size": kernel, "dilation": dilation}, in_channels=2)
    assert block(torch.zeros(1, 2, 13, 13)).shape[-2:] == (13, 13)


def test_even_kernel_same_padding_is_explicit_about_stride():
    assert resolve_padding(4, padding="same") == "same"
    with pytest.raises(ConfigError, match="even kernel_size=4"):
        resolve_padding(4, padding="same", stride=2)


def test_parameter_counts_plain_vs_depthwise_separable():
    plain = nn.Conv2d(3, 3, 3)
    pair = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 3, 1))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(plain) == 81 + 3 == 84
    assert count(pair) == 27 + 3 + 9 + 3 == 42
    block = build_block({"block": "separable", "out_channels": 3, "norm": None, "act": None}, in_channels=3)
    assert count(block) == 42
    assert count(build_block({"block": "conv", "out_channels": 3, "padding": 0}, in_channels=3)) == 84


def test_hand_computed_convolution():
    image = torch.tensor([[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]],
                         dtype=torch.float32)
    kernel = torch.tensor([[0, 1, 2], [2, 2, 0], [0, 1, 2]], dtype=torch.float32)
    conv = build_block({"block": "conv", "out_channels": 1, "padding": 0, "bias": False}, in_channels=1)
    with torch.no_grad():
        conv.weight.copy_(kernel.view(1, 1, 3, 3))
    out = conv(image.view(1, 1, 5, 5)).view(3, 3)
    assert out.tolist() == [[12, 12, 17], [10, 17, 19], [9, 6, 14]]


@pytest.mark.parametrize("name,kind", [("batchnorm", nn.BatchNorm2d), ("groupnorm", nn.GroupNorm),
                                       ("layernorm", nn.LayerNorm), ("none", nn.Identity)])
def test_norms_by_name(name, kind):
    norm = make_norm(name, 16)
    assert isinstance(norm, kind)
    x = torch.randn(2, 16, 4, 4)
    assert norm(x).shape == x.shape


def test_layernorm_normalises_over_channels_only():
    x = torch.randn(2, 16, 4, 4) * 5 + 3
    y = make_norm("layernorm", 16)(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 4, 4), atol=1e-5)


@pytest.mark.parametrize("name,kind", [("relu", nn.ReLU), ("gelu", nn.GELU), ("silu", nn.SiLU),
                                       ("hardswish", nn.Hardswish), ("leaky_relu", nn.LeakyReLU),
                                       ("identity", nn.Identity)])
def test_activations_by_name(name, kind):
    assert isinstance(make_act(name), kind)


def test_norm_and_act_arguments_by_mapping_and_errors():
    assert make_act({"act": "leaky_relu", "negative_slope": 0.2}).negative_slope == 0.2
    assert make_norm({"norm": "groupnorm", "num_groups": 4}, 16).num_groups == 4
    with pytest.raises(ConfigError, match="Unknown activation 'gelu2'.*Did you mean 'gelu'"):
        make_act("gelu2")
    with pytest.raises(ConfigError, match="num_groups=5 does not divide 16"):
        make_norm({"norm": "groupnorm", "num_groups": 5}, 16)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format], ids=["nhwc", "nchw"])
def test_global_avg_pool_trains_as_adaptive_avg_pool(memory_format):
    from convzoo.ops.global_pool import GlobalAvgPool2d
    from convzoo.layers import make_pool

    assert isinstance(make_pool("avg"), GlobalAvgPool2d)
    torch.manual_seed(0)
    for dtype in (torch.bfloat16, torch.float32):  # bf16 takes the fast path; fp32 is AdaptiveAvgPool2d's, bit for bit
        x = torch.randn(4, 6, 7, 5, dtype=dtype).contiguous(memory_format=memory_format)
        grad = torch.randn(4, 6, 1, 1, dtype=dtype)
        results = []
        for pool in (GlobalAvgPool2d(), nn.AdaptiveAvgPool2d(1)):
            leaf = x.clone().requires_grad_()
            out = pool(leaf)
            out.backward(grad)
            results.append((out, leaf.grad))
        (ours, our_grad), (theirs, their_grad) = results
        torch.testing.assert_close(ours, theirs, rtol=0 if dtype == torch.float32 else 1e-2, atol=0)
        torch.testing.assert_close(our_grad, their_grad, rtol=0, atol=0)
        assert our_grad.is_contiguous(memory_format=memory_format)  # the next layer's backward keeps its layout
    exported = torch.export.export(GlobalAvgPool2d(), (x,))
    assert any("adaptive_avg_pool2d" in str(node.target) for node in exported.graph.nodes)
    scripted = torch.jit.script(GlobalAvgPool2d())
    torch.testing.assert_close(scripted(x), nn.AdaptiveAvgPool2d(1)(x), rtol=0, atol=0)
