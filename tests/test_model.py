import pytest
import torch

from convzoo import ConfigError, build_model, register_block
from convzoo.config import compose, config_dir

MODEL_CONFIGS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))


def tiny_spec(*layers, **extra):
    return {"in_channels": 3, "num_classes": 10, "input_size": 32, "layers": list(layers), **extra}


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.slow
def test_every_shipped_model_config_builds_and_runs(name):
    cfg = compose([f"model={name}"])
    model = build_model(cfg.model)
    height, width = model.input_size
    out = model(torch.randn(2, 3, height, width))
    info = model.feature_info[0]  # logits (reduction None), or a map such as the U-Net's scores per pixel
    spatial = () if info["reduction"] is None else (height // info["reduction"], width // info["reduction"])
    assert out.shape == (2, info["num_chs"], *spatial)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_shipped_configs_include_the_issue_models():
    assert {"plain", "conv_norm_act", "separable", "convmixer", "convmixer_tiny"} <= set(MODEL_CONFIGS)


@pytest.mark.parametrize("dim,depth,kernel,patch,millions", [
    (1536, 20, 9, 7, 51.6),   # ConvMixer-1536/20 (paper Table 1)
    (768, 32, 7, 7, 21.1),    # ConvMixer-768/32
    (1024, 20, 9, 14, 24.4),  # ConvMixer-1024/20
])
def test_paper_convmixers_from_overrides_alone(dim, depth, kernel, patch, millions):
    cfg = compose(["model=convmixer", f"model.dim={dim}", f"model.depth={depth}", f"model.kernel_size={kernel}",
                   f"model.patch_size={patch}", "model.num_classes=1000", "model.input_size=224"])
    with torch.device("meta"):  # parameter counts need no memory
        model = build_model(cfg.model)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == millions


def test_convmixer_256_8_cifar_model():
    model = build_model(compose(["model=convmixer"]).model)
    assert sum(p.numel() for p in model.parameters()) == 594_186
    assert len(model.layers.mixer) == 8
    assert model.layers.stem.conv.kernel_size == (2, 2) and model.layers.mixer[0].depthwise.block.conv.kernel_size == (5, 5)


def test_channels_are_inferred_and_modules_named_after_the_spec():
    model = build_model(tiny_spec(
        {"block": "conv_norm_act", "out_channels": 16, "name": "stem"},
        {"block": "separable", "out_channels": 32, "stride": 2, "repeat": 2},
        {"block": "classifier", "name": "head"},
    ))
    names = dict(model.named_modules())
    assert {"layers.stem.conv", "layers.1.0.depthwise.conv", "layers.1.1.pointwise.conv", "layers.head.fc"} <= set(names)
    assert names["layers.1.1.depthwise.conv"].in_channels == 32
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert "layers" in repr(model)
    torch.jit.script(model)


def test_a_spec_may_end_in_a_repeated_layer():
    model = build_model({"in_channels": 8, "layers": [{"block": "convmixer", "kernel_size": 3, "repeat": 2}]})
    assert model.out_channels == 8 and model(torch.randn(1, 8, 32, 32)).shape == (1, 8, 32, 32)


def test_width_and_depth_multipliers():
    spec = tiny_spec({"block": "conv_norm_act", "out_channels": 16, "repeat": 2}, {"block": "classifier"},
                     width_multiplier=1.5, depth_multiplier=2.0, channel_divisor=8)
    model = build_model(spec)
    assert len(model.layers[0]) == 4 and model.layers[0][0].out_channels == 24


def test_interpolation_inside_specs():
    model = build_model(tiny_spec({"block": "conv_norm_act", "out_channels": "${...dim}"}, {"block": "classifier"}, dim=12))
    assert model.layers[0].out_channels == 12


def test_yaml_file_and_third_party_block_via_imports(tmp_path):
    path = tmp_path / "se_net.yaml"
    path.write_text(
        "in_channels: 3\nnum_classes: 4\nimports: [custom_blocks]\nlayers:\n"
        "  - {block: conv_norm_act, out_channels: 16}\n"
        "  - {block: test_squeeze_excite, reduction: 4, residual: true}\n"
        "  - {block: classifier}\n"
    )
    model = build_model(path)
    assert type(model.layers[1].block).__name__ == "SqueezeExcite"
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_missing_import_is_reported():
    with pytest.raises(ConfigError, match="imports: could not import 'no_such_module'"):
        build_model(tiny_spec({"block": "classifier"}, imports=["no_such_module"]))


@pytest.mark.parametrize("layers,message", [
    ([{"block": "conv"}, {"block": "convmixr"}],
     r"layers\[1\]: Unknown block 'convmixr'\. Did you mean 'convmixer'"),
    ([{"block": "conv", "out_channels": 8, "kernal_size": 5}],
     r"layers\[0\] \(block 'conv'\): block 'conv' got an unknown argument 'kernal_size'\. Did you mean 'kernel_size'\? "
     r"It accepts: in_channels, out_channels, kernel_size"),
    ([{"block": "patch_embed", "patch_size": 4}],
     r"layers\[0\] \(block 'patch_embed'\): .*missing required argument\(s\) out_channels"),
    ([{"block": "conv", "out_channels": 16}, {"block": "conv", "out_channels": 24, "groups": 5}],
     r"layers\[1\] \(block 'conv'\): groups=5 must divide both in_channels=16 and out_channels=24"),
    ([{"block": "conv", "out_channels": 16}, {"block": "conv_norm_act", "out_channels": 32, "residual": True}],
     r"layers\[1\] \(block 'conv_norm_act'\): residual needs a shape-preserving block, but it maps \(16, 32, 32\) to \(32, 32, 32\)"),
    ([{"block": "conv", "out_channels": 8}, {"block": "pool", "repeat": 6}],
     r"layers\[1\] copy 5 \(block 'pool'\): cannot run on its input of shape \(8, 1, 1\).*input_size"),
    ([{"block": "conv", "out_channels": 8, "kernel_size": 33, "padding": 0}],
     r"layers\[0\] \(block 'conv'\): cannot run on its input of shape \(3, 32, 32\)"),
    ([{"block": "conv", "out_channels": 8}, {"block": "conv", "in_channels": 4}],
     r"layers\[1\] \(block 'conv'\): in_channels=4 but the previous layer gives 8 channels"),
    ([{"block": "conv", "repeat": 0}], r"layers\[0\] \(conv\): repeat must be a positive integer"),
])
def test_bad_specs_fail_with_a_clear_message(layers, message):
    with pytest.raises(ConfigError, match=message):
        build_model(tiny_spec(*layers))


def test_bad_specs_fail_before_any_real_tensor(monkeypatch):
    devices = []

    @register_block("test_probe")
    class Probe(torch.nn.Conv2d):
        def __init__(self, in_channels: int):
            super().__init__(in_channels, in_channels, 1)
            devices.append(self.weight.device.type)
            self.out_channels = in_channels

    with pytest.raises(ConfigError, match=r"layers\[2\]"):
        build_model(tiny_spec({"block": "test_probe"}, {"block": "test_probe"}, {"block": "conv", "groups": 2}))
    assert devices == ["meta", "meta"]


def test_an_error_names_the_key_an_interpolation_chain_starts_from():
    spec = {"num_classes": 10, "depth": 1, "width": 0, "copies": "${calc:'${.depth} - 1'}", "widths": [8, 16],
            "block_defaults": {"kernel_size": "${..width}"},
            "layers": [{"block": "conv_norm_act", "out_channels": "${...widths[1]}", "repeat": "${...copies}"},
                       {"block": "classifier"}]}
    with pytest.raises(ConfigError) as info:  # repeat comes from copies, which comes from depth
        build_model(spec)
    assert str(info.value).startswith("depth=1 is used by layers[0] (conv_norm_act): repeat must be a positive integer")
    spec["depth"] = 2  # now block_defaults' kernel_size, from width
    with pytest.raises(ConfigError, match=r"^width=0 is used by layers\[0\] \(block 'conv_norm_act'\): .*kernel_size=0"):
        build_model(spec)
    spec["width"], spec["widths"] = 3, [8, 0]  # a table read by index: named by the table
    with pytest.raises(ConfigError, match=r"^widths=\[8, 0\] is used by layers\[0\]"):
        build_model(spec)


@pytest.mark.parametrize("channels, multiplier, divisor, expected", [
    (28, 0.5, 8, 16),    # 14 channels: the nearest multiple of 8 is 16 (a floor would give 8)
    (20, 0.5, 8, 8),     # 10 channels: nearest multiple 8
    (4, 0.25, 8, 8),     # 1 channel: never below the divisor
    (27, 0.5, 1, 14),    # 13.5 channels rounds to 14 (a floor would give 13)
    (10, 1.6, 4, 16),    # 16 exactly
])
def test_width_multiplier_rounds_to_the_nearest_multiple_of_the_divisor(channels, multiplier, divisor, expected):
    net = build_model({"in_channels": 3, "width_multiplier": multiplier, "channel_divisor": divisor,
                       "layers": [{"block": "conv", "out_channels": channels}]})
    assert net.layers[0].out_channels == expected
