"""BatchNorm + activation fused for CPU training (convzoo.ops.norm_act): gradients against fp64, running
statistics, where the path is taken, the blocks and the switch."""

import os

import pytest
import torch
from torch import nn

from convzoo import create_model
from convzoo.blocks import ConvNormAct, InvertedResidual
from convzoo.ops.norm_act import (
    _BatchNormActFunction,
    adds_fused,
    fused_norm_act,
    fused_norm_act_available,
    run_fusing_norm_act,
    takes_fused_path,
)

# Skipped only on a machine without a C++ compiler; CI has one, so there a kernel that fails to build fails these tests.
pytestmark = pytest.mark.skipif(not fused_norm_act_available() and not os.environ.get("CI"),
                                reason="the norm_act kernel does not build here (no C++ compiler or ninja)")

# As tests/test_depthwise.py: our error may exceed torch's own path's (same inputs, same dtype) by
# this factor, plus, in fp32, 1e-6 of the largest entry (fp32 rounding noise, where summation order is chance).
SLACK, FP32_FLOOR = 2.0, 1e-6
ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU]


def channels_last(*shape: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return (torch.randn(*shape) * scale + shift).to(memory_format=torch.channels_last)


def pair(act: type | None, act_first: bool, channels: int) -> nn.Sequential:
    """The norm and its activation in that order; a BatchNorm alone for ``act=None``."""
    norm = nn.BatchNorm2d(channels)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
    if act is None:
        return nn.Sequential(norm)
    return nn.Sequential(act(), norm) if act_first else nn.Sequential(norm, act())


def outputs_and_gradients(layers: nn.Sequential, x: torch.Tensor, grad: torch.Tensor, fused: bool,
                          residual: torch.Tensor | None = None) -> list[torch.Tensor]:
    """``y = layers(x)`` (``+ residual`` if given), then ``[y, x.grad, weight.grad, bias.grad(, residual.grad)]``."""
    x = x.detach().clone().requires_grad_()
    residual = None if residual is None else residual.detach().clone().requires_grad_()
    layers.zero_grad(set_to_none=True)
    with fused_norm_act(fused):
        assert takes_fused_path(x, *layers) == fused
        y = run_fusing_norm_act(layers, x, residual=residual)
    y.backward(grad)
    norm = next(m for m in layers if type(m) is nn.BatchNorm2d)
    return [y, x.grad, norm.weight.grad, norm.bias.grad] + ([] if residual is None else [residual.grad])


@pytest.mark.parametrize("residual", [False, True], ids=["", "residual"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize(("act", "act_first"), [(act, first) for act in ACTIVATIONS for first in (True, False)]
                         + [(None, False)], ids=lambda v: v.__name__ if isinstance(v, type) else
                         {True: "act_norm", False: "norm_act", None: "norm_alone"}[v])
def test_outputs_and_gradients_match_fp64_no_worse_than_torch(act, act_first, dtype, residual):
    torch.manual_seed(len(getattr(act, "__name__", "")) * 10 + act_first)
    layers = pair(act, act_first, channels=70)  # four 16-lane vectors and a partial one
    x = channels_last(6, 70, 5, 7, scale=2.0, shift=1.0).to(dtype)  # a mean far from 0 tests the statistics
    grad = channels_last(6, 70, 5, 7).to(dtype)
    skip = channels_last(6, 70, 5, 7, scale=3.0).to(dtype) if residual else None  # added in the fused kernel
    ours = outputs_and_gradients(layers, x, grad, fused=True, residual=skip)
    torchs = outputs_and_gradients(layers, x, grad, fused=False, residual=skip)
    exact = pair(act, act_first, 70).double()
    exact.load_state_dict(layers.state_dict())
    reference = outputs_and_gradients(exact, x.double(), grad.double(), fused=False,
                                      residual=None if skip is None else skip.double())
    names = ["output", "input grad", "weight grad", "bias grad", "residual grad"]
    assert len(ours) == len(torchs) == len(reference) == 4 + residual
    for name, mine, theirs, truth in zip(names, ours, torchs, reference):
        assert mine.dtype == theirs.dtype, name
        scale = truth.abs().max().item()
        error, torch_error = ((t.double() - truth).abs().max().item() / scale for t in (mine, theirs))
        floor = FP32_FLOOR if dtype == torch.float32 else 0.0
        assert error <= SLACK * torch_error + floor, f"{name}: {error:.2e} vs torch's {torch_error:.2e}"


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
def test_running_statistics_and_eval_outputs_as_batchnorm(momentum):
    torch.manual_seed(0)
    fused, plain = pair(nn.GELU, True, 12), pair(nn.GELU, True, 12)
    plain.load_state_dict(fused.state_dict())
    for layers in (fused, plain):
        layers[1].momentum = momentum
    for step in range(3):
        x = channels_last(4, 12, 5, 5, shift=step).requires_grad_()
        with fused_norm_act(True):
            run_fusing_norm_act(fused, x)
        with fused_norm_act(False):
            run_fusing_norm_act(plain, x)
    for key, value in fused.state_dict().items():
        torch.testing.assert_close(value, plain.state_dict()[key], rtol=1e-5, atol=1e-6, msg=key)
    assert int(fused[1].num_batches_tracked) == 3
    x = channels_last(2, 12, 5, 5)
    torch.testing.assert_close(fused.eval()(x), plain.eval()(x))


def test_a_residual_of_another_dtype_or_layout_is_added_after_the_pair():
    torch.manual_seed(0)
    layers, x = pair(nn.GELU, True, 8), channels_last(2, 8, 4, 4).requires_grad_()
    assert adds_fused(x, x.detach())
    for skip in (x.detach().double(), x.detach().contiguous(), x.detach()[:1]):
        assert not adds_fused(x, skip)
    for skip in (x.detach().double(), x.detach().contiguous()):
        with fused_norm_act(False):
            expected = skip + layers(x)
        assert takes_fused_path(x, *layers)
        torch.testing.assert_close(run_fusing_norm_act(layers, x, residual=skip), expected, rtol=1e-5, atol=1e-5)


def test_fused_path_only_where_it_applies():
    norm, act = nn.BatchNorm2d(8), nn.GELU()
    x = channels_last(2, 8, 4, 4).requires_grad_()
    assert takes_fused_path(x, act, norm) and takes_fused_path(x, norm, act)
    assert takes_fused_path(x, norm) and not takes_fused_path(x, act)  # a BatchNorm alone: the identity
    assert not takes_fused_path(x.contiguous(), act, norm)  # NCHW: torch's kernels
    assert not takes_fused_path(x.double(), act, norm)
    assert not takes_fused_path(x.detach(), act, nn.BatchNorm2d(8, affine=False))  # nothing to train
    assert not takes_fused_path(x, nn.GELU(approximate="tanh"), norm)
    assert not takes_fused_path(x, nn.LeakyReLU(), norm)
    assert not takes_fused_path(x, act, nn.SyncBatchNorm(8))
    assert not takes_fused_path(x, act, nn.GroupNorm(2, 8))
    assert not takes_fused_path(x, act, nn.BatchNorm2d(4))  # the wrong width: torch's own error
    assert not takes_fused_path(channels_last(1, 8, 1, 1).requires_grad_(), act, norm)  # one value per channel
    with torch.no_grad():
        assert not takes_fused_path(x, act, norm)
    assert not takes_fused_path(x, act, norm.eval())
    norm.train()
    seen = []
    handle = norm.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    assert not takes_fused_path(x, act, norm)  # a hooked module runs itself, so its hook sees it
    run_fusing_norm_act(nn.Sequential(act, norm), x)
    assert seen == [x.shape]
    handle.remove()
    norm.train()
    with fused_norm_act(False):
        assert not fused_norm_act and not takes_fused_path(x, act, norm)
    assert fused_norm_act and takes_fused_path(x, act, norm)


def test_blocks_fuse_every_pair_keeping_their_state_dict(monkeypatch):
    calls = []
    apply = _BatchNormActFunction.apply
    # (residual given, act_first) of every fused pair: apply(x, weight, bias, residual, eps, act, act_first)
    monkeypatch.setattr(_BatchNormActFunction, "apply", lambda *a: calls.append((a[3] is not None, a[6])) or apply(*a))
    net = create_model("convmixer_tiny").to(memory_format=torch.channels_last)
    keys = list(net.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        net(channels_last(2, 3, 32, 32)).float().sum().backward()
    depth = sum(isinstance(m, ConvNormAct) for m in net.modules())  # stem + 2 per mixer block
    assert len(calls) == depth and all(act_first for _, act_first in calls)
    assert sum(residual for residual, _ in calls) == (depth - 1) // 2  # each mixer block's residual add is fused
    assert list(net.state_dict()) == keys
    calls.clear()
    net = create_model("mobilenetv2").to(memory_format=torch.channels_last)
    net(channels_last(2, 3, 32, 32)).sum().backward()
    # every norm: the expansion and depthwise ones with ReLU6, the linear projections alone; and the
    # add of every inverted residual with a skip joins its projection's norm
    norms = sum(isinstance(m, ConvNormAct) and type(getattr(m, "norm", None)) is nn.BatchNorm2d for m in net.modules())
    skips = sum(isinstance(m, InvertedResidual) and m.has_skip for m in net.modules())
    assert len(calls) == norms > 0 and not any(act_first for _, act_first in calls)
    assert sum(residual for residual, _ in calls) == skips > 0


def test_a_norm_whose_activation_the_kernel_lacks_runs_alone_fused(monkeypatch):
    calls = []
    apply = _BatchNormActFunction.apply
    monkeypatch.setattr(_BatchNormActFunction, "apply", lambda *a: calls.append(a[5]) or apply(*a))
    layers = ConvNormAct(4, 8, act="leaky_relu")
    x = channels_last(2, 4, 6, 6).requires_grad_()
    y = run_fusing_norm_act(layers, x)
    assert calls == [0]  # the norm, with the identity; the LeakyReLU after it is torch's
    with fused_norm_act(False):
        torch.testing.assert_close(y, layers(x), rtol=1e-5, atol=1e-5)


def test_scripting_and_tracing_take_the_plain_path():
    layer = ConvNormAct(3, 8, act="gelu", order="conv_act_norm").eval()
    x = channels_last(2, 3, 8, 8)
    scripted = torch.jit.script(layer)
    traced = torch.jit.trace(layer, x)
    torch.testing.assert_close(scripted(x), layer(x))
    torch.testing.assert_close(traced(x), layer(x))
    exported = torch.export.export(layer.train(), (x.requires_grad_(),))
    assert not any("BatchNormAct" in str(node.target) for node in exported.graph.nodes)
