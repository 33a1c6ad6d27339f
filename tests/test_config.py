"""convzoo.config: the configs' own resolvers."""

import pytest
import torch

from convzoo.config import compose


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(True, False, "bf16-mixed"), (False, True, "bf16-mixed"),
                                                        (False, False, "32-true")])
def test_cpu_trainer_takes_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compose([]).trainer.precision == expected
    assert compose(["experiment=airbench94"]).trainer.precision == expected  # accelerator: auto, no GPU


def test_a_gpu_trainer_keeps_bf16(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert compose(["trainer=gpu"]).trainer.precision == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compose(["experiment=airbench94"]).trainer.precision == "bf16-mixed"


def test_a_precision_on_the_command_line_wins():
    assert compose(["trainer.precision=bf16-mixed"]).trainer.precision == "bf16-mixed"


def test_a_gpu_preset_moved_to_such_a_cpu_trains_in_fp32(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert compose(["experiment=convmixer_cifar10", "trainer.accelerator=cpu"]).trainer.precision == "32-true"
    assert compose(["trainer=ddp", "trainer.accelerator=cpu"]).trainer.precision == "32-true"
