"""Training end to end: configs compose, runs train/resume/test, DDP, the run directory's records."""

import json
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from convzoo import create_model
from convzoo.config import compose, config_dir
from convzoo.training.module import ImageClassifier, load_model
from convzoo.training import train
from convzoo.training.config_checks import check_config

pytestmark = pytest.mark.slow  # end-to-end runs: the fast loop is python -m pytest -m "not slow"

REPO = Path(__file__).resolve().parent.parent
GROUP_OPTIONS = {
    group: sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
    for group in ["model", "data", "init", "optimizer", "scheduler", "trainer", "logger", "callbacks", "experiment", "debug"]
}


def run_config(tmp_path: Path, *overrides: str):
    cfg = compose(["data=synthetic", "model=convmixer_tiny", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    return cfg


def run_train_py(tmp_path: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "train.py"), f"hydra.run.dir={tmp_path}", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


@pytest.mark.parametrize("group,option", [(g, o) for g, options in GROUP_OPTIONS.items() for o in options if g != "model"])
def test_every_config_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}"] + ([] if group == "data" else ["data=synthetic"])
    if (group, option) == ("data", "image_folder"):
        overrides.append(f"data.root={tmp_path}")  # required (???); nothing is read before setup()
    if (group, option) == ("init", "pretrained"):
        overrides.append(f"init.checkpoint={REPO / 'tests' / 'data' / 'legacy-v0.1.0.ckpt'}")  # required (???)
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
            cfg.trainer.accelerator = "cpu"  # everything else about a GPU config still instantiates
    check_config(cfg)  # every shipped option passes the checks that train() runs first
    instantiate(cfg.data)
    module = ImageClassifier(model=cfg.model, optimizer=instantiate(cfg.optimizer),
                             scheduler=instantiate(cfg.scheduler), **cfg.module)
    optimizer = module.optimizer_factory(module.model.parameters())
    if cfg.scheduler is not None:
        module.scheduler_factory(optimizer, total_steps=10)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    loggers = [instantiate(c) for c in cfg.logger.values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    assert isinstance(trainer, L.Trainer)


def test_group_options_cover_the_issue():
    assert {"cpu", "gpu", "ddp"} <= set(GROUP_OPTIONS["trainer"])
    assert {"csv", "tensorboard", "mlflow"} <= set(GROUP_OPTIONS["logger"])
    assert {"cifar10", "cifar100", "image_folder", "synthetic"} <= set(GROUP_OPTIONS["data"])
    assert {"fast_dev_run", "overfit_batch"} <= set(GROUP_OPTIONS["debug"])
    assert {"adamw", "sgd"} <= set(GROUP_OPTIONS["optimizer"])
    assert {"onecycle", "cosine", "piecewise_linear"} <= set(GROUP_OPTIONS["scheduler"])
    assert {"convmixer_cifar10", "cpu_fast", "gpu_fast", "airbench94"} <= set(GROUP_OPTIONS["experiment"])


def is_classifier(model: str) -> bool:
    """Whether a model config's one output is class logits (the U-Net's is a map: it is not trained)."""
    with torch.device("meta"):
        return create_model(model).feature_info.reduction() == [None]


CLASSIFIERS = [model for model in GROUP_OPTIONS["model"] if is_classifier(model)]


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_fast_dev_run_every_model(model, tmp_path):
    metrics = train(run_config(tmp_path, f"model={model}", "debug=fast_dev_run", "data.batch_size=32"))
    assert 0.0 <= metrics["test/acc"] <= 1.0 and 0 < metrics["test/loss"] < float("inf")


def test_overfit_one_batch_drives_loss_to_zero(tmp_path):
    metrics = train(run_config(tmp_path, "debug=overfit_batch", "model.dim=64", "model.depth=2"))
    log = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    losses = [float(row.split(",")[header.index("train/loss_epoch")]) for row in log[1:]
              if row.split(",")[header.index("train/loss_epoch")]]
    assert losses[0] > 2.0 and losses[-1] < 0.05, losses
    assert metrics["epochs"] == 60


def test_same_seed_same_metrics(tmp_path):
    first = train(run_config(tmp_path / "a", "trainer.max_epochs=1", "trainer.precision=32-true"))
    second = train(run_config(tmp_path / "b", "trainer.max_epochs=1", "trainer.precision=32-true"))
    assert first["val/loss"] == second["val/loss"] and first["test/loss"] == second["test/loss"]


def test_checkpoint_loads_for_inference_elsewhere(tmp_path):
    train(run_config(tmp_path, "trainer.max_epochs=1", "test=false"))
    net = load_model(tmp_path / "checkpoints" / "best.ckpt")
    assert not net.training and net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_run_directory_holds_the_full_record(tmp_path):
    run_train_py(tmp_path, "data=synthetic", "model=convmixer_tiny", "trainer.max_epochs=2", "init=kaiming_normal",
                 "logger=tensorboard")
    for name in [".hydra/config.yaml", "summary.txt", "summary.csv", "init.csv", "csv/metrics.csv",
                 "csv/hparams.yaml", "curves.png", "metrics.json", "checkpoints/best.ckpt", "checkpoints/last.ckpt"]:
        assert (tmp_path / name).is_file(), name
    assert list((tmp_path / "tensorboard").glob("events.*"))
    hparams = (tmp_path / "csv" / "hparams.yaml").read_text()
    assert "trainable:" in hparams and "scheme: kaiming_normal" in hparams and "receptive_field" in hparams
    init_rows = (tmp_path / "init.csv").read_text().splitlines()
    assert len(init_rows) > 1 and "kaiming_normal" in init_rows[1]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and "test/acc" in metrics


def test_ddp_on_two_cpu_processes(tmp_path):
    result = run_train_py(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "data=synthetic",
                          "model=convmixer_tiny", "model.dim=32", "trainer.max_epochs=1")
    assert "world_size=2" in result.stdout + result.stderr or "MEMBER: 2/2" in result.stdout + result.stderr
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs"] == 1


def test_multirun_sweep_leaves_one_directory_per_job(tmp_path):
    command = [sys.executable, str(REPO / "train.py"), "-m", "model=plain,convmixer_tiny", "data=synthetic",
               "debug=fast_dev_run", f"hydra.sweep.dir={tmp_path}"]
    subprocess.run(command, check=True, capture_output=True, cwd=tmp_path, timeout=600)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]




def test_missing_data_gives_one_clear_message(tmp_path):
    result = run_train_py(tmp_path, f"data.root={tmp_path / 'nowhere'}", "model=convmixer_tiny", check=False)
    assert result.returncode == 2
    assert str(tmp_path / "nowhere") in result.stderr and "data.download=true" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_data_is_reported_as_such(tmp_path, cifar10_root):
    broken = tmp_path / "broken" / "cifar-10-batches-py"
    broken.mkdir(parents=True)
    source = Path(cifar10_root) / "cifar-10-batches-py"
    for item in source.iterdir():
        (broken / item.name).symlink_to(item)
    (broken / "data_batch_3").unlink()
    (broken / "data_batch_3").write_bytes((source / "data_batch_3").read_bytes()[:1000])
    result = run_train_py(tmp_path, f"data.root={broken.parent}", "model=convmixer_tiny", check=False)
    assert result.returncode == 2 and "data_batch_3" in result.stderr and "corrupt" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.cifar10
def test_one_epoch_on_real_cifar10_subset(tmp_path, cifar10_root):
    cfg = compose(["model=convmixer_tiny", f"data.root={cifar10_root}", "data.subset=4096", "data.batch_size=128",
                   "data.test_subset=1000", "data.val_size=1000", "trainer.max_epochs=1", "optimizer.lr=0.01"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.2  # well above chance (0.1) after one small epoch


def test_gpu_fast_preset_runs_on_cpu(tmp_path):
    cfg = compose(["experiment=gpu_fast", "trainer=cpu", "compile=false", "data=synthetic", "trainer.max_epochs=1",
                   "data.batch_size=64", "data.eval_batch_size=64", "data.val_size=128", "model.width_multiplier=0.25"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    metrics = train(cfg)
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test/acc"] <= 1.0


def test_airbench94_preset_runs_its_whole_recipe_on_synthetic_data(tmp_path):
    published = compose(["experiment=airbench94"])
    assert published.model.width_multiplier == 1.0 and published.init.scheme == "dirac"
    assert published.trainer.max_steps == 476 and published.data.batch_size == 1024 and published.data.val_size == 0
    cfg = compose(["experiment=airbench94", "data=synthetic", "data.num_train=320", "data.val_size=0",
                   "data.num_test=64", "data.batch_size=32", "data.eval_batch_size=64", "trainer.max_steps=36",
                   "model.width_multiplier=0.25", "callbacks.lookahead.start_epoch=1",
                   "callbacks.freeze_whitening_bias.epoch=2"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    metrics = train(cfg)
    assert metrics["epochs"] == 4 and 0.0 <= metrics["test/acc"] <= 1.0  # 36 steps of 10 an epoch: stopped in the 4th
    init = (tmp_path / "init.csv").read_text()
    assert "layers.group1a.conv.weight,16x24x3x3,3456,Conv,dirac" in init
    assert "layers.whiten.conv.bias,24,24,Conv,constant,value=0.0" in init


def test_cpu_fast_presets_are_airbench94_cut_short(tmp_path):
    published, fast, quick = (compose([f"experiment={name}"]) for name in ("airbench94", "cpu_fast", "cpu_fast_4min"))
    assert fast.trainer.max_epochs == 7 and fast.trainer.max_steps == -1 and fast.trainer.accelerator == "cpu"
    assert quick.model.width_multiplier == 0.5 and quick.trainer.max_epochs == 7
    for key in ("optimizer", "scheduler", "module", "init"):
        assert fast[key] == published[key] == quick[key], key
    cfg = compose(["experiment=cpu_fast_4min", "data=synthetic", "debug=fast_dev_run", "data.batch_size=32",
                   "data.eval_batch_size=32", "data.val_size=0"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    assert 0.0 <= train(cfg)["test/acc"] <= 1.0


def test_a_preset_run_prints_no_warning_lines(tmp_path):
    # cpu_fast on synthetic data, cut to 12 steps of 32 (its logging interval, so that informative warning stays quiet)
    result = run_train_py(tmp_path, "experiment=cpu_fast", "data=synthetic", "data.num_train=384", "data.num_test=64",
                          "data.batch_size=32", "data.eval_batch_size=64", "model.width_multiplier=0.25",
                          "trainer.max_epochs=1")
    lines = (result.stdout + result.stderr).replace("\r", "\n").splitlines()
    # Lightning's warnings print as "<file>.py:<line>: <message>", Python's as "...Warning: ..."; adverts as "Tip:"
    noisy = [line for line in lines if re.search(r"\.py:\d+: |Warning\b|Tip:", line)]
    assert not noisy, "\n".join(noisy)
    assert "test/acc" in result.stdout


def test_a_run_with_a_validation_split_still_validates(tmp_path):
    metrics = train(run_config(tmp_path, "data.num_train=96", "data.val_size=32", "data.num_test=32",
                               "data.batch_size=32", "model.dim=16", "model.depth=1", "trainer.max_epochs=1"))
    assert "val/acc_best" in metrics
