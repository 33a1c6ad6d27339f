"""The non-finite-loss guard: a diverging run stops within N steps and keeps its last good checkpoint."""

import pytest
import torch
from faults import PoisonWeights
from torch.overrides import TorchFunctionMode

from convzoo.config import compose
from convzoo.training.divergence import NonFiniteLossGuard
from convzoo.errors import NonFiniteLossError
from convzoo.training import train

# 64 training images in batches of 16: 4 steps per epoch; a step checkpoint every 2 steps.
RUN = ["data=synthetic", "model=convmixer_tiny", "model.dim=16", "model.depth=1", "data.num_train=96",
       "data.val_size=32", "data.num_test=32", "data.batch_size=16", "trainer.max_epochs=3",
       "callbacks.step_checkpoint.every_n_train_steps=2", "callbacks.nonfinite_loss.check_every_n_steps=3"]


@pytest.mark.slow
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    poison = "+callbacks.poison={_target_:faults.PoisonWeights,step:5}"  # after step 5 (epoch 1, batch 0): NaN weights
    with pytest.raises(NonFiniteLossError) as info:
        train(compose([*RUN, poison, f"paths.output_dir={tmp_path}"]))
    message = str(info.value)
    assert "became nan at epoch 1, step 6 (batch 1 of the epoch)" in message and "learning rate" in message
    assert "optimizer.lr" in message and f"{tmp_path / 'checkpoints' / 'last.ckpt'}" in message
    assert PoisonWeights.last_step_seen - 5 <= 3  # stopped within check_every_n_steps of the first bad loss
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4  # the step-6 checkpoint was refused: its weights were NaN
    assert all(torch.isfinite(value).all() for value in checkpoint["state_dict"].values() if value.is_floating_point())


class HostReads(TorchFunctionMode):
    """Counts the tensor calls that make the host wait for the device (``.item()``, ``.cpu()``, ``bool()``...)."""

    READS = {torch.Tensor.item, torch.Tensor.cpu, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
             torch.Tensor.numpy}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.count += func in self.READS
        return func(*args, **(kwargs or {}))


class FakeTrainer:
    current_epoch, global_step = 0, 0
    optimizers = [torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)]
    checkpoint_callbacks = []

    class strategy:  # noqa: N801 - stands in for trainer.strategy
        @staticmethod
        def reduce_boolean_decision(decision, all=True):
            return decision


def test_the_guard_reads_the_losses_once_per_check_not_per_step():
    guard, trainer = NonFiniteLossGuard(check_every_n_steps=10), FakeTrainer()
    with HostReads() as reads:
        for step in range(9):
            trainer.global_step = step + 1
            guard.on_train_batch_start(trainer, None, None, step)
            guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(2.0 - step / 10)}, None, step)
    assert reads.count == 0  # nine steps, no host-device wait
    trainer.global_step = 10
    with HostReads() as reads, pytest.raises(NonFiniteLossError, match="became inf at epoch 0, step 10"):
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(float("inf"))}, None, 9)
    assert reads.count >= 1  # the check copies the ten losses to the host together
