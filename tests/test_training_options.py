"""Each training option changes what a run does: a test here fails if the option is silently ignored.

``module.*`` through :class:`~convzoo.training.module.ImageClassifier` built as a run builds it; ``data.augment.*``
through the data module a run instantiates; ``callbacks.*``: lookahead's and EMA's options here, the others
in ``test_callbacks.py`` (lookahead's sync_every_epoch, freezing, progressive resizing), ``test_resume.py``
(step checkpoints, the random state) and ``test_divergence.py`` (the divergence guard).
"""

import math
from functools import partial
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from convzoo.training.module import ImageClassifier
from convzoo.config import compose
from convzoo.training import train

SPEC = {"in_channels": 3, "num_classes": 4, "layers": [
    {"block": "conv_norm_act", "out_channels": 8}, {"block": "classifier"}]}


def _module(**options) -> ImageClassifier:
    module = ImageClassifier(SPEC, optimizer=partial(torch.optim.SGD, lr=0.1), channels_last=False, **options)
    module.log = lambda *args, **kwargs: None  # no trainer to log to
    return module


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> float:
    """By hand: (1 - e) * -log p[label] + e * mean over classes of -log p[class]."""
    total = 0.0
    for row, label in zip(logits.tolist(), labels.tolist()):
        log_z = math.log(sum(math.exp(v) for v in row))
        nll = [log_z - v for v in row]
        total += (1 - smoothing) * nll[label] + smoothing * sum(nll) / len(row)
    return total / len(labels)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_the_training_loss_is_cross_entropy_with_the_configured_label_smoothing(smoothing):
    module = _module(label_smoothing=smoothing).eval()  # eval: batch norm gives the same logits twice
    images, labels = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 0, 1])
    loss = module.training_step((images, labels), 0)
    assert loss.item() == pytest.approx(smoothed_cross_entropy(module(images), labels, smoothing), rel=1e-5)
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])  # and on logits written out: 2.0 is the label's
    # -log softmax = log(e^2 + e^0 + e^-1 + e^0.5) - logits = [0.3424, 2.3424, 3.3424, 1.8424], mean 1.9674;
    # smoothed: 0.8 * 0.3424 + 0.2 * 1.9674 = 0.6674
    expected = {0.0: 0.3424, 0.2: 0.6674}[smoothing]
    assert module._loss(logits, torch.tensor([0])).item() == pytest.approx(expected, abs=1e-4)


def test_norm_bias_lr_scale_reaches_the_optimizer():
    lrs = [[group["lr"] for group in _module(norm_bias_lr_scale=scale).configure_optimizers().param_groups]
           for scale in (1.0, 8.0)]
    assert lrs == [[0.1], [0.1, pytest.approx(0.8)]]


@pytest.mark.parametrize("tta, views", [("none", 1), ("flip", 2), ("flip_translate", 6)])
def test_tta_decides_how_many_views_the_test_step_runs(tta, views):
    module = _module(tta=tta).eval()
    calls = []
    module.model.register_forward_hook(lambda *args: calls.append(1))
    module.test_step((torch.randn(2, 3, 8, 8), torch.tensor([0, 1])), 0)
    assert len(calls) == views


AUGMENT_OPTIONS = ["data.augment.crop_padding=0", "data.augment.padding_mode=zeros", "data.augment.flip=false",
                   "data.augment.cutout=8", "data.augment.rand_augment={num_ops:2,magnitude:9}"]


def _training_batch(*overrides: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch as the model sees it (augmented, normalised) and as it sees it in eval."""
    cfg = compose(["data=synthetic", "data.num_train=96", "data.val_size=32", "data.batch_size=32", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.setup("fit")
    images, labels = datamodule.train_images[:32], datamodule.train_labels[:32]
    out = []
    for training in (True, False):
        datamodule.trainer = SimpleNamespace(training=training)
        torch.manual_seed(0)
        out.append(datamodule.on_after_batch_transfer((images, labels), 0)[0])
    return out[0], out[1]


@pytest.mark.parametrize("override", AUGMENT_OPTIONS)
def test_each_augment_option_changes_the_training_batch_and_not_the_eval_batch(override):
    default_train, default_eval = _training_batch()
    changed_train, changed_eval = _training_batch(override)
    assert not torch.equal(changed_train, default_train)
    assert torch.equal(changed_eval, default_eval)


@pytest.mark.slow
def test_ema_decay_decides_the_weights_a_run_ends_with(tmp_path):
    def final_weights(*overrides: str) -> torch.Tensor:
        cfg = compose(["data=synthetic", "model=convmixer_tiny", "model.dim=16", "model.depth=1", "data.num_train=96",
                       "data.val_size=32", "data.num_test=32", "data.batch_size=16", "trainer.max_epochs=1", "test=false",
                       *overrides])
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "-".join(overrides or ["plain"]))
        train(cfg)
        checkpoint = torch.load(tmp_path / "-".join(overrides or ["plain"]) / "checkpoints" / "last.ckpt", weights_only=False)
        return checkpoint["state_dict"]["model.layers.head.fc.weight"]

    plain = final_weights()
    slow, fast = final_weights("callbacks=ema", "callbacks.ema.decay=0.99"), final_weights("callbacks=ema", "callbacks.ema.decay=0.5")
    assert not torch.allclose(slow, plain) and not torch.allclose(slow, fast)


@pytest.mark.parametrize("option, values", [("every", (2, 3)), ("decay", (0.5, 0.9)), ("power", (1.0, 3.0)),
                                            ("start_epoch", (0, 1))])  # sync_every_epoch: test_callbacks.py
def test_each_lookahead_option_changes_the_weights_a_fit_ends_with(option, values, tmp_path):
    import lightning as L
    from test_callbacks import TinyRegression, _loader

    from convzoo.training.callbacks import Lookahead

    def final_weight(value) -> torch.Tensor:
        torch.manual_seed(0)
        module = TinyRegression()
        trainer = L.Trainer(max_epochs=3, callbacks=[Lookahead(**{"every": 2, option: value})], logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)
        torch.manual_seed(0)
        trainer.fit(module, _loader())
        return module.layer.weight.detach().clone()

    assert not torch.allclose(*(final_weight(value) for value in values))
