"""Exact resume: a run killed with SIGKILL and resumed ends bit-identical to one that never stopped.

The runs are real ``train.py`` processes on synthetic data with a dropout model and random crop,
flip and cutout, so the data order, the augmentation and dropout draws, the LR schedule, the
running epoch metrics and the CSV log all have to be restored exactly.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from convzoo.config import compose, resume_overrides
from convzoo.errors import CheckpointError, ConfigError
from convzoo.training import train

pytestmark = pytest.mark.slow  # end-to-end runs: the fast loop is python -m pytest -m "not slow"

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
# 256 training images in batches of 64: 4 steps per epoch, 8 in all; a step checkpoint every 2 steps
# (MidEpochCheckpoint leaves step 4, the end of epoch 0, to the epoch's own checkpoint).
RUN = ["data=synthetic", "model=conv_norm_act", "model.width_multiplier=0.125", "data.num_train=320",
       "data.val_size=64", "data.num_test=64", "data.batch_size=64", "trainer.max_epochs=2", "data.augment.cutout=8",
       "trainer.log_every_n_steps=1", "callbacks.step_checkpoint.every_n_train_steps=2"]


def train_py(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def record(run_dir: Path) -> tuple[dict, list[dict]]:
    """A run's final metrics and CSV log, without what depends on the clock."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("fit_minutes")
    metrics.pop("run_minutes")
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        rows = [{k: v for k, v in row.items() if k != "train/images_per_s"} for row in csv.DictReader(handle)]
    return metrics, rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    cfg = compose([*RUN, f"paths.output_dir={run_dir}"])
    train(cfg)  # in this process: the Python API and train.py must agree to the bit as well
    return run_dir


@pytest.mark.parametrize("kill, checkpoint_step, mid_epoch", [
    ("epoch:1", 4, False),  # at the start of epoch 1: last.ckpt is epoch 0's, written after its validation
    ("step:7", 6, True),    # in the middle of epoch 1: last.ckpt is the step-6 one; step 7 is trained again
], ids=["after-an-epoch-checkpoint", "mid-epoch"])
def test_a_killed_run_resumes_bit_identically(kill, checkpoint_step, mid_epoch, uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    killed = train_py(tmp_path, *RUN, f"hydra.run.dir={run_dir}", f"+callbacks.kill={{_target_:faults.KillSwitch,{kill}}}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (run_dir / "metrics.json").exists()
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
    assert checkpoint["global_step"] == checkpoint_step and (progress["completed"] < 4) == mid_epoch

    if mid_epoch:  # the Python API's way: compose the run's own overrides
        train(compose([f"resume={run_dir}", "~callbacks.kill"]))
    else:  # the command line's way, from another directory
        resumed = train_py(tmp_path, f"resume={run_dir}", "~callbacks.kill")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resuming from {run_dir / 'checkpoints' / 'last.ckpt'}" in resumed.stdout

    metrics, rows = record(run_dir)
    expected_metrics, expected_rows = record(uninterrupted)
    assert metrics == expected_metrics  # val loss/accuracy and test accuracy to the last bit
    assert rows == expected_rows        # one CSV for the whole run: every row, none twice
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


SAVER = """
import sys, torch
from convzoo.training.resume import AtomicCheckpointIO
io, payload = AtomicCheckpointIO(), torch.arange(4_000_000, dtype=torch.float32)  # 16 MB
for i in range(10_000):
    io.save_checkpoint({"i": i, "payload": payload}, sys.argv[1])
"""


def test_a_kill_during_a_save_leaves_the_previous_checkpoint_whole(tmp_path):
    target, partial = tmp_path / "last.ckpt", tmp_path / "last.ckpt.tmp"
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(target)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not (target.exists() and partial.exists()) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert partial.exists(), "no save was caught in progress"
    finally:
        saver.send_signal(signal.SIGKILL)
        saver.wait()
    checkpoint = torch.load(target, weights_only=True)
    assert checkpoint["i"] >= 0 and torch.equal(checkpoint["payload"], torch.arange(4_000_000, dtype=torch.float32))


def test_resume_reuses_the_recorded_overrides(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("- model=plain\n- seed=3\n- ckpt_path=/old.ckpt\n")
    expanded = resume_overrides([f"resume={run_dir}", "trainer.max_epochs=20"])
    assert expanded[:3] == ["model=plain", "seed=3", "trainer.max_epochs=20"]  # given now wins; ckpt_path dropped
    assert expanded[3:] == [f"resume='{run_dir}'", f"paths.output_dir='{run_dir}'"]
    cfg = compose([f"resume={run_dir}"])
    assert cfg.model.name == "plain" and cfg.seed == 3 and cfg.paths.output_dir == str(run_dir)
    with pytest.raises(CheckpointError, match="has no checkpoints/last.ckpt"):
        train(cfg)


def test_resume_keeps_an_interpolation_in_a_recorded_override(tmp_path):
    """A run started with ``+callbacks.x={dirpath: ${paths.output_dir}/...}`` records the override
    unresolved; resuming it must hand it to Hydra as written, not try to resolve it alone."""
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    override = "+callbacks.keep={_target_: lightning.pytorch.callbacks.ModelCheckpoint, dirpath: ${paths.output_dir}/epochs}"
    (run_dir / ".hydra" / "overrides.yaml").write_text(f"- model=plain\n- '{override}'\n")
    assert resume_overrides([f"resume={run_dir}"])[:2] == ["model=plain", override]
    cfg = compose([f"resume={run_dir}"])
    assert cfg.callbacks.keep.dirpath == f"{run_dir}/epochs"


def test_resume_needs_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match="no such run directory"):
        compose([f"resume={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="not a train.py run directory"):
        compose([f"resume={tmp_path}"])


@pytest.mark.slow
def test_a_one_cycle_sgd_checkpoint_passes_the_resume_check(tmp_path):
    # OneCycleLR keeps max_lr, base_momentum, ... in the optimizer's groups: the check compares like with like
    from convzoo.training.module import ImageClassifier
    from convzoo.training.preflight import check_checkpoint
    from convzoo.training.run import instantiate

    cfg = compose([*RUN, "optimizer=sgd_momentum", "scheduler=onecycle", "trainer.max_epochs=1", "test=false",
                   f"paths.output_dir={tmp_path}"])
    train(cfg)
    module = ImageClassifier(model=cfg.model, optimizer=instantiate(cfg.optimizer, "optimizer"),
                             scheduler=instantiate(cfg.scheduler, "scheduler"), init=cfg.init)
    assert check_checkpoint(tmp_path / "checkpoints" / "last.ckpt", module)["epoch"] == 0
