"""Weight-init schemes (convzoo.weight_init): promised statistics, apply_init's rules, the record, errors,
and the configs/init/*.yaml group."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from convzoo.registry import INITS, ConfigError
from convzoo.weight_init import (
    InitRecord,
    apply_init,
    apply_init_config,
    resolve_init,
)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "init"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def small_model() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 10)
    )


def perturb(model: nn.Module) -> None:
    """Make every parameter distinctive, so resets (or their absence) are visible."""
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(2.0, 3.0)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def init_tensor(spec, shape) -> torch.Tensor:
    tensor = torch.empty(shape)
    INITS.build(spec if isinstance(spec, dict) else {"scheme": spec})(tensor)
    return tensor


def rel(actual: float, expected: float) -> float:
    return abs(actual - expected) / abs(expected)


# ---------------------------------------------------------------------------------------------
# each scheme gives the statistics it promises
# ---------------------------------------------------------------------------------------------
def test_normal():
    w = init_tensor("normal", (1024, 1024))
    assert abs(w.mean().item()) < 1e-4
    assert rel(w.std().item(), 0.01) < 0.05
    w = init_tensor({"scheme": "normal", "mean": 1.0, "std": 0.5}, (1024, 1024))
    assert abs(w.mean().item() - 1.0) < 0.01 and rel(w.std().item(), 0.5) < 0.05


def test_trunc_normal():
    # Defaults follow timm: std 0.02 with absolute bounds +-2, i.e. effectively untruncated.
    w = init_tensor("trunc_normal", (1024, 1024))
    assert w.min() >= -2.0 and w.max() <= 2.0
    assert rel(w.std().item(), 0.02) < 0.05
    # Truncation at +-2 sigma: std of a standard normal cut to [-2, 2] is sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)).
    w = init_tensor({"scheme": "trunc_normal", "std": 1.0, "a": -2.0, "b": 2.0}, (1024, 1024))
    phi = math.exp(-2.0) / math.sqrt(2 * math.pi)
    mass = math.erf(2.0 / math.sqrt(2))
    expected = math.sqrt(1 - 4 * phi / mass)
    assert w.min() >= -2.0 and w.max() <= 2.0 and w.abs().max() > 1.99
    assert rel(w.std().item(), expected) < 0.02


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_normal(mode):
    w = init_tensor({"scheme": "kaiming_normal", "mode": mode}, (128, 64, 3, 3))
    fan = 64 * 9 if mode == "fan_in" else 128 * 9
    assert abs(w.mean().item()) < 1e-3
    assert rel(w.std().item(), math.sqrt(2.0) / math.sqrt(fan)) < 0.03


def test_kaiming_normal_leaky_relu_gain():
    w = init_tensor({"scheme": "kaiming_normal", "nonlinearity": "leaky_relu", "a": 0.2}, (1024, 1024))
    gain = math.sqrt(2.0 / (1 + 0.2**2))
    assert rel(w.std().item(), gain / 32) < 0.03


@pytest.mark.parametrize("mode", ["fan_in", "fan_out"])
def test_kaiming_uniform(mode):
    w = init_tensor({"scheme": "kaiming_uniform", "mode": mode}, (128, 64, 3, 3))
    fan = 64 * 9 if mode == "fan_in" else 128 * 9
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan)
    assert w.abs().max().item() <= bound + 1e-6
    assert w.abs().max().item() > 0.99 * bound
    assert rel(w.std().item(), bound / math.sqrt(3.0)) < 0.03


@pytest.mark.parametrize("scheme", ["xavier_normal", "xavier_uniform"])
@pytest.mark.parametrize("gain", [1.0, "tanh"])
def test_xavier(scheme, gain):
    w = init_tensor({"scheme": scheme, "gain": gain}, (512, 1024))
    g = 5.0 / 3.0 if gain == "tanh" else 1.0
    expected = g * math.sqrt(2.0 / (512 + 1024))
    assert abs(w.mean().item()) < 1e-3
    assert rel(w.std().item(), expected) < 0.03
    if scheme == "xavier_uniform":
        assert w.abs().max().item() <= expected * math.sqrt(3.0) + 1e-6


def test_orthogonal():
    w = init_tensor("orthogonal", (256, 256))
    assert torch.allclose(w @ w.T, torch.eye(256), atol=1e-4)
    # A conv weight is orthogonal once flattened to (out_channels, -1): rows orthonormal.
    w = init_tensor({"scheme": "orthogonal", "gain": 2.0}, (64, 16, 3, 3)).flatten(1)
    assert torch.allclose(w @ w.T, 4.0 * torch.eye(64), atol=1e-4)


def test_constant():
    assert torch.equal(init_tensor({"scheme": "constant", "value": 0.5}, (3, 4)), torch.full((3, 4), 0.5))


def test_dirac_passes_the_first_in_channels_through_and_keeps_the_rest_random():
    w = init_tensor("dirac", (24, 8, 3, 3))
    x = torch.randn(2, 8, 7, 7)
    y = nn.functional.conv2d(x, w, padding=1)
    assert torch.allclose(y[:, :8], x, atol=1e-6)
    bound = math.sqrt(5 / 6) * math.sqrt(3 / (8 * 9))  # kaiming_uniform with a=sqrt(5): PyTorch's conv default
    rest = w[8:]
    assert rest.abs().max() <= bound and rest.std() > bound / 3
    narrow = init_tensor("dirac", (4, 8, 3, 3))  # fewer outputs than inputs: the first 4 pass through
    assert torch.allclose(nn.functional.conv2d(x, narrow, padding=1), x[:, :4], atol=1e-6)
    assert torch.equal(init_tensor("dirac", (6, 4))[:4], torch.eye(4))  # a linear weight: identity rows


def test_dirac_yaml_is_airbenchs_init():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=True), nn.Flatten(), nn.Linear(8 * 16, 10))
    linear_before = model[2].weight.detach().clone()
    record = apply_init_config(model, OmegaConf.load(CONFIG_DIR / "dirac.yaml"))
    assert record.by_name()["0.weight"].scheme == "dirac"
    assert torch.equal(model[0].bias, torch.zeros(8))
    assert torch.equal(model[2].weight, linear_before)  # linears keep PyTorch's own init
    x = torch.randn(1, 3, 4, 4)
    assert torch.allclose(model[0](x)[:, :3], x, atol=1e-6)


def test_pytorch_default_is_no_scheme_not_a_registered_one():
    assert "pytorch_default" not in INITS
    assert resolve_init("pytorch_default") is None and resolve_init(None) is None
    assert resolve_init({"scheme": "pytorch_default"}) is None
    with pytest.raises(ConfigError, match=r"^init: pytorch_default .* takes no arguments; got 'std'"):
        resolve_init({"scheme": "pytorch_default", "std": 0.1})


def test_every_registered_scheme_is_tested_and_has_a_config():
    assert set(INITS.names()) == {
        "normal", "trunc_normal", "kaiming_normal", "kaiming_uniform",
        "xavier_normal", "xavier_uniform", "orthogonal", "constant", "dirac",
    }
    # constant is for per-type overrides (e.g. a zero-init classifier), not a whole-model choice;
    # pretrained.yaml is a scheme plus a checkpoint to copy matching weights from (tests/test_weights.py);
    # pytorch_default.yaml is no scheme: every layer keeps PyTorch's own init.
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == set(INITS.names()) - {"constant"} | {"pretrained", "pytorch_default"}


def test_resolve_records_defaults_and_aliases():
    spec = resolve_init({"scheme": "he_normal", "mode": "fan_out"})
    assert spec.scheme == "kaiming_normal"
    assert spec.args == {"mode": "fan_out", "nonlinearity": "relu", "a": 0.0}


# ---------------------------------------------------------------------------------------------
# apply_init's rules
# ---------------------------------------------------------------------------------------------
def test_pytorch_default_leaves_everything_bit_identical():
    model = small_model()
    perturb(model)  # BatchNorm included: "hands off" must not reset it either
    before = snapshot(model)
    record = apply_init(model)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    by_name = record.by_name()
    assert by_name["0.weight"].scheme == "pytorch_default"
    assert by_name["1.weight"].scheme == "unchanged"


def test_pytorch_default_with_one_override():
    model = small_model()
    perturb(model)
    before = snapshot(model)
    record = apply_init(model, "pytorch_default", linear={"scheme": "normal", "std": 0.01})
    assert torch.equal(model[0].weight, before["0.weight"]) and torch.equal(model[0].bias, before["0.bias"])
    assert torch.equal(model[4].bias, torch.zeros(10))
    assert torch.equal(model[1].weight, torch.ones(8))  # something was initialised, so norms reset
    assert [e.scheme for e in record] == ["pytorch_default"] * 2 + ["constant"] * 2 + ["normal", "constant"]


def test_biases_become_the_constant_or_are_left():
    model = small_model()
    perturb(model)
    apply_init(model, "kaiming_normal", bias=0.1)
    assert torch.equal(model[0].bias, torch.full((8,), 0.1))
    assert torch.equal(model[4].bias, torch.full((10,), 0.1))

    perturb(model)
    before = snapshot(model)
    record = apply_init(model, "kaiming_normal", bias=None)
    assert torch.equal(model[0].bias, before["0.bias"]) and torch.equal(model[4].bias, before["4.bias"])
    assert record.by_name()["0.bias"].scheme == "unchanged"


def test_norm_layers_reset_after_perturbation():
    model = small_model()
    perturb(model)
    apply_init(model, "xavier_uniform")
    assert torch.equal(model[1].weight, torch.ones(8)) and torch.equal(model[1].bias, torch.zeros(8))

    perturb(model)
    before = snapshot(model)
    apply_init(model, "xavier_uniform", norm=False)
    assert torch.equal(model[1].weight, before["1.weight"]) and torch.equal(model[1].bias, before["1.bias"])


def test_other_norm_types_reset():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.InstanceNorm2d(8, affine=True), nn.LayerNorm(8),
        nn.InstanceNorm2d(8),  # affine=False: no parameters, must not crash
    )
    perturb(model)
    apply_init(model, "normal")
    for layer in model[1:4]:
        assert torch.equal(layer.weight, torch.ones(8)) and torch.equal(layer.bias, torch.zeros(8))


def test_conv_and_linear_schemes_go_to_the_right_layers():
    model = nn.Sequential(
        nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64), nn.ReLU(), nn.Flatten(), nn.Linear(1024, 1024)
    )
    record = apply_init(
        model, "xavier_normal",
        conv={"scheme": "kaiming_normal", "mode": "fan_out"},
        linear={"scheme": "normal", "std": 0.01},
    )
    assert rel(model[0].weight.std().item(), math.sqrt(2.0 / (64 * 9))) < 0.03
    assert rel(model[4].weight.std().item(), 0.01) < 0.05
    by_name = record.by_name()
    assert (by_name["0.weight"].scheme, by_name["0.weight"].args["mode"]) == ("kaiming_normal", "fan_out")
    assert (by_name["4.weight"].scheme, by_name["4.weight"].args) == ("normal", {"mean": 0.0, "std": 0.01})

    # Only `conv` overridden: the linear layer gets the main scheme.
    record = apply_init(model, "orthogonal", conv="kaiming_uniform")
    assert record.by_name()["4.weight"].scheme == "orthogonal"
    assert torch.allclose(model[4].weight @ model[4].weight.T, torch.eye(1024), atol=1e-3)


def test_transposed_and_1d_convs_count_as_conv():
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ConvTranspose2d(4, 4, 2))
    record = apply_init(model, "pytorch_default", conv="constant")
    assert all(e.scheme == "constant" for e in record)
    assert all(torch.equal(p, torch.zeros_like(p)) for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# the record
# ---------------------------------------------------------------------------------------------
class WithCustomParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = small_model()
        self.scale = nn.Parameter(torch.full((1,), 3.0))


def test_record_names_every_parameter_with_true_stats(tmp_path):
    model = WithCustomParam()
    record = apply_init(model, {"scheme": "kaiming_normal", "mode": "fan_out"})
    assert isinstance(record, InitRecord)
    params = dict(model.named_parameters())
    assert [e.name for e in record] == list(params)
    for entry in record:
        p = params[entry.name].detach().double()
        assert entry.shape == tuple(p.shape) and entry.numel == p.numel()
        assert entry.mean == pytest.approx(p.mean().item(), abs=1e-9)
        assert entry.std == pytest.approx(p.std(correction=0).item(), abs=1e-9)
    by_name = record.by_name()
    assert by_name["body.0.weight"].layer_type == "Conv2d"
    assert by_name["body.1.weight"].layer_type == "BatchNorm2d"
    assert by_name["body.4.weight"].layer_type == "Linear"
    assert by_name["body.0.weight"].args == {"mode": "fan_out", "nonlinearity": "relu", "a": 0.0}
    assert (by_name["scale"].scheme, by_name["scale"].std, by_name["scale"].mean) == ("unchanged", 0.0, 3.0)

    rows = {row["name"]: row for row in record.as_rows()}
    conv_row = rows["body.0.weight"]
    assert conv_row["shape"] == "8x3x3x3" and conv_row["args"] == "mode=fan_out nonlinearity=relu a=0.0"
    path = tmp_path / "logs" / "init.csv"
    record.to_csv(path)
    with open(path) as handle:
        read = list(csv.DictReader(handle))
    assert [r["name"] for r in read] == list(params)
    assert float(read[1]["std"]) == pytest.approx(conv_row["std"])

    table = str(record).splitlines()
    assert len(table) == len(params) + 1 and table[0].startswith("name")
    assert table[1].split()[:2] == ["scale", "WithCustomParam"]
    assert table[2].split()[:4] == ["body.0.weight", "Conv2d", "8x3x3x3", "kaiming_normal"]

    assert record.config == {
        "scheme": "kaiming_normal",
        "args": {"mode": "fan_out", "nonlinearity": "relu", "a": 0.0},
        "conv": None, "linear": None, "bias": 0.0, "norm": True,
    }


def test_shared_parameters_recorded_once():
    conv = nn.Conv2d(3, 3, 1)
    model = nn.Sequential(conv, conv)
    record = apply_init(model, "normal")
    assert [e.name for e in record] == [name for name, _ in model.named_parameters()]


# ---------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------
def test_unknown_scheme_names_key_and_suggests():
    model = small_model()
    before = snapshot(model)
    with pytest.raises(ConfigError, match=r"^init\.conv: Unknown init scheme 'kaimng_normal'\. Did you mean 'kaiming_normal'"):
        apply_init(model, "normal", conv="kaimng_normal")
    # Resolved before anything is touched.
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    with pytest.raises(ConfigError, match=r"^init: Unknown init scheme 'xavier_unifrom'.*'xavier_uniform'"):
        apply_init(model, "xavier_unifrom")


def test_bad_argument_names_key_and_suggests():
    with pytest.raises(ConfigError, match=r"^init\.linear: init scheme 'normal' got an unknown argument 'sdt'\. Did you mean 'std'\?"):
        apply_init(small_model(), "kaiming_normal", linear={"scheme": "normal", "sdt": 0.01})
    with pytest.raises(ConfigError, match=r"^init: .*mode must be one of fan_in, fan_out; got 'fan_inn'\. Did you mean 'fan_in'"):
        apply_init(small_model(), {"scheme": "kaiming_normal", "mode": "fan_inn"})
    with pytest.raises(ConfigError, match=r"nonlinearity .* got 'rleu'\. Did you mean 'relu'"):
        apply_init(small_model(), {"scheme": "kaiming_uniform", "nonlinearity": "rleu"})
    with pytest.raises(ConfigError, match=r"^init\.conv: .*no 'scheme' key"):
        apply_init(small_model(), conv={"mode": "fan_out"})
    with pytest.raises(ConfigError, match=r"a < b"):
        resolve_init({"scheme": "trunc_normal", "a": 1.0, "b": -1.0})
    with pytest.raises(ConfigError, match=r"^init\.bias: "):
        apply_init(small_model(), "normal", bias="zero")


def test_flat_config_typo_suggests_apply_init_options():
    with pytest.raises(ConfigError, match=r"^init: init scheme 'normal' got an unknown argument 'lienar'\. Did you mean 'linear'\?"):
        apply_init_config(small_model(), {"scheme": "normal", "std": 0.01, "lienar": "kaiming_normal"})


# ---------------------------------------------------------------------------------------------
# configs/init/*.yaml
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(set(CONFIG_DIR.glob("*.yaml")) - {CONFIG_DIR / "pretrained.yaml"}),
                         ids=lambda p: p.stem)
def test_every_yaml_applies(path):
    cfg = OmegaConf.load(path)
    assert cfg.scheme == path.stem and "_target_" not in cfg
    record = apply_init_config(small_model(), cfg)  # a DictConfig, as Hydra hands it over
    assert record.config["scheme"] == path.stem
    assert {k: v for k, v in record.config["args"].items()} == {
        k: v for k, v in OmegaConf.to_container(cfg).items() if k not in ("scheme", "conv", "linear", "bias", "norm")
    }


def test_kaiming_yaml_is_the_torchvision_convention():
    record = apply_init_config(small_model(), OmegaConf.load(CONFIG_DIR / "kaiming_normal.yaml"))
    assert record.config["args"] == {"mode": "fan_out", "nonlinearity": "relu", "a": 0.0}


def test_hydra_cli_overrides():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR.parent), version_base=None):
        cfg = compose(overrides=["+init=normal", "init.std=0.02", "init.conv={scheme:kaiming_normal,mode:fan_out}"])
    model = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Flatten(), nn.Linear(1024, 1024))
    record = apply_init_config(model, cfg.init)
    assert record.config["args"] == {"mean": 0.0, "std": 0.02}
    assert record.config["conv"] == {"scheme": "kaiming_normal", "args": {"mode": "fan_out", "nonlinearity": "relu", "a": 0.0}}
    assert rel(model[2].weight.std().item(), 0.02) < 0.05


def test_data_init_loads_images_only_when_a_module_needs_them():
    from convzoo.weight_init import apply_data_init

    calls = []

    def images():
        calls.append(1)
        return torch.randn(64, 3, 8, 8)

    assert apply_data_init(nn.Sequential(nn.Conv2d(3, 4, 3)), images) == [] and calls == []
    from convzoo.blocks.whitening import WhiteningConv

    assert apply_data_init(nn.Sequential(WhiteningConv(3)), images) == ["0"] and calls == [1]
    model = nn.Sequential(WhiteningConv(3))
    record = apply_init(model, "kaiming_normal")
    apply_data_init(model, images, record)
    assert record.by_name()["0.conv.weight"].scheme == "whitening" and record.config["data_init"] == ["0"]
