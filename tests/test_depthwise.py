"""The fast depthwise conv (convzoo.ops.depthwise): gradients against fp64, the switch, the blocks, export paths."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convzoo import create_model, depthwise
from convzoo.ops.depthwise import DepthwiseConv2d, fast_depthwise, fast_depthwise_available, fast_depthwise_enabled

# Skipped only on a machine without a C++ compiler; CI has one, so there a kernel that fails to build fails these tests.
pytestmark = pytest.mark.skipif(not fast_depthwise_available() and not os.environ.get("CI"),
                                reason="the depthwise kernel does not build here (no C++ compiler or ninja)")

# Our gradient error may exceed nn.Conv2d's own (same inputs, same dtype) by this factor, plus,
# in fp32 only, 1e-6 of the gradient's largest entry: both sit at fp32's rounding noise there
# (~1e-7), where which of two summation orders lands closer is chance.
SLACK, FP32_FLOOR = 2.0, 1e-6


def gradients(conv: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """Input, weight and bias gradients of ``conv`` at ``x``, under bf16 autocast for bf16 (as in training)."""
    x = x.detach().clone().requires_grad_()
    conv.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = conv(x)
    assert out.dtype == dtype
    out.backward(grad_out.to(dtype))
    return [x.grad, conv.weight.grad, conv.bias.grad]


def reference(conv: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    """The same gradients in fp64, from the inputs as the conv sees them (rounded to ``dtype``)."""
    as_seen = lambda t: t.detach().to(dtype).double().requires_grad_()  # noqa: E731
    x64, w64, b64 = as_seen(x), as_seen(conv.weight), as_seen(conv.bias)
    out = F.conv2d(x64, w64, b64, conv.stride, conv.padding, conv.dilation, conv.groups)
    out.backward(grad_out.to(dtype).double())
    return [x64.grad, w64.grad, b64.grad]


def relative_errors(grads: list[torch.Tensor], refs: list[torch.Tensor]) -> list[float]:
    return [((g.double() - r).abs().max() / r.abs().max()).item() for g, r in zip(grads, refs)]


CASES = [  # (kernel, stride, dilation, height, width)
    (3, 1, 1, 9, 9), (3, 2, 1, 9, 11), (5, 1, 1, 8, 8), (5, 2, 1, 11, 7),
    (7, 1, 1, 9, 9), (7, 2, 2, 13, 13), (9, 1, 1, 10, 9), (9, 2, 1, 9, 9), (3, 1, 3, 9, 9),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("kernel,stride,dilation,height,width", CASES)
def test_gradients_match_fp64_no_worse_than_conv2d(kernel, stride, dilation, height, width, channels_last, dtype):
    torch.manual_seed(kernel * 100 + stride * 10 + dilation)
    channels = 70  # one full 64-channel block of the kernel and a partial one
    conv = DepthwiseConv2d(channels, channels, kernel, stride, dilation * (kernel - 1) // 2, dilation, groups=channels)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, channels, height, width).contiguous(memory_format=memory_format)
    assert conv.takes_fast_path(x.requires_grad_()) == (kernel > 3 or stride > 1)  # 3x3 at stride 1: torch's
    assert_no_worse_than_conv2d(conv, x, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dilation", [1, 3])
def test_a_large_3x3_stride_one_layer_takes_the_weight_gradient_kernel(monkeypatch, dilation, channels_last, dtype):
    # the rule: from 16,384 input positions per channel on (N * H * W), a 64 x 16 x 16 batch ...
    x = torch.randn(64, 8, 16, 16, requires_grad=True)
    assert DepthwiseConv2d(8, 8, 3, padding=1, groups=8).takes_fast_path(x)
    assert not DepthwiseConv2d(8, 8, 3, padding=1, groups=8).takes_fast_path(x[1:])
    # ... and its gradients, on an input small enough for an fp64 reference once the threshold is lowered
    monkeypatch.setattr(depthwise, "_OWN_3X3_WEIGHT_GRAD_POSITIONS", 3 * 9 * 9)
    torch.manual_seed(dilation)
    channels = 70
    conv = DepthwiseConv2d(channels, channels, 3, 1, dilation, dilation, groups=channels)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, channels, 9, 9).contiguous(memory_format=memory_format)
    assert conv.takes_fast_path(x.requires_grad_())
    assert_no_worse_than_conv2d(conv, x, dtype)


@pytest.mark.parametrize("padding", [0, 1, 4, 6], ids=lambda p: f"padding{p}")
def test_stride_one_input_gradient_at_any_padding(padding):
    """The stride-1 input gradient is a forward conv padded by span - padding (4 - padding here);
    a padding beyond the span has no such conv and takes torch's backward."""
    torch.manual_seed(padding)
    conv = DepthwiseConv2d(20, 20, 5, padding=padding, groups=20)
    x = torch.randn(2, 20, 9, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert conv.takes_fast_path(x)
    for dtype in (torch.float32, torch.bfloat16):
        assert_no_worse_than_conv2d(conv, x, dtype)


def assert_no_worse_than_conv2d(conv: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> None:
    grad_out = torch.randn_like(conv(x))
    refs = reference(conv, x, grad_out, dtype)
    fast = relative_errors(gradients(conv, x, grad_out, dtype), refs)
    with fast_depthwise(False):
        assert not conv.takes_fast_path(x)
        plain = relative_errors(gradients(conv, x, grad_out, dtype), refs)
    floor = FP32_FLOOR if dtype == torch.float32 else 0.0
    for name, ours, torchs in zip(("input", "weight", "bias"), fast, plain):
        assert ours <= SLACK * torchs + floor, f"{name} gradient: relative error {ours:.2e}, nn.Conv2d's {torchs:.2e}"


@pytest.mark.parametrize("kernel,stride", [(5, 1), (3, 2)])
def test_gradients_come_back_in_the_parameter_and_input_dtypes(kernel, stride):
    conv = DepthwiseConv2d(8, 8, kernel, stride, padding=kernel // 2, groups=8)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv(x)
    assert out.dtype == torch.bfloat16 and "DepthwiseConv2dFunction" in type(out.grad_fn).__name__
    out.float().sum().backward()
    assert x.grad.dtype == conv.weight.grad.dtype == conv.bias.grad.dtype == torch.float32


def test_same_forward_and_state_dict_as_conv2d():
    torch.manual_seed(0)
    plain = nn.Conv2d(12, 12, 5, padding=2, groups=12)
    conv = DepthwiseConv2d(12, 12, 5, padding=2, groups=12)
    conv.load_state_dict(plain.state_dict())  # strict: the same keys and shapes
    assert list(conv.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 12, 7, 7, requires_grad=True)
    assert conv.takes_fast_path(x)
    torch.testing.assert_close(conv(x), plain(x))


def test_fast_path_only_where_it_applies():
    conv = DepthwiseConv2d(8, 8, 5, padding=2, groups=8)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    assert conv.takes_fast_path(x)
    assert conv.takes_fast_path(x.detach())  # the weight still needs its gradient
    conv.weight.requires_grad_(False)
    assert not conv.takes_fast_path(x.detach()) and conv.takes_fast_path(x)  # nothing to differentiate / the input
    conv.weight.requires_grad_(True)
    with torch.no_grad():
        assert not conv.takes_fast_path(x)  # inference: plain nn.Conv2d
    assert not conv.takes_fast_path(x.double())  # no fp64 kernel
    with torch.autocast("cpu", dtype=torch.float16):
        assert not conv.takes_fast_path(x)  # no fp16 kernel
    assert not DepthwiseConv2d(8, 8, 3, padding=1, groups=8).takes_fast_path(x)  # a small 3x3: torch's is faster
    assert DepthwiseConv2d(8, 8, 3, stride=2, padding=1, groups=8).takes_fast_path(x)  # except at stride 2
    assert not DepthwiseConv2d(8, 16, 5, padding=2, groups=8).takes_fast_path(x)  # depth multiplier 2
    assert not DepthwiseConv2d(8, 8, 5, padding=2, groups=4).takes_fast_path(x)  # grouped, not depthwise
    assert not DepthwiseConv2d(8, 8, 5, padding=2, groups=8, padding_mode="reflect").takes_fast_path(x)
    assert not DepthwiseConv2d(8, 8, 4, padding="same", groups=8).takes_fast_path(x)  # asymmetric padding
    assert DepthwiseConv2d(8, 8, 5, padding="same", groups=8).takes_fast_path(x)
    assert not conv.takes_fast_path(x.to("meta"))


def test_switch_turns_it_off_and_restores():
    conv = DepthwiseConv2d(8, 8, 5, padding=2, groups=8)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with fast_depthwise(False):
        assert not fast_depthwise_enabled() and not conv.takes_fast_path(x)
        assert "DepthwiseConv2dFunction" not in type(conv(x).grad_fn).__name__
        with fast_depthwise(True):
            assert conv.takes_fast_path(x)
    assert fast_depthwise_enabled() and conv.takes_fast_path(x)


@pytest.mark.parametrize("name", ["convmixer_tiny", "mobilenetv2", "separable", "convnext_cifar"])
def test_every_depthwise_conv_of_the_zoo_takes_it_where_it_helps(name):
    net = create_model(name, width_multiplier=0.25) if name != "convmixer_tiny" else create_model(name)
    depthwise = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert depthwise and all(isinstance(m, DepthwiseConv2d) for m in depthwise)
    taken = {}

    def record(layer: nn.Module, args: tuple, out: torch.Tensor) -> None:
        taken[layer] = "DepthwiseConv2dFunction" in type(out.grad_fn).__name__

    hooks = [m.register_forward_hook(record) for m in depthwise]
    net.train()(torch.randn(2, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    assert taken == {m: m.kernel_size[0] > 3 or m.stride[0] > 1 for m in depthwise}
    assert any(taken.values())


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_scripting_tracing_and_export_take_the_plain_path():
    torch.manual_seed(0)
    conv = DepthwiseConv2d(8, 8, 5, padding=2, groups=8)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    assert conv.takes_fast_path(x)
    scripted = torch.jit.script(conv)
    torch.testing.assert_close(scripted(x), conv(x))
    traced = torch.jit.trace(conv, x, check_trace=False)
    assert "aten::_convolution" in str(traced.graph) or "aten::conv2d" in str(traced.graph)
    exported = torch.export.export(conv, (x.detach(),))
    assert any("conv2d" in str(node.target) for node in exported.graph.nodes)
    torch.testing.assert_close(exported.module()(x.detach()), conv(x).detach())


@pytest.mark.parametrize("switch", ["fast_depthwise", "fused_norm_act"])
def test_config_switch_is_validated(tmp_path, switch):
    from omegaconf import open_dict

    from convzoo.config import compose
    from convzoo.registry import ConfigError
    from convzoo.validation import check_config

    def checked(*overrides):
        cfg = compose(["data=synthetic", *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path)  # what train.py's Hydra run sets
        check_config(cfg)
        return cfg

    assert checked()[switch] is True and checked(f"{switch}=false")[switch] is False
    with pytest.raises(ConfigError, match=switch):
        checked(f"{switch}=sometimes")
