"""RunRecords: a run's records, driven by a stand-in trainer (no training) and by a tiny real fit."""

import csv
import json
from types import SimpleNamespace

import lightning as L
import torch
import torch.nn.functional as F

from convzoo import build_model, summary
from convzoo.data import SyntheticDataModule
from convzoo.weight_init import apply_init
from convzoo.training.records import RunRecords
from convzoo.runs import format_count

SPEC = {"in_channels": 3, "num_classes": 2, "input_size": 8,
        "layers": [{"block": "conv_norm_act", "out_channels": 4}, {"block": "classifier"}]}


class HparamsSink:
    """A logger that keeps what it is given."""

    def __init__(self):
        self.logged = []

    def log_hyperparams(self, params):
        self.logged.append(params)


def test_records_from_a_stand_in_trainer(tmp_path):
    net = build_model(SPEC)
    module = SimpleNamespace(model=net, init_record=apply_init(net, "kaiming_normal"))
    data = SyntheticDataModule(num_train=64, num_test=16, val_size=16, num_classes=3)
    data.setup()
    sink = HparamsSink()
    best = SimpleNamespace(monitor="val/top1", mode="max", best_model_score=torch.tensor(0.625))
    trainer = SimpleNamespace(is_global_zero=True, loggers=[sink], datamodule=data, ckpt_path=None, current_epoch=3,
                              checkpoint_callback=best, callback_metrics={})
    records = RunRecords(tmp_path / "run", config={"model": {"name": "tiny"}})

    records.setup(trainer, module, "fit")
    records.on_train_start(trainer, module)
    run = tmp_path / "run"
    table = summary(net)
    assert (run / "summary.txt").read_text() == str(table) + "\n"
    with open(run / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["layer"] for r in rows] == [r["layer"] for r in table.rows] and rows[0]["output_shape"] == "4x8x8"
    with open(run / "init.csv", newline="") as handle:
        init_rows = list(csv.DictReader(handle))
    assert [r["name"] for r in init_rows] == [name for name, _ in net.named_parameters()]
    assert init_rows[0]["scheme"] == "kaiming_normal"
    assert json.loads((run / "data.json").read_text()) == data.describe()
    (hparams,) = sink.logged
    assert hparams["params"]["total"] == sum(p.numel() for p in net.parameters()) == table.total_params
    assert hparams["init_applied"]["scheme"] == "kaiming_normal" and hparams["config"] == {"model": {"name": "tiny"}}
    assert hparams["data"]["num_classes"] == 3 and "classes" not in hparams["data"]
    assert [layer["layer"] for layer in hparams["layers"]] == [r["layer"] for r in table.rows]

    trainer.callback_metrics = {"val/top1": torch.tensor(0.5), "val/loss": torch.tensor(1.25), "train/loss": torch.tensor(2.0)}
    records.on_fit_end(trainer, module)
    after_fit = json.loads((run / "metrics.json").read_text())
    assert {k: v for k, v in after_fit.items() if not k.endswith("_minutes")} == {
        "val/top1": 0.5, "val/loss": 1.25, "val/top1_best": 0.625, "epochs": 3, "params": table.total_params}
    trainer.callback_metrics = {"test/top1": torch.tensor(0.75)}
    records.on_test_end(trainer, module)
    final = json.loads((run / "metrics.json").read_text())
    assert final == records.metrics and final["test/top1"] == 0.75 and final["val/top1_best"] == 0.625
    assert final["run_minutes"] >= final["fit_minutes"] >= 0


class TinyClassifier(L.LightningModule):
    """Logs its accuracy under a name of its own: the records must not care."""

    def __init__(self):
        super().__init__()
        self.model = build_model(SPEC)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.model(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val/top1", 0.5)

    def test_step(self, batch, batch_idx):
        self.log("test/top1", 0.75)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    data = torch.utils.data.TensorDataset(torch.randn(64, 3, 8, 8), torch.randint(0, 2, (64,)))
    return torch.utils.data.DataLoader(data, batch_size=8)


def test_records_plot_titled_curves_and_mark_the_monitored_test_score(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("convzoo.training.records.plot_curves", lambda csv, output, **kwargs: calls.append((output, kwargs)))
    config = {"model": {"name": "tiny"}, "data": {"batch_size": 8},
              "optimizer": {"_target_": "torch.optim.SGD", "lr": 0.1}, "trainer": {"max_epochs": 2}}
    records = RunRecords(tmp_path, config=config)
    best = L.pytorch.callbacks.ModelCheckpoint(tmp_path / "checkpoints", monitor="val/top1", mode="max")
    trainer = L.Trainer(max_epochs=2, callbacks=[best, records], logger=L.pytorch.loggers.CSVLogger(tmp_path, "csv", ""),
                        enable_progress_bar=False, default_root_dir=tmp_path, accumulate_grad_batches=2)
    module = TinyClassifier()
    trainer.fit(module, _loader(), _loader())
    trainer.test(module, _loader())
    (output, after_fit), (_, after_test) = calls
    assert output == tmp_path / "curves.png" and after_fit["test_score"] is None and after_test["test_score"] == 0.75
    assert after_test["monitor"] == "val/top1" and after_test["mode"] == "max"
    params = format_count(sum(p.numel() for p in module.model.parameters()))
    assert after_fit["title"] == f"tiny on data, {params} parameters\nSGD lr 0.1, constant lr, batch 8, 2 epochs"
    assert after_fit["steps_per_epoch"] == 4  # 8 batches, an optimizer step every 2
    assert records.metrics["val/top1_best"] == 0.5 and records.metrics["test/top1"] == 0.75
    assert "config" in (tmp_path / "csv" / "hparams.yaml").read_text()
