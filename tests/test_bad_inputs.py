"""A catalogue of bad inputs: each one fails early with one message naming the key and the fix.

A representative subset goes through ``python train.py`` (exit code 2 -- 3 for a diverging run --,
one ``error:`` line, no traceback); the rest through the Python API (``compose`` + ``train``),
asserting the error type, its exit code and the words of the message. The other files add a few
more: ``test_resume.py`` (resume without a checkpoint or run directory), ``test_divergence.py``
and ``test_cli.py``.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_data import write_fake_cifar

from convzoo import build_model
from convzoo.__main__ import main as convzoo_main
from convzoo.config import compose
from convzoo.data import CorruptDataError, DataNotFoundError
from convzoo.errors import CheckpointError, ConfigError, NonFiniteLossError, exit_code
from convzoo.training import train

REPO = Path(__file__).resolve().parent.parent
# A tiny run, so that a case that wrongly passes costs a second, not a minute.
BASE = ["data=synthetic", "model=convmixer_tiny", "model.dim=16", "model.depth=1", "data.num_train=96",
        "data.val_size=32", "data.num_test=32", "data.batch_size=32", "trainer.max_epochs=1"]
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present, so accelerator=gpu is valid")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Bad files of every kind, and a good checkpoint of the BASE model to mismatch against."""
    root = tmp_path_factory.mktemp("files")
    paths = {"tmp": root}
    for name in ("cifar_truncated", "cifar_garbage", "cifar_labels"):
        paths[name] = root / name
        write_fake_cifar(paths[name])
    batch = paths["cifar_truncated"] / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    (paths["cifar_garbage"] / "cifar-10-batches-py" / "data_batch_2").write_bytes(b"<html>404 Not Found</html>")
    entry = {"data": torch.zeros(20, 3072, dtype=torch.uint8).numpy(), "labels": [12] * 20}
    (paths["cifar_labels"] / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(entry, protocol=2))

    paths["run"] = root / "run"
    train(compose([*BASE, f"paths.output_dir={paths['run']}", "test=false"]))
    (paths["run"] / ".hydra").mkdir()
    (paths["run"] / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in BASE))  # as train.py records
    paths["ckpt"] = paths["run"] / "checkpoints" / "last.ckpt"
    paths["text"] = root / "notes.ckpt"
    paths["text"].write_text("not a checkpoint\n")
    paths["truncated"] = root / "truncated.ckpt"
    paths["truncated"].write_bytes(paths["ckpt"].read_bytes()[:2000])
    paths["weights"] = root / "weights.ckpt"
    torch.save({"state_dict": torch.load(paths["ckpt"], weights_only=True)["state_dict"]}, paths["weights"])
    return paths


def _with_base(overrides: list[str]) -> list[str]:
    """BASE, then ``overrides``; a case that picks another config of a group (``data=cifar10``,
    ``model=resnet_cifar``) drops BASE's keys of that group."""
    picked = {o.split("=", 1)[0] for o in overrides if "=" in o and "." not in o.split("=", 1)[0]}
    return [*(o for o in BASE if o.split("=", 1)[0].split(".")[0] not in picked), *overrides]


def _cases(*cases):
    return [pytest.param(*case[1:4], id=case[0], marks=case[4:]) for case in cases]


# (id, overrides, error type, words the message must hold[, marks]); "{name}" is a path from `files`.
API_CASES = _cases(
    # -- names: config groups, keys, blocks, targets -----------------------------------------------------
    ("unknown-optimizer-config", ["optimizer=adamx"], ConfigError, ["optimizer=adamx", "Available: adamw, sgd"]),
    ("unknown-init-config", ["init=kaimng_normal"], ConfigError, ["init=kaimng_normal", "Did you mean 'kaiming_normal'"]),
    ("unknown-top-level-key", ["foo=3"], ConfigError, ["has no key 'foo'", "+foo=3"]),
    ("trainer-argument-not-in-config", ["trainer.limit_train_batches=2"], ConfigError,
     ["does not set 'limit_train_batches'", "+trainer.limit_train_batches=2"]),
    ("typo-in-a-layer-key", ["model.layers.0.blok=x"], ConfigError, ["model.layers.0", "Did you mean 'block'"]),
    ("unknown-tta-mode", ["module.tta=mirror"], ConfigError, ["module.tta='mirror'", "flip_translate"]),
    ("unknown-trainer-argument", ["+trainer.foo=1"], ConfigError, ["trainer.foo is not an argument", "It accepts"]),
    ("unknown-block", ["model.layers.1.block=convmixr"], ConfigError, ["convmixr", "Did you mean 'convmixer'"]),
    ("unknown-block-argument", ["+model.layers.0.kernel=3"], ConfigError, ["'kernel'", "It accepts"]),
    ("unknown-activation", ["model.block_defaults.act=relux"], ConfigError, ["relux", "'relu'"]),
    ("unlogged-monitor", ["callbacks.model_checkpoint.monitor=val/acc2"], ConfigError,
     ["callbacks.model_checkpoint.monitor='val/acc2'", "Did you mean 'val/acc'"]),
    ("unimportable-target", ["+callbacks.extra._target_=convzoo.callbacks.NoSuchThing"], ConfigError,
     ["callbacks.extra._target_", "cannot be imported"]),
    ("unparsable-override", ["trainer.max_epochs=[1"], ConfigError, ["trainer.max_epochs=[1", "cannot parse"]),
    ("unknown-padding-mode", ["data.augment.padding_mode=mirror"], ConfigError, ["padding_mode='mirror'", "reflect, zeros"]),
    ("unknown-flip", ["data.augment.flip=maybe"], ConfigError, ["data.augment.flip='maybe'", "alternating"]),
    ("unknown-augment-key", ["+data.augment.mixup=1"], ConfigError, ["data.augment.mixup", "It accepts"]),
    ("schedule-milestones-and-values", ["scheduler=piecewise_linear", "scheduler.values=[0,1]"], ConfigError,
     ["scheduler.milestones", "as many as"]),
    ("unknown-matmul-precision", ["float32_matmul_precision=ultra"], ConfigError, ["float32_matmul_precision='ultra'", "'medium'"]),
    # -- wrong types from the command line -----------------------------------------------------------------
    ("lr-not-a-number", ["optimizer.lr=abc"], ConfigError, ["optimizer.lr='abc'", "float"]),
    ("epochs-not-a-number", ["trainer.max_epochs=abc"], ConfigError, ["trainer.max_epochs='abc'", "int"]),
    ("batch-size-not-a-number", ["data.batch_size=abc"], ConfigError, ["data.batch_size='abc'", "int"]),
    ("seed-not-a-number", ["seed=abc"], ConfigError, ["seed='abc'", "int"]),
    ("switch-not-a-bool", ["test=maybe"], ConfigError, ["test='maybe'", "bool"]),
    ("betas-not-a-pair", ["optimizer.betas=[0.9]"], ConfigError, ["optimizer.betas=[0.9]", "float | Tensor, float | Tensor"]),
    ("precision-misspelt", ["trainer.precision=bf16_mixed"], ConfigError, ["trainer.precision='bf16_mixed'", "'bf16-mixed'"]),
    # -- numbers out of range --------------------------------------------------------------------------------
    ("batch-size-zero", ["data.batch_size=0"], ConfigError, ["data.batch_size=0", "at least 1"]),
    ("negative-lr", ["optimizer.lr=-1"], ConfigError, ["Invalid learning rate", "optimizer.lr="]),
    ("label-smoothing-above-one", ["module.label_smoothing=1.5"], ConfigError, ["module.label_smoothing=1.5", "[0, 1)"]),
    ("warmup-above-one", ["scheduler.warmup=2"], ConfigError, ["scheduler.warmup=2", "[0, 1)"]),
    ("negative-seed", ["seed=-1"], ConfigError, ["seed=-1", "0 to 4294967295"]),
    ("negative-gradient-clip", ["trainer.gradient_clip_val=-1"], ConfigError, ["trainer.gradient_clip_val=-1", "null"]),
    ("val-size-above-data", ["data.val_size=100000"], ConfigError, ["data.val_size=100000", "96 training images"]),
    ("crop-padding-above-image", ["data.augment.crop_padding=40"], ConfigError, ["crop_padding=40", "32x32"]),
    ("negative-cutout", ["data.augment.cutout=-2"], ConfigError, ["cutout=-2", ">= 0"]),
    ("negative-init-std", ["init=normal", "init.std=-1"], ConfigError, ["init", "std", ">= 0"]),
    ("guard-never-checks", ["callbacks.nonfinite_loss.check_every_n_steps=0"], ConfigError,
     ["callbacks.nonfinite_loss", "check_every_n_steps=0", "positive integer"]),
    ("rand-augment-magnitude", ["data.augment.rand_augment={{num_ops:2,magnitude:99}}"], ConfigError,
     ["rand_augment.magnitude=99", "0 to 30"]),
    ("negative-epochs", ["trainer.max_epochs=-5"], ConfigError, ["trainer", "max_epochs", "-1"]),
    ("zero-devices", ["trainer.devices=0"], ConfigError, ["trainer", "devices=0"]),
    # -- values the type allows but no layer can use: refused by the spec check, named by the key written ----
    ("kernel-size-zero", ["model.kernel_size=0"], ConfigError,
     ["model.kernel_size=0 is used by layers[1] 'mixer'", "kernel_size=0 is out of range; it must be >= 1"]),
    ("patch-size-negative", ["model.patch_size=-2"], ConfigError,
     ["model.patch_size=-2 is used by layers[0] 'stem'", "patch_size=-2 is out of range; it must be >= 1"]),
    ("dim-zero", ["model.dim=0"], ConfigError, ["model.dim=0 is used by layers[0] 'stem'", "out_channels=0 is out of range"]),
    ("depth-zero", ["model.depth=0"], ConfigError, ["model.depth=0 is used by layers[1] 'mixer'", "repeat must be a positive"]),
    ("dropout-above-one-in-a-layer", ["+model.layers.2.dropout=2"], ConfigError,
     ["model.layers[2] 'head' (block 'classifier')", "dropout=2 is out of range; it must be from 0 to 1"]),
    ("patch-larger-than-images", ["model.patch_size=40"], ConfigError,
     ["model.patch_size=40 is used by layers[0] 'stem'", "patch_size=40 is larger than the 32x32 input: it must be from 1 to 32"]),
    # -- errors name the key the user wrote, then the layer ---------------------------------------------------
    ("dim-not-a-number", ["model.dim=abc"], ConfigError,
     ["model.dim='abc' is used by layers[0] 'stem' (block 'patch_embed')", "out_channels='abc'", "must be int"]),
    ("kernel-size-not-a-number", ["model.kernel_size=[3]"], ConfigError, ["model.kernel_size=[3] is used by layers[1]", "int"]),
    ("depth-off-the-formula", ["model=resnet_cifar", "model.depth=21"], ConfigError,
     ["model.depth=21 is used by model.blocks_per_stage", "(21 - 2) / 6", "not a whole number"]),
    # -- data: missing, truncated, corrupt --------------------------------------------------------------------
    ("data-missing", ["data=cifar10", "data.root={tmp}/nowhere"], DataNotFoundError,
     ["CIFAR-10 not found", "nowhere", "data.download=true"]),
    ("data-truncated", ["data=cifar10", "data.root={cifar_truncated}", "data.val_size=20"], CorruptDataError,
     ["data_batch_3", "truncated or corrupt", "download it again"]),
    ("data-not-a-pickle", ["data=cifar10", "data.root={cifar_garbage}", "data.val_size=20"], CorruptDataError,
     ["data_batch_2", "could not unpickle"]),
    ("data-labels-out-of-range", ["data=cifar10", "data.root={cifar_labels}", "data.val_size=20"], CorruptDataError,
     ["test_batch", "labels outside 0..9"]),
    # -- the model against the data ------------------------------------------------------------------------------
    # (model.num_classes / model.in_channels / model.input_size set on the command line are checked against the
    # data: see the train.py cases; a composed config is sized to the data, so a 48-px patch meets 32-px images)
    ("model-too-coarse-for-images", ["model.patch_size=48", "model.input_size=96"], ConfigError,
     ["layers[0] 'stem' (block 'patch_embed')", "(3, 32, 32)", "Kernel size can't be greater"]),
    # -- checkpoints -------------------------------------------------------------------------------------------
    ("checkpoint-missing", ["ckpt_path={tmp}/missing.ckpt"], CheckpointError, ["missing.ckpt does not exist", "resume="]),
    ("checkpoint-not-torch", ["ckpt_path={text}"], CheckpointError, ["notes.ckpt", "not a readable PyTorch checkpoint"]),
    ("checkpoint-truncated", ["ckpt_path={truncated}"], CheckpointError, ["truncated.ckpt", "truncated"]),
    ("checkpoint-weights-only", ["ckpt_path={weights}"], CheckpointError, ["weights only", "load_model"]),
    ("checkpoint-other-model", ["ckpt_path={ckpt}", "model.dim=32"], CheckpointError,
     ["different model", "model.layers[0].out_channels: 16 in the checkpoint, 32 now", "resume=<run_dir>"]),
    ("checkpoint-other-optimizer", ["ckpt_path={ckpt}", "optimizer=sgd"], CheckpointError,
     ["another optimizer", "momentum"]),
    ("checkpoint-other-param-groups", ["ckpt_path={ckpt}", "module.norm_bias_lr_scale=4"], CheckpointError,
     ["parameter groups", "module.norm_bias_lr_scale"]),
    ("resume-and-ckpt-path", ["resume={run}", "ckpt_path={ckpt}"], ConfigError, ["both set", "drop ckpt_path"]),
    # -- devices ----------------------------------------------------------------------------------------------------
    ("no-gpu", ["trainer.accelerator=gpu"], ConfigError, ["trainer.accelerator=gpu", "trainer=cpu"], NO_GPU),
    ("no-mps", ["trainer.accelerator=mps"], ConfigError, ["trainer.accelerator=mps", "trainer.accelerator=cpu"],
     pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
    # -- a run that diverges ------------------------------------------------------------------------------------------
    ("diverging-lr", ["optimizer.lr=1e12", "trainer.max_epochs=4"], NonFiniteLossError,
     ["the training loss became nan", "learning rate", "optimizer.lr"], pytest.mark.slow),
)


@pytest.mark.parametrize("overrides, error, words", API_CASES)
def test_bad_input_through_the_python_api(overrides, error, words, files, tmp_path):
    overrides = [o.format(**files) for o in overrides]
    with pytest.raises(error) as info:
        train(compose([*_with_base(overrides), f"paths.output_dir={tmp_path / 'out'}"]))
    message = str(info.value)
    assert all(word.format(**files) in message for word in words), message
    assert exit_code(info.value) == (3 if error is NonFiniteLossError else 2)


CLI_CASES = _cases(
    ("unknown-model-config", ["model=convmixr"], 2, ["model=convmixr", "Did you mean 'convmixer'", "Available:"]),
    ("typo-in-a-key", ["trainer.max_epoch=3"], 2, ["trainer.max_epoch=3", "Did you mean 'max_epochs'"]),
    ("wrong-type-in-a-spec", ["model.dim=abc"], 2, ["model.dim='abc' is used by", "out_channels='abc'", "int"]),
    ("kernel-size-zero", ["model.kernel_size=0"], 2, ["model.kernel_size=0 is used by", ">= 1"]),
    ("data-missing", ["data=cifar10", "data.root={tmp}/nowhere"], 2, ["nowhere", "data.download=true"]),
    ("classes-fewer-than-labels", ["model.num_classes=5"], 2, ["model.num_classes=5", "model.num_classes=10"]),
    ("channels-differ", ["model.in_channels=1"], 2, ["model.in_channels=1", "model.in_channels=3"]),
    ("no-gpu", ["trainer.accelerator=gpu"], 2, ["trainer.accelerator=gpu", "trainer=cpu"], NO_GPU),
    ("checkpoint-not-torch", ["ckpt_path={text}"], 2, ["notes.ckpt", "not a readable PyTorch checkpoint"]),
    ("resume-nowhere", ["resume={tmp}/nowhere"], 2, ["resume=", "no such run directory"]),
    ("diverging-lr", ["optimizer.lr=1e12", "trainer.max_epochs=4"], 3, ["the training loss became", "optimizer.lr"],
     pytest.mark.slow),
)


@pytest.mark.slow  # a train.py process each (~7 s): the fast loop keeps the Python-API half
@pytest.mark.parametrize("overrides, code, words", CLI_CASES)
def test_bad_input_through_train_py(overrides, code, words, files, tmp_path):
    overrides = [o.format(**files) for o in overrides]
    command = [sys.executable, str(REPO / "train.py"), *_with_base(overrides), f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and len(errors) == 1, result.stderr[-3000:]
    assert all(word.format(**files) in errors[0] for word in words), errors[0]


@pytest.mark.slow
def test_a_config_error_leaves_no_run_directory(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "train.py"), "optimizer.lr=abc", f"hydra.run.dir={tmp_path / 'run'}"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 2 and not (tmp_path / "run").exists()


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise KeyError("a bug, not a config error")

    monkeypatch.setattr("convzoo.training.run.check_data_fits_model", broken)
    with pytest.raises(KeyError) as info:
        train(compose([*BASE, f"paths.output_dir={tmp_path}"]))
    assert exit_code(info.value) is None



# (id, the spec file's text, words the one line must hold): files a user wrote, read by build_model and the CLI
SPEC_FILE_CASES = _cases(
    ("unclosed-brace", "num_classes: 10\nlayers:\n  - {block: conv, out_channels: 8\n  - {block: head}\n",
     ["line 4, column 5", "is not valid YAML", "expected ',' or '}'", "flow mapping at line 3, column 5"]),
    ("unclosed-bracket", "layers: [1\n", ["line 2, column 1", "expected ',' or ']'"]),
    ("tab-indentation", "layers:\n\t- block: conv\n", ["line 2, column 1", "'\\t'"]),
    ("unclosed-quote", 'layers: "conv\n', ["line 2, column 1", "quoted scalar"]),
    ("duplicate-key", "layers: []\nlayers: []\n", ["line 2, column 1", "duplicate key"]),
    ("not-text", b"\xff\xfe\x00garbage", ["cannot be read as a config", "utf-8"]),
)


@pytest.mark.parametrize("text, words", SPEC_FILE_CASES)
def test_a_spec_file_with_a_yaml_error_is_one_config_error(text, words, tmp_path, capsys):
    path = tmp_path / "spec.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as info:
        build_model(path)
    message = str(info.value)
    assert message.startswith(f"model spec file '{path}'") and all(word in message for word in words), message
    assert convzoo_main(["summary", str(path)]) == 2
    printed = capsys.readouterr().err.strip().splitlines()
    assert len(printed) == 1 and printed[0] == f"error: {message}"


def _export_program(path: Path, extra_files: dict[str, str] | None = None) -> None:
    net = build_model({"layers": [{"block": "classifier", "num_classes": 2}]})
    torch.export.save(torch.export.export(net, (torch.randn(2, 3, 32, 32),)), path, extra_files=extra_files)


def _write_foreign(name: str, path: Path) -> None:
    """A file convzoo did not write (or one damaged since), of the kind ``name`` says."""
    if name == "text":
        path.write_text("not a model\n")
    elif name == "no-record":
        _export_program(path)
    elif name == "broken-record":
        _export_program(path, {"convzoo.json": "{not json"})
    elif name == "partial-record":
        _export_program(path, {"convzoo.json": '{"name": "x"}'})
    elif name == "truncated":
        whole = path.with_name(f"whole{path.suffix}")
        _export_program(whole)
        path.write_bytes(whole.read_bytes()[:3000])
    elif name == "state-dict":
        torch.save({"weight": torch.zeros(2)}, path)
    elif name == "plain-onnx":
        net = build_model({"layers": [{"block": "classifier", "num_classes": 2}]})
        torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(path), dynamo=False)


# (id, the file, what is in it, words the one line must hold): artifacts from elsewhere, read by predict
FOREIGN_FILE_CASES = _cases(
    ("pt2-text", "model.pt2", "text", ["model.pt2", "is not a .pt2 artifact", "export it again"]),
    ("pt2-truncated", "model.pt2", "truncated", ["model.pt2", "not a zip archive: truncated"]),
    ("pt2-without-record", "model.pt2", "no-record", ["model.pt2", "carries no convzoo.json"]),
    ("pt2-broken-record", "model.pt2", "broken-record", ["model.pt2", "JSONDecodeError"]),
    ("pt2-partial-record", "model.pt2", "partial-record", ["model.pt2", "in_channels, input_size", "missing"]),
    ("pt-text", "model.pt", "text", ["model.pt", "is not a .pt artifact"]),
    ("pt-state-dict", "model.pt", "state-dict", ["model.pt", "cannot be read as a .pt artifact"]),
    ("onnx-text", "model.onnx", "text", ["model.onnx", "cannot be read as a .onnx artifact", "DecodeError"]),
    ("onnx-without-record", "model.onnx", "plain-onnx", ["model.onnx", "carries no convzoo.json"]),
    ("unknown-suffix", "model.bin", "text", ["model.bin", "cannot tell the format", ".onnx, .pt2, .pt"]),
)


@pytest.mark.parametrize("filename, content, words", FOREIGN_FILE_CASES)
def test_an_artifact_convzoo_did_not_write_is_one_line_naming_it(filename, content, words, tmp_path, capsys):
    from PIL import Image

    from convzoo.deploy.export import read_metadata
    from convzoo.deploy.predict import load_predictor

    path = tmp_path / filename
    _write_foreign(content, path)
    Image.new("RGB", (32, 32)).save(tmp_path / "cat.png")
    with pytest.raises(ConfigError) as info:
        load_predictor(path)
    assert all(word in str(info.value) for word in words), str(info.value)
    if path.suffix != ".bin":
        with pytest.raises(ConfigError):
            read_metadata(path)
    assert convzoo_main(["predict", str(path), str(tmp_path / "cat.png")]) == 2
    printed = capsys.readouterr().err.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("error: ") and all(word in printed[0] for word in words), printed


@pytest.mark.parametrize("content, words", [
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", ["cannot identify image file"]),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, ["is not an image Pillow can read"]),
    ("truncated", ["image file is truncated"]),
    ("bomb", ["decompression bomb"]),
])
def test_an_image_that_cannot_be_read_is_one_line_naming_it(content, words, tmp_path, monkeypatch):
    from PIL import Image

    from convzoo.deploy import deploy_info
    from convzoo.deploy.predict import load_image

    path = tmp_path / "photo.png"
    if content in ("truncated", "bomb"):
        Image.effect_noise((64, 64), 50).convert("RGB").save(path)
        if content == "truncated":
            path.write_bytes(path.read_bytes()[:2000])
        else:
            monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64x64 is over twice the limit: refused
    else:
        path.write_bytes(content)
    info = deploy_info(build_model({"layers": [{"block": "classifier", "num_classes": 2}]}))
    with pytest.raises(ConfigError) as info_error:
        load_image(path, info)
    message = str(info_error.value)
    assert "photo.png" in message and all(word in message for word in words) and "\n" not in message.strip(), message
