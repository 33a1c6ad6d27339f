import torch
from torch import nn

from convzoo import build_model
from convzoo.summary import summary


def test_summary_rows_match_the_model():
    model = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        {"block": "conv_norm_act", "out_channels": 8, "name": "stem"},               # 3x3: RF 3
        {"block": "pool", "pool": "max"},                                            # 2x2/2: RF 4, jump 2
        {"block": "conv", "out_channels": 16, "kernel_size": 3, "dilation": 2},      # RF 4 + 2*2*2 = 12
        {"block": "classifier"},
    ]})
    table = summary(model)
    assert [r["layer"] for r in table.rows] == ["layers.stem", "layers.1", "layers.2", "layers.3"]
    assert [r["block"] for r in table.rows] == ["conv_norm_act", "pool", "conv", "classifier"]
    assert [r["output_shape"] for r in table.rows] == [(8, 32, 32), (8, 16, 16), (16, 16, 16), (10,)]
    assert [r["receptive_field"] for r in table.rows] == [3, 4, 12, "global"]
    assert table.total_params == sum(p.numel() for p in model.parameters())
    # Conv FLOPs by hand: 2 * MACs; 3x3 conv 3->8 at 32x32, dilated 3x3 conv 8->16 at 16x16 (+ head).
    assert table.rows[0]["flops"] == 2 * 3 * 8 * 9 * 32 * 32
    assert table.rows[2]["flops"] == 2 * 8 * 16 * 9 * 16 * 16
    assert table.rows[3]["flops"] == 2 * 16 * 10
    assert table.totals["macs"] == table.total_flops // 2


def test_summary_counts_frozen_parameters_and_prints_a_table():
    model = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        {"block": "patch_embed", "out_channels": 16, "patch_size": 4},
        {"block": "convmixer", "kernel_size": 3, "repeat": 2},
        {"block": "classifier"},
    ]})
    for p in model.layers[0].parameters():
        p.requires_grad_(False)
    table = summary(model)
    frozen = sum(p.numel() for p in model.layers[0].parameters())
    assert table.total_params - table.trainable_params == frozen
    assert [r["layer"] for r in table.rows] == ["layers.0", "layers.1.0", "layers.1.1", "layers.2"]
    assert [r["receptive_field"] for r in table.rows[:3]] == [4, 12, 20]
    text = str(table)
    assert "layers.1.1" in text and "convmixer" in text and f"{table.total_params:,}" in text
    assert model.training  # summary restores the mode it found


def test_summary_of_any_module():
    net = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 16, 16))
    table = summary(net, input_size=(3, 16, 16))
    assert table.rows[0]["output_shape"] == (4, 6, 6) and table.rows[0]["receptive_field"] == 5
