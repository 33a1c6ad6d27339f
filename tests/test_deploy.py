"""What a trained network needs to be used elsewhere: checkpoints rebuilt without Lightning, metadata."""

from pathlib import Path

import pytest
import torch

from convzoo import ConfigError, build_model
from convzoo.data import CIFAR10_CLASSES, CIFAR10_MEAN
from convzoo.deploy import DeployInfo, deploy_info, load_checkpoint
from convzoo.training.module import load_model

DATA = Path(__file__).resolve().parent / "data"
SPEC = {"layers": [{"block": "conv_norm_act", "out_channels": 4}, {"block": "classifier"}]}


@pytest.mark.slow
def test_a_checkpoint_loads_as_lightning_loads_it(trained_checkpoint):
    net, info = load_checkpoint(trained_checkpoint)
    reference = load_model(trained_checkpoint).to(memory_format=torch.contiguous_format)  # Lightning's is channels-last
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not net.training and torch.equal(net(x), reference(x))
    assert info.name == "airbench" and info.input_size == (32, 32) and info.outputs == ("head",)
    # the run recorded its data's statistics and class names (synthetic data: CIFAR-10's statistics, class_<i>)
    assert info.mean == CIFAR10_MEAN and info.classes == tuple(f"class_{i}" for i in range(10)) and info.assumed == ()


def test_recorded_classes_and_statistics_are_read(trained_checkpoint, tmp_path):
    checkpoint = torch.load(trained_checkpoint, weights_only=True)
    classes = [f"kind {i}" for i in range(10)]
    checkpoint["hyper_parameters"].update(classes=classes, input_mean=[0.5, 0.4, 0.3], input_std=[0.2, 0.2, 0.2])
    torch.save(checkpoint, tmp_path / "recorded.ckpt")
    _, info = load_checkpoint(tmp_path / "recorded.ckpt")
    assert info.classes == tuple(classes) and info.mean == (0.5, 0.4, 0.3) and info.std == (0.2,) * 3
    assert info.assumed == ()
    checkpoint["hyper_parameters"]["classes"] = classes[:3]
    torch.save(checkpoint, tmp_path / "wrong.ckpt")
    with pytest.raises(ConfigError, match="3 class names recorded for a network with num_classes=10"):
        load_checkpoint(tmp_path / "wrong.ckpt")


def test_a_convzoo_0_1_checkpoint_loads_with_identical_outputs():
    net, info = load_checkpoint(DATA / "legacy-v0.1.0.ckpt")
    saved = torch.load(DATA / "legacy-v0.1.0-io.pt")
    net = net.to(memory_format=torch.channels_last)  # the layout the saved output was computed in
    with torch.no_grad():
        # equal up to float32 roundoff: another thread count sums the convs in another order
        torch.testing.assert_close(net(saved["input"]), saved["output"], rtol=1e-5, atol=1e-6)
    assert info.classes == CIFAR10_CLASSES


def test_files_that_are_not_convzoo_checkpoints(tmp_path):
    torch.save(build_model({**SPEC, "num_classes": 10}).state_dict(), tmp_path / "weights.ckpt")
    with pytest.raises(ConfigError, match="not a convzoo checkpoint.*convzoo.load_weights"):
        load_checkpoint(tmp_path / "weights.ckpt")
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_defaults_and_their_limits():
    assert deploy_info(build_model({**SPEC, "num_classes": 3})).classes == ("class_0", "class_1", "class_2")
    assert deploy_info(build_model({"layers": SPEC["layers"][:1]})).classes == ()  # features, no classes
    grey = build_model({**SPEC, "in_channels": 1, "num_classes": 10})
    with pytest.raises(ConfigError, match="no normalisation statistics recorded for this 1-channel network"):
        deploy_info(grey)
    with pytest.raises(ConfigError, match="does not fit a 1-channel input"):
        deploy_info(grey, mean=CIFAR10_MEAN, std=CIFAR10_MEAN)
    assert deploy_info(grey, mean=[0.5], std=[0.25]).assumed == ("classes",)


def test_the_record_round_trips_through_json():
    info = deploy_info(build_model({**SPEC, "num_classes": 10}))
    assert DeployInfo.from_dict({**info.to_dict(), "producer": "another tool"}) == info
    with pytest.raises(ValueError, match="no convzoo deployment record: classes, in_channels"):
        DeployInfo.from_dict({key: value for key, value in info.to_dict().items() if key not in ("classes", "in_channels")})
