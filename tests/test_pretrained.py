"""The shipped zoo weights: files checked by sha256, never unpickled, found by name and tag, refused in one
line when altered or asked for the wrong network, reaching their recorded accuracy on real test images, and
usable through torch.hub and ``init=pretrained`` offline."""

import json
import runpy
import shutil
from pathlib import Path

import pytest
import torch

from convzoo import ConfigError, create_model, list_pretrained
from convzoo.errors import CheckpointError
from convzoo.network import pretrained
from convzoo.network.pretrained import find_pretrained, pretrained_file, sha256

REPO = Path(__file__).resolve().parent.parent
SHIPPED = list_pretrained()


def test_weights_ship_with_a_manifest_entry_each():
    assert SHIPPED, "convzoo/pretrained/manifest.json lists no weights"
    for entry in SHIPPED:
        assert {"name", "model", "overrides", "tag", "sha256", "dtype", "classes", "mean", "std", "test_acc",
                "recipe_test_acc", "command", "train_wall_s", "machine", "date", "size_bytes"} <= set(entry)
    assert len({(e["name"], e["tag"]) for e in SHIPPED}) == len(SHIPPED)
    shipped = sum(e["size_bytes"] for e in SHIPPED if e.get("file"))
    assert shipped <= 25e6  # what the package may carry


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e["name"])
def test_each_shipped_file_has_its_manifest_sha256_and_size(entry):
    path = pretrained.WEIGHTS_DIR / entry["file"]
    assert sha256(path) == entry["sha256"] and path.stat().st_size == entry["size_bytes"]


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e["name"])
def test_loading_by_name_never_unpickles(entry, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load (a pickle reader) was called")

    monkeypatch.setattr(torch, "load", refuse)
    net = create_model(entry["model"], pretrained=entry["tag"], **entry["overrides"])
    assert not net.training and net.num_classes == len(entry["classes"])


@pytest.fixture
def copied_weights(tmp_path, monkeypatch):
    """The shipped folder copied, and convzoo pointed at the copy (so a test may alter it)."""
    folder = tmp_path / "pretrained"
    shutil.copytree(pretrained.WEIGHTS_DIR, folder)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    return folder


def test_an_altered_file_is_refused_in_one_line(copied_weights):
    entry = SHIPPED[0]
    path = copied_weights / entry["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"the file was altered or truncated") as caught:
        create_model(entry["model"], pretrained=entry["tag"], **entry["overrides"])
    assert "\n" not in str(caught.value) and entry["name"] in str(caught.value)


def test_a_missing_file_says_to_reinstall(copied_weights):
    entry = SHIPPED[0]
    (copied_weights / entry["file"]).unlink()
    with pytest.raises(CheckpointError, match="missing from the installed package; reinstall convzoo"):
        pretrained_file(entry)


def _with_url_entry(folder: Path, url: str, digest: str) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = {**manifest["weights"][0], "name": "remote", "tag": "remote", "url": url, "sha256": digest}
    entry.pop("file")
    manifest["weights"].append(entry)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return entry


def test_a_url_entry_is_downloaded_once_into_the_hub_cache_and_checked(copied_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    source = copied_weights / SHIPPED[0]["file"]
    entry = _with_url_entry(copied_weights, source.as_uri(), sha256(source))
    path = pretrained_file(entry)
    assert path == tmp_path / "hub" / "checkpoints" / source.name and sha256(path) == entry["sha256"]
    source.unlink()  # the second call reads the cache, not the URL
    assert pretrained_file(entry) == path


def test_no_network_is_one_clear_line(copied_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    entry = _with_url_entry(copied_weights, "http://127.0.0.1:9/weights.safetensors", "0" * 64)
    with pytest.raises(CheckpointError, match=r"cannot download .*; connect to the network once, or copy the file to"):
        pretrained_file(entry)


def test_a_wrong_tag_or_other_overrides_name_the_available_weights():
    entry = SHIPPED[0]
    with pytest.raises(ConfigError, match=rf"no weights tagged 'imagenet'.*Its weights: '{entry['tag']}'"):
        create_model(entry["model"], pretrained="imagenet", **entry["overrides"])
    with pytest.raises(ConfigError, match=r"with .*num_classes=100 has no weights tagged .*its weights: "):
        create_model(entry["model"], pretrained=entry["tag"], **{**entry["overrides"], "num_classes": 100})
    assert "\n" not in str(pytest.raises(ConfigError, find_pretrained, entry["model"], "cifar1O").value)


def test_list_pretrained_hands_out_copies():
    first = list_pretrained()
    first[0]["overrides"]["depth"] = -1
    assert list_pretrained() == SHIPPED


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e["name"])
def test_evaluate_finds_each_weight_set_by_its_overrides_on_the_command_line(entry):
    """``python -m convzoo evaluate wrn:depth=40,widen=1,dropout=0.0``: values are parsed as Hydra does
    (0.0 and 0.5 are floats), so the overrides match the manifest's."""
    from convzoo.deploy.evaluate import load_for_evaluation

    source = ":".join([entry["model"], ",".join(f"{key}={value}" for key, value in entry["overrides"].items())])
    net, _ = load_for_evaluation(source, entry["tag"])
    direct = create_model(entry["model"], pretrained=entry["tag"], **entry["overrides"])
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), direct.state_dict().values()))


@pytest.mark.cifar10
@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: e["name"])
def test_each_shipped_network_reaches_its_recorded_accuracy_on_real_test_images(entry, cifar10_root):
    from convzoo.data.cifar10 import load_cifar10
    from convzoo.deploy.evaluate import evaluate

    data = load_cifar10(cifar10_root)
    net = create_model(entry["model"], pretrained=entry["tag"], **entry["overrides"])
    result = evaluate(net, data.test_images[:2000], data.test_labels[:2000], entry["mean"], entry["std"], data.classes)
    assert result.top1 >= entry["test_acc"] - 0.02


@pytest.mark.slow
def test_torch_hub_loads_the_weights_offline_from_a_checkout(monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-hub-dir")  # nothing may come from the cache
    hub = torch.hub.load(str(REPO), "resnet20", pretrained=True, source="local")
    direct = create_model("resnet_cifar", depth=20, pretrained="cifar10")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(hub(x), direct(x))
    wider = torch.hub.load(str(REPO), "resnet20", pretrained=True, source="local", num_classes=100)
    assert wider.num_classes == 100 and torch.equal(wider.layers.stem.conv.weight, direct.layers.stem.conv.weight)


def test_every_weight_set_is_a_torch_hub_entry():
    hubconf = runpy.run_path(str(REPO / "hubconf.py"))
    entries = [name for name, value in hubconf.items() if callable(value) and not name.startswith("_")]  # as torch.hub.list
    assert sorted(entry["name"] for entry in list_pretrained()) == sorted(entries)


@pytest.mark.slow
def test_init_pretrained_starts_a_run_from_shipped_weights_with_a_new_head(tmp_path):
    import csv

    from omegaconf import open_dict

    from convzoo.config import compose
    from convzoo.training import train

    cfg = compose(["model=resnet_cifar", "init=pretrained", "init.weights=resnet20", "data=synthetic",
                   "data.num_classes=100", "data.num_train=256", "data.num_test=64", "data.val_size=64",
                   "data.batch_size=64", "trainer.max_epochs=1", "test=false", "+trainer.limit_train_batches=1"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    train(cfg)
    with open(tmp_path / "init.csv", newline="") as handle:
        schemes = {row["name"]: row["scheme"] for row in csv.DictReader(handle)}
    assert schemes["layers.stem.conv.weight"] == "pretrained"
    assert schemes["layers.head.fc.weight"] != "pretrained"  # 100 classes: the head is new


def test_init_pretrained_refuses_an_unknown_weight_set_and_another_architecture():
    from omegaconf import open_dict

    from convzoo.config import compose
    from convzoo.training.config_checks import check_config

    cfg = compose(["init=pretrained", "init.weights=resnet2O"])
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    with pytest.raises(ConfigError, match=r"init.weights=resnet2O: no shipped weight set has that name\. Did you mean 'resnet20'"):
        check_config(cfg)
    from convzoo.weight_init import apply_init

    with pytest.raises(ConfigError, match="were trained for another architecture"):
        apply_init(create_model("resnet_cifar", depth=32), weights="resnet20")
