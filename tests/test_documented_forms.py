"""Every value form the README or a config comment documents for a key is accepted.

Each case composes the real configs with one documented form, checks the config as a run does and,
for the data, builds and sets up the data module; nothing trains.
"""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from convzoo.config import compose
from convzoo.data import CIFAR100DataModule, ImageFolderDataModule
from convzoo.data.image_folder import holdout_count
from convzoo.training.config_checks import check_config

SMALL = ["data=synthetic", "model=convmixer_tiny", "data.num_train=96", "data.val_size=32", "data.num_test=32",
         "data.batch_size=32"]


def checked(overrides: list[str], tmp_path):
    cfg = compose([*SMALL, *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    check_config(cfg)
    return cfg


def set_up_data(cfg):
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    return datamodule


# data.val_size: "a count or a fraction" (README, TensorDataModule), 0 for no validation (the presets)
@pytest.mark.parametrize("form, held_out", [("32", 32), ("0.25", 24), ("0", 0), ("0.0", 0), ("24.0", 24)])
def test_val_size_is_a_count_or_a_fraction(form, held_out, tmp_path):
    assert len(set_up_data(checked([f"data.val_size={form}"], tmp_path)).val_labels) == held_out


def test_val_size_fraction_passes_the_cifar10_config_check(tmp_path):
    cfg = compose(["data.val_size=0.1"])
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
    check_config(cfg)  # the data itself is not read here


def test_test_size_is_a_count_or_a_fraction():  # data.test_size (image_folder.yaml): "fraction (or count)"
    assert holdout_count(0.1, 50, "data.test_size") == 5 and holdout_count(7, 50, "data.test_size") == 7


@pytest.mark.parametrize("form, shape", [(64, (3, 64, 64)), ([48, 64], (3, 48, 64))])
def test_image_size_is_a_side_or_height_and_width(form, shape):  # data.image_size: int or [height, width]
    assert ImageFolderDataModule(root="unused", image_size=form).input_shape == shape


@pytest.mark.parametrize("labels, classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_labels_fine_or_coarse(labels, classes):
    assert CIFAR100DataModule(root="unused", labels=labels).num_classes == classes


def test_mean_and_std_are_null_or_three_numbers(tmp_path):  # cifar100.yaml, image_folder.yaml
    assert set_up_data(checked([], tmp_path)).mean is not None  # null: the class's (or computed) statistics
    given = set_up_data(checked(["+data.mean=[0.5,0.5,0.5]", "+data.std=[0.25,0.25,0.25]"], tmp_path))
    assert given.mean == (0.5, 0.5, 0.5) and given.std == (0.25, 0.25, 0.25)


@pytest.mark.parametrize("flip", ["true", "false", "alternating"])
def test_flip_is_true_false_or_alternating(flip, tmp_path):
    assert set_up_data(checked([f"data.augment.flip={flip}"], tmp_path)).augment["flip"] == {"true": True, "false": False}.get(flip, flip)


@pytest.mark.parametrize("mode", ["reflect", "zeros"])
def test_padding_mode_is_reflect_or_zeros(mode, tmp_path):
    assert set_up_data(checked([f"data.augment.padding_mode={mode}"], tmp_path)).train_transform.padding_mode == mode


@pytest.mark.parametrize("tta", ["none", "flip", "flip_translate"])
def test_tta_modes(tta, tmp_path):
    checked([f"module.tta={tta}"], tmp_path)


@pytest.mark.parametrize("gain", ["1.0", "2", "relu", "tanh"])
def test_init_gain_is_a_number_or_a_nonlinearity(gain, tmp_path):  # configs/init/xavier_*.yaml, orthogonal.yaml
    for scheme in ("xavier_normal", "xavier_uniform", "orthogonal"):
        checked([f"init={scheme}", f"init.gain={gain}"], tmp_path)


@pytest.mark.parametrize("form", ["32", "[32,32]"])
def test_model_input_size_is_a_side_or_height_and_width(form, tmp_path):  # README: int or [H, W]
    checked([f"model.input_size={form}"], tmp_path)


@pytest.mark.parametrize("form", ["1.5", "2.5"])
def test_val_size_neither_a_fraction_nor_a_count_is_refused(form, tmp_path):
    from convzoo.errors import ConfigError

    with pytest.raises(ConfigError, match=rf"data.val_size={form} is neither a fraction in \(0, 1\) nor a count"):
        set_up_data(checked([f"data.val_size={form}"], tmp_path))


@pytest.mark.parametrize("padding, side", [(1, 32), ("same", 32), ("valid", 30), (None, 32)])
def test_conv_padding_is_an_int_same_valid_or_null(padding, side):  # README, the block table
    from convzoo import build_model

    net = build_model({"layers": [{"block": "conv", "out_channels": 4, "kernel_size": 3, "padding": padding}]})
    assert net(torch.zeros(1, 3, 32, 32)).shape[-1] == side


@pytest.mark.parametrize("outputs", ["b", ["a", "b"]])
def test_spec_outputs_is_a_name_or_a_list(outputs):  # SPEC_KEYS: str | list[str] | None
    from convzoo import build_model

    net = build_model({"outputs": outputs, "layers": [{"block": "conv", "out_channels": 4, "name": "a"},
                                                       {"block": "conv", "out_channels": 8, "name": "b"}]})
    assert list(net.outputs) == ([outputs] if isinstance(outputs, str) else outputs)


@pytest.mark.parametrize("resize", ["center_crop", "stretch"])
def test_image_folder_resize_modes(resize):  # image_folder.yaml: center_crop | stretch
    assert ImageFolderDataModule(root="unused", resize=resize).resize == resize


@pytest.mark.parametrize("form", ["{num_ops:2,magnitude:9}", "{num_ops:2,magnitude:9,group_size:64}", "null"])
def test_rand_augment_is_null_or_its_options(form, tmp_path):  # data configs: e.g. {num_ops: 2, magnitude: 9, group_size: 64}
    transform = set_up_data(checked([f"data.augment.rand_augment={form}"], tmp_path)).train_transform
    assert (transform.rand_augment is None) == (form == "null")


@pytest.mark.parametrize("form, size", [("null", 32), ("16", 16)])
def test_eval_batch_size_is_null_or_a_count(form, size, tmp_path):  # null: same as batch_size
    assert set_up_data(checked([f"data.eval_batch_size={form}"], tmp_path)).eval_batch_size == size


@pytest.mark.parametrize("form", ["highest", "high", "medium", "null"])
def test_float32_matmul_precision_forms(form, tmp_path):
    checked([f"float32_matmul_precision={form}"], tmp_path)


@pytest.mark.parametrize("steps", ["0", "200"])
def test_step_checkpoint_is_off_at_0_or_every_n_steps(steps, tmp_path):  # callbacks/default.yaml: 0 = off
    checked([f"callbacks.step_checkpoint.every_n_train_steps={steps}"], tmp_path)
