"""Export to ONNX / torch.export / TorchScript: every shipped config and example, parity, metadata, CLI."""

import sys
from pathlib import Path

import pytest
import torch
from torch.optim.swa_utils import update_bn

from convzoo import ConfigError, build_model
from convzoo.__main__ import main
from convzoo.config import compose, config_dir
from convzoo.deploy import deploy_info, load_checkpoint
from convzoo.deploy.export import (
    CHECK_BATCH,
    EXAMPLE_BATCH,
    EXPORT_FORMATS,
    check_parity,
    export_model,
    read_metadata,
)
from convzoo.weight_init import apply_data_init

REPO = Path(__file__).resolve().parent.parent
MODEL_CONFIGS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
# Smaller copies of the shipped configs export in a few seconds: a quarter of the width, one copy
# of every repeated layer. Every block kind and every wire of the config is still there.
SMALL = ["++model.width_multiplier=0.25", "++model.depth_multiplier=0.01"]


def small_config_model(name: str, *overrides: str):
    try:
        return build_model(compose([f"model={name}", *SMALL, *overrides]).model)
    except ConfigError:  # a config whose arguments do not survive the reduction (groups, say): as shipped
        return build_model(compose([f"model={name}", *overrides]).model)


def as_after_training(net):
    """What training leaves that a fresh network lacks: fitted data-dependent layers (whitening)
    and batch-norm statistics of data (torch's update_bn), so that the parity check sees them."""
    images = torch.randn(16, net.in_channels, *net.input_size, generator=torch.Generator().manual_seed(0)) * 2 + 0.5
    apply_data_init(net, images)
    update_bn([images], net)
    return net.eval()


def export_all_formats(net, tmp_path):
    info = deploy_info(net, classes=[f"c{i}" for i in range(net.num_classes or 0)])
    figures = {}
    for fmt, suffix in EXPORT_FORMATS.items():
        path = export_model(net, tmp_path / f"net{suffix}", fmt, info)
        parity = check_parity(net, path, fmt)  # every output, in order, of a batch size the exporter never saw
        assert parity.ok and parity.batch != EXAMPLE_BATCH, f"{fmt}: {parity}"
        assert check_parity(net, path, fmt, batch=1).ok  # one image at a time, as predict feeds it
        assert read_metadata(path) == info
        figures[fmt] = parity.max_abs_diff / parity.scale
    return figures


@pytest.mark.parametrize("name", MODEL_CONFIGS)
@pytest.mark.slow
def test_every_shipped_config_exports_with_parity(name, tmp_path):
    export_all_formats(as_after_training(small_config_model(name)), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_graph_example_exports_with_parity(path, tmp_path):
    net = as_after_training(build_model(path))
    figures = export_all_formats(net, tmp_path)
    assert figures["export"] <= 1e-6 and figures["torchscript"] <= 1e-6  # eager's own kernels: bit-identical here


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.slow
def test_even_kernel_same_padding_exports(tmp_path):
    # kernel 4 at stride 1: torch pads 1 before and 2 after, which the legacy ONNX exporter rejects
    net = small_config_model("convmixer_tiny", "model.kernel_size=4")
    assert net.layers.mixer.depthwise.block.conv.padding == "same"
    export_all_formats(as_after_training(net), tmp_path)


@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
@pytest.mark.slow
def test_parity_fails_when_the_artifact_differs(fmt, tmp_path):
    net = as_after_training(small_config_model("conv_norm_act"))
    path = export_model(net, tmp_path / f"net{EXPORT_FORMATS[fmt]}", fmt, deploy_info(net))
    norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():
        norm.running_mean += 0.05  # one layer's statistics, after export
    parity = check_parity(net, path, fmt)
    assert not parity.ok and parity.max_abs_diff > 10 * parity.tolerance
    assert "MISMATCH" in str(parity) and f"batch of {CHECK_BATCH}" in str(parity)


@pytest.mark.parametrize("fmt", ["onnx", "export"])
@pytest.mark.slow
def test_parity_reports_an_artifact_of_another_network(fmt, tmp_path):
    spec = {"layers": [{"block": "conv_norm_act", "out_channels": 4}, {"block": "classifier"}]}
    grey = build_model({**spec, "in_channels": 1, "num_classes": 10})
    path = export_model(grey, tmp_path / f"grey{EXPORT_FORMATS[fmt]}", fmt, deploy_info(grey, mean=[0.5], std=[0.2]))
    parity = check_parity(build_model({**spec, "num_classes": 10}), path, fmt)  # an RGB batch
    assert not parity.ok and "failed to run it" in str(parity) and parity.error
    other_classes = build_model({**spec, "in_channels": 1, "num_classes": 7})
    assert check_parity(other_classes, path, fmt).diffs == {other_classes.outputs[0]: float("inf")}


def test_metadata_of_a_file_convzoo_did_not_write(tmp_path):
    net = build_model({"layers": [{"block": "classifier", "num_classes": 2}]})
    torch.export.save(torch.export.export(net, (torch.randn(2, 3, 32, 32),)), tmp_path / "plain.pt2")
    with pytest.raises(ValueError, match="carries no convzoo.json"):
        read_metadata(tmp_path / "plain.pt2")


@pytest.mark.slow
def test_export_leaves_the_network_as_it_was(tmp_path):
    net = build_model(REPO / "examples" / "resnet_stage.yaml").train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    export_model(net, tmp_path / "net.pt2", "export", deploy_info(net))
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ---------------------------------------------------------------------------------------------
# python -m convzoo export
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(EXPORT_FORMATS))
@pytest.mark.slow
def test_cli_exports_a_checkpoint_and_checks_it(fmt, trained_checkpoint, tmp_path, capsys):
    out = tmp_path / f"model{EXPORT_FORMATS[fmt]}"
    assert main(["export", str(trained_checkpoint), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"to {out} ({fmt}" in printed and "input (batch, 3, 32, 32) float32" in printed
    assert "class_0" in printed and ": ok" in printed  # the class names the (synthetic) run recorded
    net, info = load_checkpoint(trained_checkpoint)
    assert read_metadata(out) == info
    assert check_parity(net, out, fmt).ok


@pytest.mark.slow
def test_cli_exports_a_spec_file_and_a_config_next_to_the_cwd(tmp_path, monkeypatch, capsys):
    unet = str(REPO / "configs" / "model" / "unet.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["export", unet, "width=8", "--format", "export"]) == 0
    assert (tmp_path / "unet.pt2").is_file()
    assert read_metadata(tmp_path / "unet.pt2").classes == ("class_0", "class_1")
    assert "(mean, std, classes not recorded: defaults used)" in capsys.readouterr().out
    assert main(["export", "model=plain", "data=synthetic", "data.num_classes=10", "--format", "torchscript"]) == 0
    assert read_metadata(tmp_path / "plain.pt").classes[:2] == ("class_0", "class_1")  # the data module's names


@pytest.mark.slow
def test_cli_exit_status_on_a_mismatch(trained_checkpoint, tmp_path, monkeypatch, capsys):
    def corrupting_export(net, path, fmt, info):
        written = export_model(net, path, fmt, info)
        with torch.no_grad():
            net.layers.head.fc.weight.mul_(1.01)  # the artifact no longer matches the network
        return written

    monkeypatch.setattr("convzoo.deploy.export.export_model", corrupting_export)
    assert main(["export", str(trained_checkpoint), "--format", "export", "--out", str(tmp_path / "m.pt2")]) == 1
    captured = capsys.readouterr()
    assert "MISMATCH" in captured.out and "do not ship" in captured.err


def test_cli_names_the_extra_to_install_without_onnx(trained_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    assert main(["export", str(trained_checkpoint), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'convzoo[export]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("arguments,message", [
    (["missing.ckpt"], "checkpoint 'missing.ckpt' does not exist"),
    (["model=convmixr"], "convmixr"),
    (["examples/nothing.yaml"], "does not exist"),
    (["run/best.ckpt", "model.dim=8"], "a checkpoint is exported as trained; drop 'model.dim=8'"),
])
def test_cli_usage_errors(arguments, message, capsys):
    assert main(["export", *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
