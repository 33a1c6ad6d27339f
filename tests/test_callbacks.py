import lightning as L
import torch
from torch import nn

from convzoo.callbacks import Lookahead, ThroughputProgressBar, plot_curves


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


def test_throughput_bar_logs_images_per_second(tmp_path):
    bar = ThroughputProgressBar()
    trainer = L.Trainer(max_epochs=1, callbacks=[bar], logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(TinyRegression(), _loader())
    assert trainer.callback_metrics["train/images_per_s"] > 0


def test_plot_curves_reads_a_csv_log(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/loss_epoch,train/acc,val/loss,val/acc\n"
                   "0,10,2.0,0.3,,\n0,10,,,1.9,0.35\n1,20,1.5,0.5,,\n1,20,,,1.4,0.55\n")
    out = plot_curves(log, tmp_path / "curves.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
