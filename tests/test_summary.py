import torch
from torch import nn

from convzoo import build_model, create_model
from convzoo.config import config_dir
from convzoo.network.summary import summary


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


def test_receptive_fields_multiply_the_jump_through_every_stride():
    # resnet_cifar-20: a 3x3 stem, then 3 stages of 3 basic blocks (two 3x3 convs each); stages 2 and 3
    # start with stride 2. Each 3x3 conv adds 2 x jump; the jump doubles at each strided conv: 1, 2, 4.
    rows = summary(create_model("resnet_cifar", depth=20)).rows
    stem = 3
    stage1 = [stem + 4 * k for k in (1, 2, 3)]                               # jump 1: +4 a block
    stage2 = [stage1[-1] + 2 * 1 + 2 * 2, *(stage1[-1] + 6 + 8 * k for k in (1, 2))]  # s2 conv at jump 1, then jump 2
    stage3 = [stage2[-1] + 2 * 2 + 2 * 4, *(stage2[-1] + 12 + 16 * k for k in (1, 2))]
    assert [r["receptive_field"] for r in rows] == [stem, *stage1, *stage2, *stage3, "global"]
    assert stage3[-1] == 81


def test_receptive_fields_of_airbench_with_three_pools():
    # 2x2 whitening conv, then per group: 3x3 conv, 2x2/2 max-pool, 3x3 conv; jumps 1 -> 2 -> 4 -> 8
    rows = summary(build_model(config_dir() / "model" / "airbench.yaml")).rows
    whiten = 2
    group1 = [whiten + 2 * 1 + 1 * 1, whiten + 2 + 1 + 2 * 2]                 # 5, 9
    group2 = [group1[-1] + 2 * 2 + 1 * 2, group1[-1] + 6 + 2 * 4]             # 15, 23
    group3 = [group2[-1] + 2 * 4 + 1 * 4, group2[-1] + 12 + 2 * 8]            # 35, 51
    assert [r["receptive_field"] for r in rows] == [whiten, *group1, *group2, *group3, "global"]


def test_receptive_fields_through_merges_take_the_widest_input_and_keep_its_jump():
    model = build_model({"in_channels": 3, "num_classes": 10, "layers": [
        {"name": "a", "block": "conv", "out_channels": 8, "kernel_size": 3, "stride": 2, "from": "input"},  # 3, jump 2
        {"name": "b", "block": "conv", "out_channels": 8, "kernel_size": 5, "stride": 2, "padding": 2,
         "from": "input"},                                                                # 5, jump 2
        {"name": "sum", "block": "add", "from": ["a", "b"]},                            # max(3, 5) = 5
        {"name": "c", "block": "conv", "out_channels": 8, "kernel_size": 3},            # 5 + 2 * 2 = 9
        {"name": "d", "block": "pool"},                                                  # 9 + 1 * 2 = 11, jump 4
        {"name": "up", "block": "upsample", "scale_factor": 2},                          # 11, jump back to 2
        {"name": "cat", "block": "concat", "from": ["up", "a"]},                         # max(11, 3) = 11
        {"name": "e", "block": "conv", "out_channels": 8, "kernel_size": 3},            # 11 + 2 * 2 = 15
        {"name": "head", "block": "classifier"},
    ]})
    assert [r["receptive_field"] for r in summary(model).rows] == [3, 5, 5, 9, 11, 11, 11, 15, "global"]
