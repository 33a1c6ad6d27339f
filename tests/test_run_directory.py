"""A run never destroys another run's results: refusal, overwrite=true, and the lock (convzoo.runs.directory).

The fast tests drive :func:`claim_run_directory` on planted records; the slow ones start real
``train.py`` runs, sweeps and an Optuna search on tiny synthetic data.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from convzoo.config import compose, resume_overrides
from convzoo.errors import ConfigError, RunDirectoryError, exit_code
from convzoo.runs.directory import LOCK_FILE, claim_run_directory, records_in, refuse_to_replace_a_record
from convzoo.training.config_checks import check_config

REPO = Path(__file__).resolve().parent.parent
TINY = ["data=synthetic", "model=convmixer_tiny", "model.dim=16", "model.depth=1", "data.num_train=96",
        "data.val_size=32", "data.num_test=32", "data.batch_size=32", "trainer.max_epochs=1"]


def plant_run(run_dir: Path) -> dict[str, str]:
    """An earlier run's records (and a file of the user's), with their digests."""
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(os.urandom(256))
    (run_dir / "csv").mkdir()
    (run_dir / "csv" / "metrics.csv").write_text("epoch,step,val/acc\n0,3,0.5\n")
    (run_dir / "metrics.json").write_text('{"val/acc_best": 0.5}\n')
    (run_dir / "notes.txt").write_text("mine\n")
    return digests(run_dir)


def digests(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != LOCK_FILE}


def hold_lock(run_dir: Path):
    """The lock as a running run holds it, on a file description of its own."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / LOCK_FILE, "a")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_a_directory_with_records_is_refused_and_left_as_it_was(tmp_path):
    before = plant_run(tmp_path)
    with pytest.raises(RunDirectoryError) as refused:
        with claim_run_directory(tmp_path, where="hydra.run.dir"):
            pytest.fail("the run started")
    message = str(refused.value)
    assert "\n" not in message and exit_code(refused.value) == 2
    assert f"{tmp_path} already holds a run's records (checkpoints/, csv/, metrics.json)" in message
    assert f"resume={tmp_path}" in message and "hydra.run.dir=<new dir>" in message and "overwrite=true" in message
    assert digests(tmp_path) == before


def test_hydra_files_alone_are_not_a_run(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "train.log").write_text("")
    with claim_run_directory(tmp_path) as run_dir:
        assert run_dir == tmp_path and records_in(tmp_path) == []


def test_overwrite_deletes_the_records_and_only_them(tmp_path, capsys):
    plant_run(tmp_path)
    with claim_run_directory(tmp_path, overwrite=True):
        assert records_in(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "notes.txt"]
    assert capsys.readouterr().out.strip() == (f"overwrite=true: deleted the earlier run's checkpoints/, csv/, "
                                               f"metrics.json in {tmp_path}")


def test_overwrite_keeps_a_checkpoint_the_run_starts_from(tmp_path):
    before = plant_run(tmp_path)
    with pytest.raises(RunDirectoryError, match="would delete .*last.ckpt, which this run reads"):
        with claim_run_directory(tmp_path, overwrite=True, inputs=[tmp_path / "checkpoints" / "last.ckpt"]):
            pytest.fail("the run started")
    assert digests(tmp_path) == before


def test_resume_expects_the_records(tmp_path):
    before = plant_run(tmp_path)
    with claim_run_directory(tmp_path, resuming=True):
        assert digests(tmp_path) == before


def test_a_second_process_is_refused_while_the_first_holds_the_lock(tmp_path):
    handle = hold_lock(tmp_path)
    handle.write("4242\n")
    handle.flush()
    try:
        for kwargs in ({}, {"overwrite": True}, {"resuming": True}):
            with pytest.raises(RunDirectoryError, match=f"{tmp_path} is in use: process 4242 is training there"):
                with claim_run_directory(tmp_path, **kwargs):
                    pytest.fail("the run started")
    finally:
        handle.close()
    with claim_run_directory(tmp_path):  # released with its holder
        pass


def test_the_lock_dies_with_a_killed_process(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from convzoo.runs.directory import claim_run_directory\n"
                               "with claim_run_directory(sys.argv[1]):\n"
                               "    print('held', flush=True); time.sleep(600)\n", str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryError, match=f"process {holder.pid} is training there"):
            with claim_run_directory(tmp_path):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with claim_run_directory(tmp_path):  # no stale lock after a crash
        pass


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("- model=plain\n- overwrite=true\n")
    assert "overwrite=true" not in resume_overrides([f"resume={tmp_path}"])  # how the run started is not resumed
    with pytest.raises(ConfigError, match="resume=.* and overwrite=true are both set"):
        check_config(compose([f"resume={tmp_path}", "overwrite=true"]))


def test_commands_never_replace_a_checkpoint_or_a_record(tmp_path):
    before = plant_run(tmp_path)
    for target in (tmp_path / "checkpoints" / "last.ckpt", tmp_path / "metrics.json"):
        with pytest.raises(RunDirectoryError, match="is never replaced"):
            refuse_to_replace_a_record(target, "--out")
    assert refuse_to_replace_a_record(tmp_path / "notes.txt", "--out") == tmp_path / "notes.txt"
    assert digests(tmp_path) == before


# -- real runs ---------------------------------------------------------------------------------------------------
def train_py(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "train.py"), *overrides], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_is_refused(tmp_path):
    run_dir = tmp_path / "exp1"
    first = train_py(tmp_path, *TINY, f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(run_dir)
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt", "metrics.json", ".hydra/overrides.yaml"} <= set(before)

    line = one_error_line(train_py(tmp_path, *TINY, "seed=1", f"hydra.run.dir={run_dir}"))
    assert f"{run_dir} already holds a run's records (checkpoints/, csv/, metrics.json" in line
    assert f"resume={run_dir}" in line and "hydra.run.dir=<new dir>" in line and "overwrite=true" in line
    assert digests(run_dir) == before  # the weights, the metrics, and the overrides resume=<dir> reads

    overwritten = train_py(tmp_path, *TINY, "seed=1", f"hydra.run.dir={run_dir}", "overwrite=true")
    assert overwritten.returncode == 0, overwritten.stderr[-3000:]
    assert f"overwrite=true: deleted the earlier run's checkpoints/, csv/, metrics.json" in overwritten.stdout
    after = digests(run_dir)
    assert after[".hydra/overrides.yaml"] != before[".hydra/overrides.yaml"] and "seed=1" in (
        run_dir / ".hydra" / "overrides.yaml").read_text()
    assert after["metrics.json"] != before["metrics.json"]  # run_minutes differs at least: a new file


@pytest.mark.slow
def test_a_run_started_while_another_trains_there_is_refused(tmp_path):
    run_dir = tmp_path / "busy"
    handle = hold_lock(run_dir)
    try:
        line = one_error_line(train_py(tmp_path, *TINY, f"hydra.run.dir={run_dir}"))
        assert f"{run_dir} is in use" in line and "hydra.run.dir=<new dir>" in line
        assert not (run_dir / ".hydra").exists()  # refused before Hydra wrote into it
    finally:
        handle.close()


@pytest.mark.slow
def test_a_reused_sweep_directory_is_refused(tmp_path):
    sweep_dir = tmp_path / "sweep"
    first = train_py(tmp_path, "-m", *TINY, "seed=0,1", f"hydra.sweep.dir={sweep_dir}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(sweep_dir)
    assert {"0/checkpoints/last.ckpt", "1/checkpoints/last.ckpt"} <= set(before)
    line = one_error_line(train_py(tmp_path, "-m", *TINY, "seed=2,3", f"hydra.sweep.dir={sweep_dir}"))
    assert f"{sweep_dir} already holds the records of 2 earlier run(s) (0, 1: checkpoints/" in line
    assert f"resume={sweep_dir}/<job>" in line and "hydra.sweep.dir=<new dir>" in line and "overwrite=true" in line
    assert digests(sweep_dir) == before


@pytest.mark.slow
def test_an_optuna_search_reports_a_refused_trial(tmp_path):
    """A search into a used folder is refused before its first trial; a trial whose directory another process
    holds stops the search with that line, instead of being scored."""
    sweep_dir = tmp_path / "search"
    search = ["hparams_search=optuna", "hydra.sweeper.n_trials=2", *TINY, f"hydra.sweep.dir={sweep_dir}"]
    before = plant_run(sweep_dir / "0")
    (sweep_dir / "0" / ".hydra").mkdir()
    line = one_error_line(train_py(tmp_path, *search))
    assert f"{sweep_dir} already holds the records of 1 earlier run(s) (0: checkpoints/" in line
    assert digests(sweep_dir / "0") == before  # its .hydra/ still empty: refused before Hydra wrote a file

    busy = tmp_path / "busy"
    handle = hold_lock(busy / "0")
    try:
        line = one_error_line(train_py(tmp_path, *search[:-1], f"hydra.sweep.dir={busy}"))
    finally:
        handle.close()
    assert f"{busy / '0'} is in use" in line and "hydra.sweep.dir=<new dir>" in line
    assert not (busy / "optimization_results.yaml").exists() and not (busy / "1").exists()


def test_export_and_compare_leave_a_run_s_files_alone(tmp_path, capsys):
    from convzoo.__main__ import main

    before = plant_run(tmp_path)
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    assert main(["export", "model=convmixer_tiny", "--format", "export", "--out", str(checkpoint)]) == 2
    assert main(["compare", str(tmp_path), "-o", str(tmp_path / "metrics.json")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert errors == [f"error: --out {tmp_path / 'checkpoints' / 'last.ckpt'}: that is a run's last.ckpt and is never "
                      f"replaced; choose another file name.",
                      f"error: -o {tmp_path / 'metrics.json'}: that is a run's metrics.json and is never replaced; "
                      f"choose another file name."]
    assert digests(tmp_path) == before


def test_a_file_system_without_locks_still_refuses_records(tmp_path, monkeypatch, capsys):
    def no_locks(*args):
        raise OSError(37, "No locks available")

    monkeypatch.setattr("convzoo.runs.directory.fcntl.flock", no_locks)
    before = plant_run(tmp_path)
    with pytest.raises(RunDirectoryError, match="already holds a run's records"):
        with claim_run_directory(tmp_path):
            pass
    assert "cannot be locked (No locks available)" in capsys.readouterr().out and digests(tmp_path) == before
