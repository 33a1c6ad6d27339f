"""One run checks its config once and builds its network once, from Python and through train.py."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from convzoo.config import compose
from convzoo.network.nets import ConvNet
import convzoo.training.run as training_run
from convzoo.training import train

REPO = Path(__file__).resolve().parent.parent
TINY = ["data=synthetic", "model=convmixer_tiny", "model.dim=16", "model.depth=1", "data.num_train=64",
        "data.val_size=32", "data.num_test=32", "data.batch_size=32", "trainer.max_epochs=1"]


def _counted(monkeypatch, owner: object, name: str, counts: dict[str, int]) -> None:
    """Wrap ``owner.name`` (a function or method) so that each call adds one to ``counts[name]``."""
    original = getattr(owner, name)

    def counting(*args, **kwargs):
        counts[name] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)


def test_a_run_checks_its_config_once_and_builds_its_network_once(monkeypatch, tmp_path):
    counts = {"check_config": 0, "__init__": 0}
    _counted(monkeypatch, training_run, "check_config", counts)
    _counted(monkeypatch, ConvNet, "__init__", counts)  # every network built (GraphNet is a ConvNet)
    metrics = train(compose([*TINY, f"paths.output_dir={tmp_path}"]))
    assert "test/acc" in metrics
    assert counts == {"check_config": 1, "__init__": 1}


def test_a_shape_error_is_named_by_the_model_key_when_the_network_is_built(tmp_path):
    # the static check passes (patch_size=40 is a valid argument); the one build, at the data's 32x32, refuses it
    from convzoo.errors import ConfigError
    from convzoo.training.config_checks import check_config

    cfg = compose([*TINY, "model.patch_size=40", f"paths.output_dir={tmp_path}"])
    check_config(cfg)
    with pytest.raises(ConfigError, match=r"^model\.patch_size=40 is used by layers\[0\] 'stem'"):
        train(cfg)


# train.py run in a process of its own (Hydra sets process-wide state), with check_config and every network
# construction counted.
_COUNTING_RUN = """
import json, runpy, sys
import convzoo.network.nets as nets, convzoo.training.run as run, convzoo.training.config_checks as config_checks

counts = {"check_config": 0, "networks built": 0}
check_config, network_init = config_checks.check_config, nets.ConvNet.__init__

def counted_check(cfg):
    counts["check_config"] += 1
    return check_config(cfg)

def counted_init(self, *args, **kwargs):
    counts["networks built"] += 1
    return network_init(self, *args, **kwargs)

config_checks.check_config = run.check_config = counted_check
nets.ConvNet.__init__ = counted_init
sys.argv = sys.argv[1:]  # train.py and its command line
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    open(%r, "w").write(json.dumps(counts))
"""


@pytest.mark.slow  # a train.py process each (~10 s), as tests/test_bad_inputs.py's train.py cases
@pytest.mark.parametrize("hydra_flags", [[], ["-m"]], ids=["single-run", "multirun"])
def test_train_py_checks_the_config_once(hydra_flags, tmp_path):
    # a single run is checked before Hydra creates its directory, and not again; a multirun's job by train()
    counts_file = tmp_path / "counts.json"
    script = _COUNTING_RUN % str(counts_file)
    command = [sys.executable, "-c", script, str(REPO / "train.py"), *hydra_flags, *TINY, "test=false",
               f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(counts_file.read_text()) == {"check_config": 1, "networks built": 1}


@pytest.mark.parametrize("spec, words", [
    ({"input_size": 64, "layers": [{"block": "conv", "out_channels": 8}, {"block": "classifier", "num_classes": 10}]},
     "model.input_size=64 but the data's images are 32x32"),
    ({"in_channels": 1, "layers": [{"block": "conv", "out_channels": 8}, {"block": "classifier", "num_classes": 10}]},
     "model.in_channels=1 but the data's images have 3 channels"),
    ({"layers": [{"block": "conv", "out_channels": 8, "stride": 2}]},
     "maps 3x32x32 images to outputs of shape (8, 16, 16), not one logit per class"),
    ({"layers": [{"block": "conv", "out_channels": 8}, {"block": "classifier", "num_classes": 5}]},
     "model.num_classes=5 but the data's labels go up to 9 (10 classes); set model.num_classes=10"),
], ids=["input-size", "channels", "feature-map", "classes"])
def test_the_data_is_checked_against_what_the_built_network_reports(spec, words):
    from convzoo import build_model
    from convzoo.data import SyntheticDataModule
    from convzoo.errors import ConfigError
    from convzoo.training.preflight import check_data_fits_model

    data = SyntheticDataModule(num_train=64, num_test=16, val_size=16, num_classes=10)
    data.setup("fit")
    network = build_model(spec)
    with pytest.raises(ConfigError) as info:
        check_data_fits_model(data, network)
    assert words in str(info.value)


# train.py in a process of its own, with every resolve of a model spec counted, wherever it is called from
_RESOLVE_COUNTING_RUN = """
import json, runpy, sys
import convzoo.network.build as build
resolve_module = sys.modules["convzoo.specs.resolve"]

counts = {"specs resolved": 0}
resolve = resolve_module.resolve

def counted(*args, **kwargs):
    counts["specs resolved"] += 1
    return resolve(*args, **kwargs)

resolve_module.resolve = build.resolve = counted
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    open(%r, "w").write(json.dumps(counts))
"""


@pytest.mark.slow
def test_train_py_resolves_the_spec_once_and_builds_from_it(tmp_path):
    # the static check resolves the spec before Hydra creates the run directory; the run builds from that result
    counts_file = tmp_path / "counts.json"
    command = [sys.executable, "-c", _RESOLVE_COUNTING_RUN % str(counts_file), str(REPO / "train.py"), *TINY,
               "test=false", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(counts_file.read_text()) == {"specs resolved": 1}


def test_train_resolves_the_spec_once_from_python(tmp_path, monkeypatch):
    import convzoo.network.build as build

    resolve_module = sys.modules["convzoo.specs.resolve"]
    calls, resolve = [], resolve_module.resolve
    counted = lambda *args, **kwargs: (calls.append(1), resolve(*args, **kwargs))[1]  # noqa: E731
    monkeypatch.setattr(resolve_module, "resolve", counted)
    monkeypatch.setattr(build, "resolve", counted)
    train(compose([*TINY, "test=false", f"paths.output_dir={tmp_path}"]))
    assert len(calls) == 1


def test_a_run_that_would_train_no_step_and_a_one_class_head_are_refused():
    from convzoo import build_model
    from convzoo.data import SyntheticDataModule
    from convzoo.errors import ConfigError
    from convzoo.training.preflight import check_data_fits_model, check_training_steps

    data = SyntheticDataModule(num_train=64, num_test=16, val_size=16, num_classes=10, batch_size=64)
    data.setup("fit")
    with pytest.raises(ConfigError, match=r"48 training images make no full batch of data.batch_size=64"):
        check_training_steps(data)
    one_class = build_model({"layers": [{"block": "conv", "out_channels": 8}, {"block": "classifier", "num_classes": 1}]})
    with pytest.raises(ConfigError, match=r"model.num_classes=1: a classifier needs at least 2 classes"):
        check_data_fits_model(data, one_class)
