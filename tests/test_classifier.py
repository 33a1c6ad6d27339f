from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from convzoo import classifier
from convzoo.blocks.whitening import WhiteningConv
from convzoo.data.augment import tta_views as flip_translate_views
from convzoo.training.module import ImageClassifier, make_optimizer
from convzoo.network.build import build_model
from convzoo.registry import ConfigError
from convzoo.training.schedules import one_cycle, piecewise_linear, warmup_cosine

SPEC = {"in_channels": 3, "num_classes": 10, "layers": [
    {"block": "conv_norm_act", "out_channels": 8, "norm": {"norm": "batchnorm", "learn_scale": False}},
    {"block": "classifier"},
]}


def test_norm_biases_get_scaled_lr_and_the_same_decoupled_decay():
    model = build_model(SPEC)
    optimizer = make_optimizer(partial(torch.optim.SGD, lr=0.1, weight_decay=0.01), model, norm_bias_lr_scale=64)
    regular, boosted = optimizer.param_groups
    norm = model.layers[0].norm
    assert [id(p) for p in boosted["params"]] == [id(norm.bias)]
    assert all(p is not norm.weight for p in regular["params"])  # learn_scale=False froze it
    assert boosted["lr"] == pytest.approx(6.4) and boosted["lr"] * boosted["weight_decay"] == pytest.approx(0.1 * 0.01)
    assert len(make_optimizer(partial(torch.optim.SGD, lr=0.1), model).param_groups) == 1


def test_tta_views_and_weights():
    x = torch.randn(2, 3, 8, 8)
    assert len(flip_translate_views(x, "none")) == 1
    flips = flip_translate_views(x, "flip")
    assert torch.equal(flips[1][0], x.flip(-1))
    views = flip_translate_views(x, "flip_translate")
    assert len(views) == 6 and sum(w for _, w in views) == 4.0
    assert all(v.shape == x.shape for v, _ in views)


def test_unknown_tta_mode_is_named():
    with pytest.raises(ValueError, match="module.tta='mirror'"):
        ImageClassifier(SPEC, tta="mirror")


def test_schedules():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = piecewise_linear(opt, total_steps=100, milestones=[0, 0.23, 1], values=[0.2, 1.0, 0.07])
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.2) and max(lrs) == pytest.approx(1.0, abs=0.02) and lrs[-1] < 0.09
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup=0.2)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(10):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(0.5) and lrs[2] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="use scheduler=constant"):
        one_cycle(opt, total_steps=2)


@pytest.mark.slow
def test_compile_keeps_checkpoint_names():
    module = ImageClassifier(SPEC, compile=True)
    names = list(module.state_dict())
    module.configure_model()
    assert list(module.state_dict()) == names and module.model._compiled_call_impl is not None


# ---------------------------------------------------------------------------------------------
# weight init inside the module's lifecycle
# ---------------------------------------------------------------------------------------------
WHITENED = {"in_channels": 3, "num_classes": 10, "input_size": 8, "layers": [
    {"name": "whiten", "block": "whitening", "kernel_size": 2}, {"block": "classifier"}]}


class ImagesOnly(L.LightningDataModule):
    """What the module reads for data-dependent init: ``train_images`` and ``eval_transform``."""

    def __init__(self, seed: int):
        super().__init__()
        self.train_images = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
        self.eval_transform = lambda images: images * 2.0

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.train_images, torch.arange(32) % 10), batch_size=16)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)


def test_the_module_applies_its_init_and_keeps_the_config():
    module = ImageClassifier(SPEC, init={"scheme": "constant", "value": 0.5, "linear": "pytorch_default"})
    conv = module.model.layers[0].conv
    assert torch.equal(conv.weight, torch.full_like(conv.weight, 0.5))
    record = module.init_record.by_name()
    assert record["layers.0.conv.weight"].scheme == "constant"
    assert record["layers.1.fc.weight"].scheme == "pytorch_default"
    assert module.hparams.init == {"scheme": "constant", "value": 0.5, "linear": "pytorch_default"}
    with pytest.raises(ConfigError, match=r"^init: Unknown init scheme 'kaiming'"):
        ImageClassifier(SPEC, init="kaiming")


def test_loading_a_checkpoint_does_not_initialise_again(tmp_path, monkeypatch):
    source = tmp_path / "source.pt"
    torch.save(build_model(SPEC).state_dict(), source)
    module = ImageClassifier(SPEC, init={"scheme": "normal", "checkpoint": str(source)})
    trainer = quiet_trainer()
    trainer.strategy.connect(module)
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    source.unlink()  # an init=pretrained file gone since the run must not break loading

    calls = []
    monkeypatch.setattr(classifier, "apply_init_config", lambda *args, **kwargs: calls.append(args))
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "run.ckpt")
    assert calls == [] and loaded.init_record is None
    assert loaded.hparams.init == {"scheme": "normal", "checkpoint": str(source)}
    for name, tensor in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_data_dependent_init_on_fit_start_and_not_on_resume(tmp_path):
    module = ImageClassifier(WHITENED, optimizer=partial(torch.optim.SGD, lr=0.01), init="kaiming_normal",
                             data_init_images=16, channels_last=False)
    assert module.init_record.by_name()["layers.whiten.conv.weight"].scheme == "kaiming_normal"
    data = ImagesOnly(seed=0)
    trainer = quiet_trainer(max_steps=1)
    trainer.fit(module, datamodule=data)
    expected = WhiteningConv(3, kernel_size=2)
    expected.init_from_data(data.train_images[:16] * 2.0)
    whiten = module.model.layers.whiten.conv.weight
    assert torch.allclose(whiten, expected.conv.weight)
    entry = module.init_record.by_name()["layers.whiten.conv.weight"]
    assert (entry.scheme, entry.args) == ("whitening", {"images": 16})
    trainer.save_checkpoint(tmp_path / "last.ckpt")

    resumed = ImageClassifier(WHITENED, optimizer=partial(torch.optim.SGD, lr=0.01), init="kaiming_normal",
                              data_init_images=16, channels_last=False)
    quiet_trainer(max_steps=2).fit(resumed, datamodule=ImagesOnly(seed=1), ckpt_path=tmp_path / "last.ckpt")
    assert torch.equal(resumed.model.layers.whiten.conv.weight, whiten)  # the checkpoint's, not fitted to new images


def test_data_init_images_below_one_is_refused_where_it_is_used():
    # the one place this rule is checked: the module that fits data-dependent layers to that many images
    from convzoo.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data_init_images=0 must be at least 1"):
        ImageClassifier({"layers": [{"block": "conv", "out_channels": 4}, {"block": "classifier", "num_classes": 2}]},
                        data_init_images=0)
