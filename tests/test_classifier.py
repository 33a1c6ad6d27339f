from functools import partial

import pytest
import torch

from convzoo.classifier import ImageClassifier, flip_translate_views, make_optimizer
from convzoo.model import build_model
from convzoo.schedules import one_cycle, piecewise_linear, warmup_cosine

SPEC = {"in_channels": 3, "num_classes": 10, "layers": [
    {"block": "conv_norm_act", "out_channels": 8, "norm": {"norm": "batchnorm", "learn_scale": False}},
    {"block": "classifier"},
]}


def test_norm_biases_get_scaled_lr_and_the_same_decoupled_decay():
    model = build_model(SPEC)
    optimizer = make_optimizer(partial(torch.optim.SGD, lr=0.1, weight_decay=0.01), model, norm_bias_lr_scale=64)
    regular, boosted = optimizer.param_groups
    norm = model.layers[0].norm
    assert [id(p) for p in boosted["params"]] == [id(norm.bias)]
    assert all(p is not norm.weight for p in regular["params"])  # learn_scale=False froze it
    assert boosted["lr"] == pytest.approx(6.4) and boosted["lr"] * boosted["weight_decay"] == pytest.approx(0.1 * 0.01)
    assert len(make_optimizer(partial(torch.optim.SGD, lr=0.1), model).param_groups) == 1


def test_tta_views_and_weights():
    x = torch.randn(2, 3, 8, 8)
    assert len(flip_translate_views(x, "none")) == 1
    flips = flip_translate_views(x, "flip")
    assert torch.equal(flips[1][0], x.flip(-1))
    views = flip_translate_views(x, "flip_translate")
    assert len(views) == 6 and sum(w for _, w in views) == 4.0
    assert all(v.shape == x.shape for v, _ in views)


def test_unknown_tta_mode_is_named():
    with pytest.raises(ValueError, match="module.tta='mirror'"):
        ImageClassifier(SPEC, tta="mirror")


def test_schedules():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = piecewise_linear(opt, total_steps=100, milestones=[0, 0.23, 1], values=[0.2, 1.0, 0.07])
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and max(lrs) == pytest.approx(1.0, abs=0.02) and lrs[-1] < 0.09
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup=0.2)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.5) and lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="use scheduler=constant"):
        one_cycle(opt, total_steps=2)


def test_compile_keeps_checkpoint_names():
    module = ImageClassifier(SPEC, compile=True)
    names = list(module.state_dict())
    module.configure_model()
    assert list(module.state_dict()) == names and module.model._compiled_call_impl is not None
