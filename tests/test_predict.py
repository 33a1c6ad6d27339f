"""Prediction on image files: loading any image, top-k output, and files == tensors on real CIFAR-10."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from convzoo import ConfigError, build_model
from convzoo.__main__ import main
from convzoo.config import compose
from convzoo.data import CIFAR10_CLASSES, load_cifar10, normalize
from convzoo.deploy import deploy_info, load_checkpoint
from convzoo.deploy.export import export_model
from convzoo.deploy.predict import find_images, load_image, load_predictor, predict_files
from convzoo.training import train

REPO = Path(__file__).resolve().parent.parent
INFO = deploy_info(build_model({"layers": [{"block": "classifier", "num_classes": 10}]}))  # 3 x 32 x 32, CIFAR-10


def write_png(path: Path, image: torch.Tensor) -> Path:
    """A uint8 (3, H, W) tensor as an RGB PNG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    return path


def test_an_image_of_the_input_size_is_read_exactly(tmp_path):
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    assert torch.equal(load_image(write_png(tmp_path / "a.png", image), INFO), image)


@pytest.mark.parametrize("mode,color", [("RGBA", (10, 20, 30, 0)), ("L", 77), ("P", 5), ("CMYK", (0, 0, 0, 0)),
                                        ("I;16", 300), ("1", 1)])
def test_any_mode_and_size_becomes_an_rgb_image_of_the_input_size(mode, color, tmp_path):
    path = tmp_path / f"image_{mode.replace(';', '')}.png" if mode != "CMYK" else tmp_path / "image.jpg"
    Image.new(mode, (75, 40), color).save(path)
    expected = torch.tensor(np.asarray(Image.open(path).convert("RGB"))[0, 0])
    image = load_image(path, INFO)
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    assert torch.equal(image, expected.view(3, 1, 1).expand(3, 32, 32))  # a flat colour stays that colour


def test_a_one_channel_network_reads_grey(tmp_path):
    info = deploy_info(build_model({"in_channels": 1, "layers": [{"block": "classifier", "num_classes": 2}]}),
                       mean=[0.5], std=[0.25])
    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "red.png")
    image = load_image(tmp_path / "red.png", info)
    assert image.shape == (1, 32, 32) and image.unique().tolist() == [76]  # ITU-R 601 luma of pure red


def test_folders_are_searched_for_images(tmp_path):
    for name in ("b/2.png", "a.jpg", "b/1.bmp"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    assert find_images([tmp_path]) == [tmp_path / "a.jpg", tmp_path / "b/1.bmp", tmp_path / "b/2.png"]
    with pytest.raises(ConfigError, match="does not exist"):
        find_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no image files"):
        find_images([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="not an image Pillow can read"):
        load_image(tmp_path / "b" / "notes.txt", INFO)


def test_cli_prints_topk_per_image(trained_checkpoint, tmp_path, capsys):
    generator = torch.Generator().manual_seed(0)
    for i in range(3):
        write_png(tmp_path / "images" / f"{i}.png", torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8, generator=generator))
    assert main(["predict", str(trained_checkpoint), str(tmp_path / "images"), "--topk", "3"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split()[0] for line in lines] == [str(tmp_path / "images" / f"{i}.png") for i in range(3)]
    for line in lines:
        fields = line.split()[1:]
        names, probabilities = fields[0::2], [float(p) for p in fields[1::2]]
        assert len(names) == 3 and set(names) <= {f"class_{i}" for i in range(10)}  # the synthetic run's classes
        assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.001
    assert "did not record" not in captured.err  # the run recorded its data's classes and statistics
    assert main(["predict", str(trained_checkpoint), str(tmp_path / "images"), "--topk", "0"]) == 2
    assert "topk must be >= 1" in capsys.readouterr().err


@pytest.mark.slow
def test_an_exported_model_predicts_what_its_checkpoint_does(trained_checkpoint, tmp_path):
    generator = torch.Generator().manual_seed(1)
    for i in range(4):
        write_png(tmp_path / "images" / f"{i}.png", torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator))
    net, info = load_checkpoint(trained_checkpoint)
    from_checkpoint = predict_files(load_predictor(trained_checkpoint), [tmp_path / "images"], topk=2)
    for fmt, suffix in (("onnx", ".onnx"), ("export", ".pt2")):
        artifact = export_model(net, tmp_path / f"model{suffix}", fmt, info)
        from_artifact = predict_files(load_predictor(artifact), [tmp_path / "images"], topk=2)
        for (path, top), (same_path, same_top) in zip(from_checkpoint, from_artifact):
            assert path == same_path and [name for name, _ in top] == [name for name, _ in same_top]
            assert [p for _, p in top] == pytest.approx([p for _, p in same_top], abs=1e-5)


@pytest.mark.parametrize("spec,returns", [("examples/fpn.yaml", "outputs p2, p3, p4"),
                                          ("configs/model/unet.yaml", "returns (1, 2, 64, 64)")])
@pytest.mark.slow
def test_predict_needs_a_classifier(spec, returns, tmp_path, capsys):
    example = Path(spec).stem
    net = build_model(REPO / spec)  # features; per-pixel scores
    export_model(net, tmp_path / f"{example}.pt2", "export", deploy_info(net))
    write_png(tmp_path / "a.png", torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert main(["predict", str(tmp_path / f"{example}.pt2"), str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "predict needs a classifier" in err and returns in err


@pytest.mark.slow
@pytest.mark.cifar10
def test_cifar10_test_images_as_png_files_get_the_accuracy_of_their_tensors(cifar10_root, tmp_path):
    # A half-width airbench trained on 4,000 real images for one epoch of 40 steps: 41% accurate on these 200.
    cfg = compose(["experiment=cpu_fast", "model.width_multiplier=0.5", "data.subset=4000", "data.val_size=200",
                   "data.batch_size=100", "trainer.max_epochs=1", "data_init_images=2000", "test=false",
                   f"data.root={cifar10_root}"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    train(cfg)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"

    data = load_cifar10(cifar10_root)
    images, labels = data.test_images[:200], data.test_labels[:200]
    files = [write_png(tmp_path / "png" / f"{i:03d}_{CIFAR10_CLASSES[label]}.png", image)
             for i, (image, label) in enumerate(zip(images, labels.tolist()))]

    net, info = load_checkpoint(checkpoint)
    with torch.no_grad():
        tensor_predictions = net(normalize(images, info.mean, info.std)).argmax(-1)
    file_predictions = [CIFAR10_CLASSES.index(top[0][0]) for _, top in
                        predict_files(load_predictor(checkpoint), [tmp_path / "png"], topk=1)]
    tensor_accuracy = (tensor_predictions == labels).float().mean().item()
    file_accuracy = (torch.tensor(file_predictions) == labels).float().mean().item()
    assert len(files) == len(file_predictions) == 200
    assert file_accuracy == tensor_accuracy and file_predictions == tensor_predictions.tolist()
    assert tensor_accuracy > 0.3, f"the model barely learned ({tensor_accuracy:.1%}): the comparison proves little"
