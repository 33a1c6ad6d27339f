import time
from functools import partial

import lightning as L
import pytest
import torch
from torch import nn

from convzoo.training.callbacks import FreezeParameters, Lookahead, ProgressiveResizing, ThroughputProgressBar
from convzoo.data import SyntheticDataModule
from convzoo.training.module import ImageClassifier
from convzoo.runs.plots import plot_curves
from convzoo.registry import ConfigError


class TinyRegression(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    x = torch.randn(64, 4)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def test_lookahead_ends_on_its_slow_weights_and_checkpoints_them(tmp_path):
    lookahead = Lookahead(every=2)
    module = TinyRegression()
    trainer = L.Trainer(max_epochs=2, callbacks=[lookahead], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(module, _loader())
    assert torch.equal(lookahead.slow["layer.weight"], module.layer.weight)
    restored = Lookahead()
    restored.load_state_dict(lookahead.state_dict())
    assert torch.equal(restored.slow["layer.bias"], module.layer.bias)


class EpochEndProbe(L.Callback):
    """Calls ``record(trainer, module)`` at every training epoch end (after the callbacks before it)."""

    def __init__(self, record):
        self.record, self.seen = record, []

    def on_train_epoch_end(self, trainer, pl_module):
        self.seen.append(self.record(trainer, pl_module))


def _fit(tmp_path, module, callbacks, epochs=3, data=None):
    trainer = L.Trainer(max_epochs=epochs, callbacks=callbacks, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.fit(module, data if data is not None else _loader())
    return trainer


def test_lookahead_starts_late_and_can_sync_every_epoch(tmp_path):
    lookahead = Lookahead(every=3, start_epoch=1, sync_every_epoch=True)
    probe = EpochEndProbe(lambda trainer, module: (
        bool(lookahead.slow), bool(lookahead.slow) and torch.equal(lookahead.slow["layer.weight"], module.layer.weight)))
    _fit(tmp_path, TinyRegression(), [lookahead, probe])
    assert probe.seen == [(False, False), (True, True), (True, True)]  # 8 steps an epoch: first copy at step 9


def test_freeze_parameters_stops_training_them_from_the_given_epoch(tmp_path):
    probe = EpochEndProbe(lambda trainer, module: (module.layer.bias.item(), module.layer.weight.sum().item()))
    _fit(tmp_path, TinyRegression(), [FreezeParameters(["layer.bias"], epoch=1), probe])
    (bias0, weight0), (bias1, weight1), (bias2, weight2) = probe.seen
    assert bias0 == bias1 == bias2 and weight0 != weight1 != weight2
    module = TinyRegression()
    bias, weight = module.layer.bias.detach().clone(), module.layer.weight.detach().clone()
    _fit(tmp_path, module, [FreezeParameters("layer.bias", epoch=0)], epochs=1)
    assert torch.equal(module.layer.bias, bias) and not torch.equal(module.layer.weight, weight)  # never trained


def test_freeze_parameters_names_what_exists_when_a_pattern_matches_nothing(tmp_path):
    with pytest.raises(ConfigError, match=r"'layer.bais' matches no parameter. Did you mean 'layer.bias'"):
        _fit(tmp_path, TinyRegression(), [FreezeParameters(["layer.bais"], epoch=1)])


def test_progressive_resizing_trains_early_epochs_small_and_evaluates_full_size(tmp_path):
    spec = {"in_channels": 3, "num_classes": 10, "layers": [
        {"block": "conv_norm_act", "out_channels": 4}, {"block": "classifier"}]}
    module = ImageClassifier(spec, optimizer=partial(torch.optim.SGD, lr=0.01))
    sizes = []
    module.training_step = lambda batch, batch_idx, step=module.training_step: sizes.append(batch[0].shape[-1]) or step(batch, batch_idx)
    data = SyntheticDataModule(num_train=96, num_test=16, val_size=32, batch_size=32)
    validated = []
    module.validation_step = lambda batch, batch_idx: validated.append(batch[0].shape[-1])
    _fit(tmp_path, module, [ProgressiveResizing([16, 24])], data=data)
    assert sizes == [16, 16, 24, 24, 24, 24] and set(validated) == {32}
    with pytest.raises(ConfigError, match="positive integers"):
        ProgressiveResizing([24, 0])


def test_throughput_bar_logs_images_per_second(tmp_path):
    bar = ThroughputProgressBar()
    trainer = L.Trainer(max_epochs=1, callbacks=[bar], logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        enable_checkpointing=False, default_root_dir=tmp_path)
    loader = _loader()
    start = time.perf_counter()
    trainer.fit(TinyRegression(), loader)
    whole_fit = sum(len(batch[0]) for batch in loader) / (time.perf_counter() - start)
    # the bar times the epoch's steps alone: at least the rate of the whole fit (set-up included), and finite
    assert whole_fit <= trainer.callback_metrics["train/images_per_s"].item() < float("inf")


def test_plot_curves_reads_a_csv_log(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/loss_epoch,train/acc,val/loss,val/acc\n"
                   "0,10,2.0,0.3,,\n0,10,,,1.9,0.35\n1,20,1.5,0.5,,\n1,20,,,1.4,0.55\n")
    out = plot_curves(log, tmp_path / "curves.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def _write_log(path, groups=1):
    lr = ",".join(f"lr-SGD/{name}" for name in ("weights", "norm_biases")[:groups]) if groups > 1 else "lr-SGD"
    rows = [f"epoch,step,{lr},train/loss_epoch,train/acc,val/loss,val/acc,test/acc"]
    for step in range(0, 30, 5):  # the LR monitor: a row per logged step, no epoch
        rates = ",".join(str(0.1 * (1 - step / 30) * 64**g) for g in range(groups))
        rows.append(f",{step},{rates}" + "," * 5)
    blank = "," * groups
    for epoch, (val_acc, val_loss) in enumerate([(0.4, 1.6), (0.62, 1.1), (0.6, 1.2)]):
        step = 10 * epoch + 9
        rows += [f"{epoch},{step}{blank},{2.0 - epoch / 2},{0.3 + epoch / 10},,,",
                 f"{epoch},{step}{blank},,,{val_loss},{val_acc},"]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_curves_figure_draws_lr_test_mark_integer_epochs_and_title(tmp_path):
    from convzoo.runs.plots import curves_figure

    figure = curves_figure(_write_log(tmp_path / "metrics.csv", groups=2), title="airbench on CIFAR10\nSGD",
                           test_score=0.61, steps_per_epoch=10)
    loss, accuracy, lr = figure.axes
    assert figure._suptitle.get_text() == "airbench on CIFAR10\nSGD"
    assert [line.get_label() for line in lr.get_lines()] == ["SGD/norm_biases", "SGD/weights"]
    assert list(lr.get_lines()[0].get_xdata()) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]  # steps / steps_per_epoch
    assert lr.get_yscale() == "log"  # the two groups are 64x apart
    star = next(line for line in accuracy.get_lines() if line.get_label().startswith("test/acc"))
    assert star.get_label() == "test/acc 61.00% (best val epoch 2)" and list(star.get_xdata()) == [2]
    assert list(accuracy.get_lines()[1].get_xdata()) == [1, 2, 3]  # epochs counted from 1
    for axis in (loss, accuracy, lr):
        assert all(float(tick).is_integer() for tick in axis.get_xticks())


def test_curves_figure_marks_the_final_weights_test_score_when_nothing_is_monitored(tmp_path):
    from convzoo.runs.plots import curves_figure

    # the presets test the final weights (no validation): the star goes at the last epoch
    figure = curves_figure(_write_log(tmp_path / "metrics.csv"), test_score=0.9105, monitor=None, steps_per_epoch=10)
    accuracy = figure.axes[1]
    star = next(line for line in accuracy.get_lines() if line.get_label().startswith("test/acc"))
    assert star.get_label() == "test/acc 91.05% (final weights)" and list(star.get_xdata()) == [3]


def test_curves_figure_keeps_one_decaying_rate_linear(tmp_path):
    from convzoo.runs.plots import curves_figure

    figure = curves_figure(_write_log(tmp_path / "metrics.csv"))
    assert figure.axes[2].get_yscale() == "linear" and figure.axes[2].get_xlabel() == "step"
    assert figure._suptitle is None
