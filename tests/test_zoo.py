"""The model zoo: published parameter counts, exactly, through the public API; blocks vs primitives."""

import importlib.util
from pathlib import Path

import pytest
import torch

from convzoo import ConfigError, build_model, create_model, list_models
from convzoo.network import zoo

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

PUBLISHED = [(ref.model, ref.overrides, ref.params) for ref in zoo.PUBLISHED]  # (model, overrides, parameters)
SOURCES = [f"{ref.network} ({ref.source})" for ref in zoo.PUBLISHED]


def params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name,overrides,count", PUBLISHED, ids=SOURCES)
def test_published_parameter_count(name, overrides, count):
    with torch.device("meta"):  # counting needs no memory
        net = create_model(name, **overrides)
    assert params(net) == count


def test_the_published_table_holds_every_reference():
    assert len(PUBLISHED) == 25 and ("resnet_cifar", {"depth": 110}, 1_727_962) in PUBLISHED
    assert ("wrn", {"depth": 40, "widen": 1, "dropout": 0.0}, 563_930) in PUBLISHED
    assert ("airbench", {}, 1_972_792) in PUBLISHED


def test_every_zoo_family_is_covered():
    assert {"resnet_cifar", "resnet", "preact_resnet", "se_resnet", "vgg", "mobilenetv2", "densenet", "wrn",
            "convnext_cifar", "unet"} <= set(list_models())


def test_resnet20_from_basic_blocks_equals_resnet20_from_primitives():
    blocks = create_model("resnet_cifar", depth=20).eval()
    primitives = build_model(EXAMPLES / "resnet20_primitives.yaml").eval()
    assert params(blocks) == params(primitives) == 269_722
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in blocks.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5)
    pairs = zip(blocks.state_dict().values(), primitives.state_dict().items())
    primitives.load_state_dict({name: source for source, (name, target) in pairs if source.shape == target.shape})
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(blocks(x), primitives(x))


def test_option_b_adds_exactly_the_two_projections():
    a, b = create_model("resnet_cifar"), create_model("resnet_cifar", shortcut="projection")
    assert params(b) - params(a) == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert type(b.layers.stage2[0].shortcut.conv).__name__ == "Conv" and a.layers.stage2[0].shortcut.stride == 2


def test_zoo_model_as_a_backbone():
    net = create_model("resnet", outputs=["stage2", "stage3", "stage4"])
    assert net.feature_info.channels() == [128, 256, 512] and net.feature_info.reduction() == [2, 4, 8]
    out = net(torch.randn(1, 3, 32, 32))
    assert [tuple(t.shape) for t in out.values()] == [(1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4)]


@pytest.mark.parametrize("call,message", [
    (lambda: create_model("resnt_cifar"), r"Unknown model 'resnt_cifar'\. Did you mean 'resnet_cifar'"),
    (lambda: create_model("resnet_cifar", dpeth=56), r"model 'resnet_cifar' has no key 'dpeth'\. Did you mean 'depth'"),
    (lambda: create_model("resnet_cifar", depth=57), r"calc: cannot evaluate '\(57 - 2\) / 6': 55 / 6 = 9\.167 is not a whole number"),
    (lambda: create_model("resnet", depth=19), r"lookup: 19 is not one of the table's keys \(18, 34, 50, 101, 152\)"),
    (lambda: create_model("resnet_cifar", shortcut="option_a"), r"shortcut='option_a' is not known; use one of projection, zero_pad"),
    (lambda: build_model(Path(__file__).resolve().parent.parent / "configs" / "model" / "resnet_cifar.yaml"),
     r"'defaults' is Hydra's defaults list.*create_model"),
])
def test_zoo_mistakes_fail_clearly(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


@pytest.mark.slow
def test_list_models_prints_computed_counts(capsys):
    from convzoo.__main__ import main

    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "269,722" in out and "36,479,194" in out and "unet" in out and "81.1" in out  # ResNet-20: 40.6M MACs


@pytest.mark.slow
def test_summary_of_a_deep_zoo_model(capsys):
    from convzoo.__main__ import main

    assert main(["summary", "model=resnet_cifar", "model.depth=110"]) == 0
    out = capsys.readouterr().out
    assert "layers.stage3.17" in out and "1,727,962" in out


def _reference_nets():
    spec = importlib.util.spec_from_file_location("reference_nets", REPO / "benchmarks" / "reference_nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,reference", [("resnet", "ResNet18"), ("mobilenetv2", "MobileNetV2")])
@pytest.mark.slow
def test_yaml_model_computes_what_the_hand_written_one_does(name, reference):
    """The benchmark compares like with like: same parameters in the same order, identical outputs."""
    net = create_model(name)
    hand = getattr(_reference_nets(), reference)()
    torch.manual_seed(0)
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) * 0.1 + (0.5 if tensor.dim() == 1 else 0.0))
    pairs = list(zip(net.state_dict().values(), hand.state_dict().items()))
    assert len(pairs) == len(hand.state_dict()) == len(net.state_dict()) and all(a.shape == b.shape for a, (_, b) in pairs)
    hand.load_state_dict({key: value for value, (key, _) in pairs})
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(net.eval()(x), hand.eval()(x))
