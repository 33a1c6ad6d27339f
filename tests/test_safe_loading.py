"""Loading a checkpoint never runs code from it, through every entry point that reads one.

The hostile files are a real convzoo checkpoint (the 0.1 one in ``tests/data``) and a state dict,
each with one more object whose unpickling would write a marker file (``open(marker, "w")``; what
``os.system`` would do, minus the shell). ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns torch's
weights-only default off, so only a load that asks for ``weights_only=True`` itself passes.
"""

import ast
import io
import pickle
import shutil
import sys
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import open_dict

from convzoo import ConfigError, build_model, load_weights
from convzoo.__main__ import main
from convzoo.training.module import ImageClassifier, load_model
from convzoo.config import compose
from convzoo.deploy import load_checkpoint
from convzoo.errors import one_line
from convzoo.deploy.export import EXPORT_FORMATS
from convzoo.spec import upgrade_legacy_spec
from convzoo.training import train

DATA = Path(__file__).resolve().parent / "data"
LEGACY = DATA / "legacy-v0.1.0.ckpt"
# the smallest run that reaches the checkpoint: it is refused before any step
RUN = ["data=synthetic", "model=conv_norm_act", "model.width_multiplier=0.125", "data.num_train=64",
       "data.val_size=32", "data.num_test=32", "data.batch_size=32", "trainer.max_epochs=1", "logger=csv"]


class WritesMarker:
    """Unpickled, it creates ``path``: a stand-in for any code a pickle can name."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(autouse=True)
def torch_default_off(monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "pwned"


def hostile_checkpoint(marker: Path, folder: Path) -> Path:
    checkpoint = torch.load(LEGACY, weights_only=True)
    checkpoint["hyper_parameters"]["note"] = WritesMarker(marker)
    path = folder / "hostile.ckpt"
    torch.save(checkpoint, path)
    return path


def hostile_state_dict(marker: Path, folder: Path) -> Path:
    state = torch.load(LEGACY, weights_only=True)["state_dict"]
    path = folder / "hostile.pt"
    torch.save({**state, "extra": WritesMarker(marker)}, path)
    return path


def _run(overrides: list[str], output_dir: Path) -> None:
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    train(cfg)


def _resume(path: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(RUN))
    (run_dir / "checkpoints").mkdir()
    shutil.copy(path, run_dir / "checkpoints" / "last.ckpt")
    train(compose([f"resume={run_dir}"]))


def _cli(*arguments: str) -> Callable[[Path, Path], None]:
    def call(path: Path, tmp_path: Path) -> None:
        code = main([arguments[0], str(path), *arguments[1:]])
        if code:
            raise SystemExit(code)
    return call


def _image(tmp_path: Path) -> str:
    from PIL import Image

    Image.new("RGB", (32, 32), "red").save(tmp_path / "red.png")
    return str(tmp_path / "red.png")


#: Every entry point that reads a checkpoint or weights file, as ``load(path, tmp_path)``.
ENTRY_POINTS: dict[str, Callable[[Path, Path], object]] = {
    "load_model": lambda path, tmp: load_model(path),
    "ImageClassifier.load_from_checkpoint": lambda path, tmp: ImageClassifier.load_from_checkpoint(path),
    "deploy.load_checkpoint": lambda path, tmp: load_checkpoint(path),
    "load_weights": lambda path, tmp: load_weights(build_model(upgrade_legacy_spec(
        torch.load(LEGACY, weights_only=True)["hyper_parameters"]["model"])), path),
    "ckpt_path=": lambda path, tmp: _run([*RUN, f"ckpt_path={path}"], tmp / "run"),
    "resume=": _resume,
    "init=pretrained": lambda path, tmp: _run([*RUN, "init=pretrained", f"init.checkpoint={path}"], tmp / "run"),
    "export": lambda path, tmp: _cli("export", "--out", str(tmp / "model.onnx"))(path, tmp),
    "predict": lambda path, tmp: _cli("predict", _image(tmp))(path, tmp),
}


@pytest.mark.parametrize("make", [hostile_checkpoint, hostile_state_dict], ids=["checkpoint", "state_dict"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_pickle_that_runs_code_is_refused_in_one_line(entry, make, marker, tmp_path, capsys):
    path = make(marker, tmp_path)
    with pytest.raises((ConfigError, SystemExit)) as refused:
        ENTRY_POINTS[entry](path, tmp_path)
    assert not marker.exists(), f"{entry} ran code from {path.name}"
    if refused.type is SystemExit:  # python -m convzoo: one line on stderr, exit status 2
        assert refused.value.code == 2
        message = capsys.readouterr().err.strip()
        assert message.count("\n") == 0 and message.startswith("error: ")
    else:
        message = str(refused.value)
        assert message == one_line(refused.value)
    read = tmp_path / "run" / "checkpoints" / "last.ckpt" if entry == "resume=" else path  # the run's copy
    assert str(read) in message
    if path.suffix == ".ckpt" or entry not in ("predict",):  # a .pt for predict is read as TorchScript
        assert "pickles io.open" in message and "weights_only" in message, message


def test_lightnings_own_load_is_weights_only_too(marker, tmp_path, monkeypatch):
    """Past convzoo's check of ``ckpt_path``, Lightning reads the file again: it is asked for weights only."""
    import convzoo.training.run

    monkeypatch.setattr(convzoo.training.run, "check_checkpoint", lambda path, module: None)
    with pytest.raises(Exception, match="Weights only load failed"):
        _run([*RUN, f"ckpt_path={hostile_checkpoint(marker, tmp_path)}"], tmp_path / "run")
    assert not marker.exists()


def _saved(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


# the pickles inside each kind of archive: a torch.save-d file in a .pt2, raw pickles in TorchScript
@pytest.mark.slow  # exports
@pytest.mark.parametrize("fmt, pickles, pack", [("export", ("sample_inputs/model.pt",), _saved),
                                                 ("torchscript", ("/data.pkl", "/constants.pkl"),
                                                  partial(pickle.dumps, protocol=2))])
def test_an_exported_model_whose_pickle_runs_code_is_refused(fmt, pickles, pack, marker, tmp_path, capsys):
    """torch.export.load retries a refused pickle without weights_only (convzoo does not let it); TorchScript's
    reader resolves only TorchScript types."""
    exported = tmp_path / f"plain{EXPORT_FORMATS[fmt]}"
    assert main(["export", "model=plain", "model.width_multiplier=0.125", "--format", fmt, "--out", str(exported)]) == 0
    hostile = tmp_path / f"hostile{EXPORT_FORMATS[fmt]}"
    payload = pack({"inputs": WritesMarker(marker)})
    with zipfile.ZipFile(exported) as source, zipfile.ZipFile(hostile, "w") as target:
        for item in source.infolist():
            data = payload if item.filename.endswith(pickles) else source.read(item)
            target.writestr(item, data)
    capsys.readouterr()
    assert main(["predict", str(hostile), _image(tmp_path)]) == 2
    message = capsys.readouterr().err.strip()
    assert not marker.exists()
    assert message.count("\n") == 0 and str(hostile) in message and "io.open" in message, message


def test_the_opt_in_by_name_loads_a_trusted_file(marker, tmp_path):
    path = hostile_checkpoint(marker, tmp_path)
    net = load_model(path, weights_only=False)
    assert marker.exists()  # what weights_only=False means: the file's code ran
    assert not net.training


@pytest.mark.parametrize("which", ["today", "0.1"])
def test_real_checkpoints_still_load_everywhere(which, trained_checkpoint, tmp_path, capsys):
    path = trained_checkpoint if which == "today" else LEGACY
    net = load_model(path)
    module = ImageClassifier.load_from_checkpoint(path)
    deployed, info = load_checkpoint(path)
    assert list(module.hparams.model["layers"]) == list(deployed.spec["layers"])
    reference = deployed.state_dict()
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, reference[name])
    assert not load_weights(build_model(deployed.spec), path, strict=True).missing
    assert main(["predict", str(path), _image(tmp_path)]) == 0


@pytest.mark.slow  # exports
@pytest.mark.parametrize("fmt", ["export", "torchscript"])
@pytest.mark.parametrize("which", ["today", "0.1"])
def test_real_checkpoints_still_export_and_their_artifacts_load(which, fmt, trained_checkpoint, tmp_path):
    path = trained_checkpoint if which == "today" else LEGACY
    out = tmp_path / f"model{EXPORT_FORMATS[fmt]}"
    assert main(["export", str(path), "--format", fmt, "--out", str(out)]) == 0
    assert main(["predict", str(out), _image(tmp_path)]) == 0


# imports: a checkpoint's spec does not choose what gets imported
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def importing_checkpoint(marker, tmp_path, monkeypatch) -> tuple[Path, str]:
    """A checkpoint whose spec imports a module that, imported, writes the marker."""
    module = f"blocks_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(f"open({str(marker)!r}, 'w')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checkpoint = torch.load(LEGACY, weights_only=True)
    checkpoint["hyper_parameters"]["model"] = {
        **upgrade_legacy_spec(checkpoint["hyper_parameters"]["model"]), "imports": [module]}
    path = tmp_path / "imports.ckpt"
    torch.save(checkpoint, path)
    yield path, module
    sys.modules.pop(module, None)


LOADERS = {
    "load_model": lambda path, tmp, **allow: load_model(path, **allow),
    "ImageClassifier.load_from_checkpoint": lambda path, tmp, **allow: ImageClassifier.load_from_checkpoint(path, **allow),
    "deploy.load_checkpoint": lambda path, tmp, **allow: load_checkpoint(path, **allow),
    "export": lambda path, tmp, **allow: _cli("export", "--format", "torchscript", "--out", str(tmp / "m.pt"),
                                              *(["--allow-imports"] if allow else []))(path, tmp),
    "predict": lambda path, tmp, **allow: _cli("predict", _image(tmp), *(["--allow-imports"] if allow else []))(path, tmp),
}


@pytest.mark.parametrize("entry", list(LOADERS))
def test_imports_named_by_a_checkpoint_need_the_callers_consent(entry, importing_checkpoint, marker, tmp_path, capsys):
    path, module = importing_checkpoint
    with pytest.raises((ConfigError, SystemExit)) as refused:
        LOADERS[entry](path, tmp_path)
    message = str(refused.value) if refused.type is ConfigError else capsys.readouterr().err
    assert not marker.exists()
    assert str(path) in message and module in message and "allow_imports=True" in message and "--allow-imports" in message
    LOADERS[entry](path, tmp_path, allow_imports=True)
    assert marker.exists()  # imported, as asked


def test_imports_the_caller_made_already_are_fine(importing_checkpoint, marker):
    path, module = importing_checkpoint
    __import__(module)
    marker.unlink()
    assert load_checkpoint(path)[1].classes
    assert not marker.exists()  # nothing imported again


# a tripwire for loaders added later
# ---------------------------------------------------------------------------------------------
REPO = DATA.parent.parent
#: Every call that reads a model file, by file and callee; each is an entry point tested above.
KNOWN_READS = {
    ("convzoo/network/weights.py", "torch.load"),  # read_checkpoint_file: every checkpoint and state dict
    ("convzoo/training/module.py", "super().load_from_checkpoint"),  # after read_checkpoint_file, weights_only passed on
    ("convzoo/training/module.py", "ImageClassifier.load_from_checkpoint"),  # load_model
    ("convzoo/deploy/export.py", "torch.export.load"),  # inside _weights_only_loads
    ("convzoo/deploy/export.py", "torch.jit.load"),
}


def _callee(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_callee(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return f"{_callee(node.func)}()"
    return "?"


def test_every_place_that_reads_a_model_file_is_known():
    reads, unguarded = set(), []
    for path in sorted([*(REPO / "convzoo").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py"), REPO / "train.py"]):
        name = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node.func)
            keywords = {k.arg for k in node.keywords}
            if callee.endswith(("torch.load", "jit.load", "export.load", "load_from_checkpoint", "pl_load")):
                reads.add((name, callee))
            if "ckpt_path" in keywords and "weights_only" not in keywords:  # Trainer.fit/test/...: Lightning loads it
                unguarded.append(f"{name}:{node.lineno} {callee}")
    assert reads == KNOWN_READS, (
        "a place that reads model files was added or moved: read them with convzoo.network.weights.read_checkpoint_file "
        f"(weights-only), add its entry point to ENTRY_POINTS above, then to KNOWN_READS: {reads ^ KNOWN_READS}")
    assert not unguarded, f"pass weights_only=True where Lightning loads a checkpoint: {unguarded}"
