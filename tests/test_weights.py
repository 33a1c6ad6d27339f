"""Weight transfer: load_weights from checkpoints and state dicts, and init=pretrained in a run."""

import csv
import logging

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from convzoo import ConfigError, build_model, load_weights
from convzoo.config import compose, config_dir
from convzoo.training import train
from convzoo.weight_init import PRETRAINED, apply_data_init, apply_init_config

SPEC = {"in_channels": 3, "block_defaults": {"act": "relu"}, "layers": [
    {"name": "stem", "block": "conv_norm_act", "out_channels": 8},
    {"name": "stage", "block": "conv_norm_act", "out_channels": 16, "stride": 2},
    {"name": "head", "block": "classifier"},
]}


def net(num_classes: int = 10, seed: int = 0):
    torch.manual_seed(seed)
    return build_model({**SPEC, "num_classes": num_classes})


def perturbed(model):
    """Batch-norm statistics away from their initial values, so that copying them shows."""
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    return model


def test_a_new_head_is_skipped_and_everything_else_copied():
    source, target = perturbed(net(10, seed=0)), net(100, seed=1)
    head_before = target.layers.head.fc.weight.clone()
    report = load_weights(target, source.state_dict())
    assert set(report.skipped) == {"layers.head.fc.weight", "layers.head.fc.bias"}
    assert report.skipped["layers.head.fc.weight"] == ((10, 16), (100, 16))
    assert report.missing == [] and report.unexpected == [] and report.prefix == ""
    assert set(report.transferred) == set(source.state_dict()) - set(report.skipped)
    for name in report.transferred:  # parameters and buffers (running statistics) alike
        assert torch.equal(target.state_dict()[name], source.state_dict()[name]), name
    assert torch.equal(target.layers.head.fc.weight, head_before)


def test_a_lightning_checkpoint_file_strips_the_module_prefix(trained_checkpoint):
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    spec = checkpoint["hyper_parameters"]["model"]
    target = build_model(spec)
    report = load_weights(target, trained_checkpoint, strict=True)
    assert report.prefix == "model." and not (report.missing or report.unexpected or report.skipped)
    assert str(trained_checkpoint) in report.source and "Lightning checkpoint" in report.source
    for name, value in target.state_dict().items():
        assert torch.equal(value, checkpoint["state_dict"][f"model.{name}"]), name
    assert report.source_names["layers.whiten.conv.weight"] == "model.layers.whiten.conv.weight"


def test_missing_unexpected_and_the_report(caplog):
    source = net(10).state_dict()
    source["layers.extra.weight"] = torch.zeros(3)
    del source["layers.stage.conv.weight"]
    with caplog.at_level(logging.INFO, logger="convzoo.weights"):
        report = load_weights(net(10, seed=1), source)
    assert report.missing == ["layers.stage.conv.weight"] and report.unexpected == ["layers.extra.weight"]
    text = str(report)
    assert "1 missing, 1 unexpected" in text and "layers.extra.weight" in text
    assert text in caplog.text


def test_strict_names_every_mismatch_and_copies_nothing():
    target = net(100, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ConfigError, match=r"(?s)strict=True.*skipped layers.head.fc.weight: \(10, 16\) in the source, "
                                          r"\(100, 16\) in the network.*strict=False"):
        load_weights(target, perturbed(net(10)).state_dict(), strict=True)
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_modules_and_saved_state_dicts_are_sources(tmp_path):
    source = perturbed(net(10))
    torch.save(source.state_dict(), tmp_path / "weights.pt")
    for given in (source, tmp_path / "weights.pt", str(tmp_path / "weights.pt")):
        target = net(10, seed=1)
        assert not load_weights(target, given, strict=True).missing
        assert torch.equal(target.layers.stem.norm.running_var, source.layers.stem.norm.running_var)


@pytest.mark.parametrize("source,message", [
    ("nowhere.ckpt", "does not exist"),
    ({"epoch": 3}, "with no tensors"),
    (42, "cannot read weights from a int"),
])
def test_unreadable_sources_say_what_to_pass(source, message):
    with pytest.raises(ConfigError, match=message):
        load_weights(net(), source)


def test_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="weights file '.*notes.ckpt' is not a readable PyTorch checkpoint"):
        load_weights(net(), tmp_path / "notes.ckpt")


# ---------------------------------------------------------------------------------------------
# init=pretrained
# ---------------------------------------------------------------------------------------------
def pretrained_config(checkpoint, **overrides):
    cfg = OmegaConf.load(config_dir() / "init" / "pretrained.yaml")
    cfg.checkpoint = str(checkpoint)
    return OmegaConf.merge(cfg, overrides)


def test_pretrained_copies_matching_weights_and_the_scheme_does_the_head(tmp_path):
    torch.save(perturbed(net(10)).state_dict(), tmp_path / "cifar10.pt")
    model = net(100, seed=1)
    record = apply_init_config(model, pretrained_config(tmp_path / "cifar10.pt", linear="normal"))
    entries = record.by_name()
    stem = entries["layers.stem.conv.weight"]
    assert stem.scheme == PRETRAINED and stem.args == {"checkpoint": str(tmp_path / "cifar10.pt"),
                                                       "tensor": "layers.stem.conv.weight"}
    assert entries["layers.head.fc.weight"].scheme == "normal"
    assert entries["layers.head.fc.weight"].std == pytest.approx(0.01, rel=0.1)
    assert entries["layers.head.fc.bias"].scheme == "constant"
    assert record.config["checkpoint"]["skipped"] == {"layers.head.fc.weight": [[10, 16], [100, 16]],
                                                      "layers.head.fc.bias": [[10], [100]]}
    assert torch.equal(model.layers.stem.norm.running_mean, torch.load(tmp_path / "cifar10.pt")["layers.stem.norm.running_mean"])


def test_pretrained_from_an_unrelated_network_is_an_error(tmp_path):
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match=r"init.checkpoint: .*shares no tensor name with this model"):
        apply_init_config(net(), pretrained_config(tmp_path / "other.pt"))
    with pytest.raises(ConfigError, match=r"init.checkpoint: weights file 'missing.ckpt' does not exist"):
        apply_init_config(net(), pretrained_config("missing.ckpt"))


def test_data_init_keeps_a_pretrained_whitening_stem(trained_checkpoint):
    spec = torch.load(trained_checkpoint, weights_only=True)["hyper_parameters"]["model"]
    model = build_model(spec)
    record = apply_init_config(model, pretrained_config(trained_checkpoint))
    fitted = model.layers.whiten.conv.weight.clone()
    assert apply_data_init(model, torch.randn(64, 3, 32, 32), record) == []
    assert torch.equal(model.layers.whiten.conv.weight, fitted)
    assert record.by_name()["layers.whiten.conv.weight"].scheme == PRETRAINED


def test_fine_tune_a_run_with_a_new_number_of_classes(trained_checkpoint, tmp_path):
    cfg = compose(["data=synthetic", "data.num_classes=100", "model=airbench", "model.width_multiplier=0.125",
                   "model.num_classes=100", "init=pretrained", f"init.checkpoint={trained_checkpoint}",
                   "init.linear=xavier_uniform", "debug=fast_dev_run", "data.batch_size=32", "data_init_images=64"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
    with open(tmp_path / "init.csv") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    assert rows["layers.head.fc.weight"]["scheme"] == "xavier_uniform"  # 100 classes: re-initialised
    for name in ("layers.whiten.conv.weight", "layers.group1a.conv.weight", "layers.group3b.norm.bias"):
        assert rows[name]["scheme"] == PRETRAINED, name
        assert f"checkpoint={trained_checkpoint} tensor=model.{name}" == rows[name]["args"]
