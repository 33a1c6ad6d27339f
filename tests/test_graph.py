"""Graph specs: named inputs, merges, shortcuts, stages, several outputs; checked against hand-written nets."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convzoo import ConfigError, build_model, register_block, summary
from convzoo.network.build import ConvNet, GraphNet

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "model"


def spec(*layers, **extra):
    return {"in_channels": 3, "num_classes": 10, "input_size": 32, "layers": list(layers), **extra}


def randomize(net: nn.Module) -> nn.Module:
    """Random weights and batch-norm statistics, so eval-mode comparisons exercise every tensor."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + 0.5 if "running_var" in name else torch.randn_like(tensor) * 0.2)
    return net.eval()


def copy_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    """Load ``source``'s tensors into ``target`` in order (both list their parameters in the same order)."""
    pairs = list(zip(source.state_dict().values(), target.state_dict().items()))
    assert len(pairs) == len(source.state_dict()) == len(target.state_dict())
    assert all(a.shape == b.shape for a, (_, b) in pairs)
    target.load_state_dict({name: tensor for tensor, (name, _) in pairs})
    return target.eval()


def cbr(cin, cout, k=3, stride=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, *([nn.ReLU()] if act else []))


class HandResNetStage(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = cbr(3, 16)
        self.b1_conv1, self.b1_conv2, self.b1_skip = cbr(16, 32, stride=2), cbr(32, 32, act=False), cbr(16, 32, 1, 2, act=False)
        self.b2_conv1, self.b2_conv2 = cbr(32, 32), cbr(32, 32, act=False)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        y = F.relu(self.b1_conv2(self.b1_conv1(x)) + self.b1_skip(x))
        z = F.relu(self.b2_conv2(self.b2_conv1(y)) + y)
        return self.fc(self.pool(z).flatten(1))


class HandUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1, self.enc2 = nn.Sequential(cbr(3, 16), cbr(16, 16)), nn.Sequential(cbr(16, 32), cbr(32, 32))
        self.bottleneck = nn.Sequential(cbr(32, 64), cbr(64, 64))
        self.dec2, self.dec1 = nn.Sequential(cbr(96, 32), cbr(32, 32)), nn.Sequential(cbr(48, 16), cbr(16, 16))
        self.logits = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(b, size=e2.shape[-2:]), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:]), e1], 1))
        return self.logits(d1)


@pytest.mark.parametrize("example,hand", [("resnet_stage", HandResNetStage), ("unet", HandUNet)])
def test_graph_matches_the_hand_written_network(example, hand):
    net = randomize(build_model((CONFIGS if example == "unet" else EXAMPLES) / f"{example}.yaml"))
    reference = copy_weights(net, hand())
    x = torch.randn(2, 3, *net.input_size)
    assert isinstance(net, GraphNet)
    assert torch.equal(net(x), reference(x))


def test_unet_output_has_the_input_resolution():
    net = build_model(CONFIGS / "unet.yaml")
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)
    assert net.feature_info.reduction() == [1]


def test_densenet_block_concatenates_and_transitions():
    net = build_model(EXAMPLES / "densenet_block.yaml")
    channels = {n.layer: net.get_submodule(n.path).out_channels for n in net.nodes}
    assert [channels[f"cat{i}"] for i in (1, 2, 3)] == [36, 48, 60] and channels["transition"] == 30
    assert net.layers.layer2.conv.in_channels == 36 and net.layers.layer2.conv.bias is None
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_fpn_returns_every_output_with_feature_info():
    net = build_model(EXAMPLES / "fpn.yaml")
    out = net(torch.randn(2, 3, 64, 64))
    assert list(out) == ["p2", "p3", "p4"]
    assert [tuple(t.shape) for t in out.values()] == [(2, 64, 32, 32), (2, 64, 16, 16), (2, 64, 8, 8)]
    assert net.feature_info.channels() == [64, 64, 64] and net.feature_info.reduction() == [2, 4, 8]
    assert net.feature_info.module_name() == ["p2", "p3", "p4"] and net.out_channels == [64, 64, 64]
    table = summary(net)
    rows = {r["layer"]: r for r in table.rows}
    assert rows["layers.merge3"]["inputs"] == ("top3", "lateral3")
    assert rows["layers.p2"]["output_shape"] == (64, 32, 32)
    assert table.total_params == sum(p.numel() for p in net.parameters())


def test_outputs_override_cuts_a_backbone_out_of_a_classifier():
    net = build_model(EXAMPLES / "resnet_stage.yaml", outputs=["stem", "b2"])
    assert "head" not in dict(net.named_children())["layers"]._modules
    out = net(torch.randn(1, 3, 32, 32))
    assert {k: tuple(v.shape) for k, v in out.items()} == {"stem": (1, 16, 32, 32), "b2": (1, 32, 16, 16)}
    assert net.spec["outputs"] == ["stem", "b2"]
    assert build_model(net.spec).state_dict().keys() == net.state_dict().keys()  # the stored spec rebuilds it


def test_a_chain_stays_a_sequential_network_with_the_same_names():
    net = build_model(spec({"name": "stem", "block": "conv_norm_act", "out_channels": 8},
                           {"block": "conv_norm_act", "residual": True, "repeat": 2}, {"name": "head", "block": "classifier"}))
    assert type(net) is ConvNet and isinstance(net.layers, nn.Sequential)
    assert "layers.1.0.block.conv.weight" in net.state_dict() and "layers.head.fc.weight" in net.state_dict()
    torch.jit.script(net)


def test_checkpoint_of_convzoo_0_1_loads_with_identical_outputs():
    from convzoo.training.module import load_model

    data = Path(__file__).resolve().parent / "data"
    net = load_model(data / "legacy-v0.1.0.ckpt")
    saved = torch.load(data / "legacy-v0.1.0-io.pt")
    assert type(net) is ConvNet and torch.equal(net(saved["input"]), saved["output"])


def test_a_stored_0_2_pool_layer_is_upgraded_to_the_one_pooling_vocabulary():
    from convzoo.spec import upgrade_legacy_spec

    stored = spec({"block": "conv_norm_act", "out_channels": 8}, {"block": "pool", "kind": "avg", "kernel_size": 3},
                  {"block": "classifier"})
    upgraded = upgrade_legacy_spec(stored)
    assert upgraded["layers"][1] == {"block": "pool", "pool": "avg", "pool_size": 3}
    assert upgrade_legacy_spec(upgraded) == upgraded
    pool = build_model(upgraded).layers[1].pool
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 3
    with pytest.raises(ConfigError, match="unknown argument 'kind'"):
        build_model(stored)


def test_stage_with_first_copy_arguments_and_an_inferred_projection_shortcut():
    net = build_model(spec(
        {"name": "stem", "block": "conv_norm_act", "out_channels": 16},
        {"name": "stage", "block": "conv_norm_act", "out_channels": 32, "repeat": 3, "first": {"stride": 2},
         "residual": {"block": "conv_norm_act", "kernel_size": 1, "act": "none"}},
        {"name": "head", "block": "classifier"}))
    first, second = net.layers.stage[0], net.layers.stage[1]
    assert first.block.conv.stride == (2, 2) and second.block.conv.stride == (1, 1)
    assert first.shortcut.conv.stride == (2, 2) and first.shortcut.conv.out_channels == 32
    assert first.shortcut.conv.kernel_size == (1, 1) and not hasattr(first.shortcut, "act")
    assert second.shortcut is None  # the shape is kept: the identity
    assert [n.label for n in net.nodes][1:3] == ["residual(conv_norm_act, shortcut=conv_norm_act)", "residual(conv_norm_act)"]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_option_a_shortcut_has_no_parameters():
    net = build_model(spec(
        {"block": "conv_norm_act", "out_channels": 16},
        {"block": "conv_norm_act", "out_channels": 32, "stride": 2, "residual": {"block": "zero_pad_shortcut"}},
        {"block": "classifier"}))
    residual = net.layers[1]
    assert residual.shortcut.stride == 2 and residual.shortcut.out_channels == 32
    assert sum(p.numel() for p in residual.shortcut.parameters()) == 0


def test_block_defaults_reach_every_block_that_takes_the_key():
    net = build_model(spec({"block": "conv_norm_act", "out_channels": 8}, {"block": "separable", "act": "relu"},
                           {"block": "classifier"}, block_defaults={"act": "silu", "norm": "groupnorm"}))
    assert isinstance(net.layers[0].act, nn.SiLU) and isinstance(net.layers[0].norm, nn.GroupNorm)
    assert isinstance(net.layers[1].pointwise.act, nn.ReLU)  # the layer's own value wins
    assert net.layers[2].out_channels == 10  # num_classes is one of the defaults


def test_top_level_variables_must_be_used():
    net = build_model(spec({"block": "conv", "out_channels": "${...dim}"}, {"block": "classifier"}, dim=12))
    assert net.layers[0].out_channels == 12 and "dim" not in net.spec


def test_a_bug_in_a_users_block_keeps_its_own_traceback():
    @register_block("test_buggy")
    class Buggy(nn.Module):
        def __init__(self, in_channels: int):
            super().__init__()
            self.out_channels = in_channels

        def forward(self, x):
            return x.no_such_method()

    with pytest.raises(AttributeError, match="no_such_method") as error:
        build_model(spec({"name": "mine", "block": "test_buggy"}, {"block": "classifier"}))
    assert any("layers[0] 'mine'" in note for note in getattr(error.value, "__notes__", []))


BAD_GRAPHS = [
    (spec({"name": "stem", "block": "conv"}, {"block": "add", "from": ["stem", "stm"]}),
     r"layers\[1\] \(add\): from names 'stm', which is not an earlier layer\. Did you mean 'stem'\?"),
    (spec({"name": "a", "block": "conv", "from": "b"}, {"name": "b", "block": "conv"}),
     r"layers\[0\] 'a' \(conv\): from names 'b', which comes later"),
    (spec({"name": "a", "block": "conv"}, {"block": "conv", "from": 0}),
     r"refers to a layer by position; layers are referenced by name, never by index"),
    (spec({"name": "a", "block": "conv"}, {"name": "a", "block": "conv"}),
     r"layers\[1\]: name 'a' is already used by layers\[0\]"),
    (spec({"name": "a", "block": "conv", "out_channels": 8}, {"name": "b", "block": "conv", "from": "input", "out_channels": 4},
          {"block": "add", "from": ["a", "b"]}),
     r"layers\[2\] \(block 'add'\): add needs inputs with equal channels, got \[8, 4\]; project"),
    (spec({"name": "a", "block": "conv", "out_channels": 8}, {"name": "b", "block": "conv", "from": "input", "stride": 2},
          {"block": "concat", "from": ["a", "b"]}),
     r"layers\[2\] \(block 'concat'\): cannot run on inputs of shapes \(8, 32, 32\) and \(3, 16, 16\).*resize one with upsample"),
    (spec({"name": "a", "block": "conv"}, {"block": "conv", "from": ["a", "input"]}),
     r"layers\[1\] \(block 'conv'\): the block takes one input but `from` names 2 \(a, input\); merge them first"),
    (spec({"block": "conv"}, {"block": "concat"}), r"layers\[1\] \(block 'concat'\): the block merges several inputs"),
    (spec({"block": "conv"}, {"block": "classifier"}, width_multipler=0.5),
     r"model spec: unknown key 'width_multipler'\. Did you mean 'width_multiplier'"),
    (spec({"block": "conv_norm_act"}, {"block": "classifier"}, block_defaults={"nrom": "batchnorm"}),
     r"block_defaults key 'nrom' is taken by no block in this spec\. Did you mean 'norm'\?"),
    (spec({"block": "conv", "out_channels": 16, "stride": 2, "residual": {"block": "conv", "kernel_size": 1, "stride": 1}}),
     r"layers\[0\] \(block 'conv'\): the shortcut gives \(16, 32, 32\) but the block gives \(16, 16, 16\)"),
    (spec({"name": "a", "block": "conv"}, {"name": "b", "block": "classifier"}, outputs=["head"]),
     r"outputs names 'head', which is not a named layer"),
    (spec({"name": "a", "block": "conv"}, {"name": "side", "block": "conv"}, {"name": "head", "block": "classifier", "from": "a"}),
     r"layers\[1\] 'side' \(block 'conv'\) feeds no output \(head\)"),
    (spec({"block": "conv", "out_channels": "abc"}, {"block": "classifier"}),
     r"layers\[0\] \(block 'conv'\): block 'conv': out_channels='abc' has the wrong type \(str\); it must be int \| None"),
    (spec({"block": "upsample", "mode": "bilinar"}), r"upsample mode='bilinar' is not known"),
    (spec({"name": "input", "block": "conv"}), r"name 'input' is reserved"),
    (spec({"block": "conv", "residual": "yes"}), r"residual must be true, a shortcut block spec"),
    (spec({"block": "conv", "out_channels": 8}, {"block": "pool", "repeat": 6}),
     r"layers\[1\] copy 5 \(block 'pool'\): cannot run on its input of shape \(8, 1, 1\)"),
]


@pytest.mark.parametrize("bad,message", BAD_GRAPHS)
def test_bad_graphs_fail_before_building_with_a_clear_message(bad, message):
    with pytest.raises(ConfigError, match=message):
        build_model(bad)


def test_intermediate_tensors_are_dropped_after_their_last_reader():
    net = build_model(CONFIGS / "unet.yaml")
    plan = {name: release for name, _, release in net.plan}
    assert plan["enc1"] == ("input",) and "enc1" in plan["cat1"] and "enc2" in plan["cat2"]
    assert "bottleneck" in plan["up2"] and "logits" not in {r for rs in plan.values() for r in rs}


@pytest.mark.slow
def test_graph_networks_compile_and_export():
    net = build_model(EXAMPLES / "fpn.yaml").eval()
    x = torch.randn(2, 3, 64, 64)
    expected = net(x)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    assert all(torch.allclose(compiled(x)[k], expected[k]) for k in expected)
    exported = torch.export.export(net, (x,))
    assert all(torch.allclose(exported.module()(x)[k], expected[k], atol=1e-6) for k in expected)


def test_an_image_classifier_needs_logits():
    from convzoo.training.module import ImageClassifier

    with pytest.raises(ConfigError, match=r"model 'fpn' returns p2 \(64 channels, reduction 2\), .*end the spec with a classifier"):
        ImageClassifier(str(EXAMPLES / "fpn.yaml"))


def test_summary_command_takes_a_spec_file(capsys):
    from convzoo.__main__ import main

    assert main(["summary", str(CONFIGS / "unet.yaml"), "width=8"]) == 0
    out = capsys.readouterr().out
    assert "layers.cat1" in out and "up1+enc1" in out and "8x64x64" in out


@pytest.mark.slow
def test_a_graph_trains_inits_and_checkpoints_like_a_chain(tmp_path):
    from omegaconf import OmegaConf, open_dict

    from convzoo.config import compose
    from convzoo.training.module import load_model
    from convzoo.training import train

    cfg = compose(["data=synthetic", "init=kaiming_normal", "trainer.max_epochs=1", "data.num_train=256", "data.val_size=64"])
    with open_dict(cfg):
        cfg.model = OmegaConf.load(EXAMPLES / "resnet_stage.yaml")
        cfg.paths.output_dir = str(tmp_path)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    init_csv = (tmp_path / "init.csv").read_text()
    assert "layers.b1_skip.conv.weight,32x16x1x1,512,Conv,kaiming_normal" in init_csv
    assert "b1_conv2+b1_skip" in (tmp_path / "summary.txt").read_text()
    net = load_model(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(net, GraphNet) and net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.slow
def test_graph_network_compiles_with_inductor():
    net = build_model(EXAMPLES / "resnet_stage.yaml").eval()
    x = torch.randn(2, 3, 32, 32)
    expected = net(x)
    assert torch.allclose(torch.compile(net)(x), expected, atol=1e-4)


def test_graph_forward_drops_each_tensor_after_its_last_reader():
    import weakref

    net = build_model(spec(
        {"name": "stem", "block": "conv", "out_channels": 4},
        {"name": "a", "block": "conv", "out_channels": 4},           # the last reader of stem
        {"name": "b", "block": "conv", "out_channels": 4},
        {"name": "c", "block": "add", "from": ["b", "a"]},           # the last reader of a and b
        {"name": "head", "block": "classifier"}))
    assert isinstance(net, GraphNet)
    outputs, alive_at = {}, {}
    for name in ("stem", "a", "b"):
        getattr(net.layers, name).register_forward_hook(lambda m, i, out, name=name: outputs.__setitem__(name, weakref.ref(out)))
    for name in ("b", "c", "head"):
        getattr(net.layers, name).register_forward_pre_hook(
            lambda m, i, name=name: alive_at.__setitem__(name, {k: ref() is not None for k, ref in outputs.items()}))
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    assert alive_at["b"] == {"stem": False, "a": True}       # stem was freed once a had read it
    assert alive_at["head"] == {"stem": False, "a": False, "b": False}
