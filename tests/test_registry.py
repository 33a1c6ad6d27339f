import textwrap

import pytest
from torch import nn

from convzoo import BLOCKS, ConfigError, Registry, build_block, register_block
from convzoo.registry import ACTIVATIONS, ARGUMENT_RANGES, NORMS, POOLS, fits_annotation


def test_register_get_build_and_aliases():
    things = Registry("thing")

    @things.register("box", "crate")
    def box(size: int, color: str = "red"):
        return (size, color)

    assert things.names() == ["box"] and "crate" in things and "nope" not in things
    assert things.get("crate") is box
    assert things.build({"thing": "crate", "size": 2}) == (2, "red")
    assert things.build("box", size=1, color="blue") == (1, "blue")


def test_resolve_fills_defaults_and_names_where_every_error_came_from():
    things = Registry("thing")

    @things.register("box", "crate")
    def box(size: int, color: str = "red"):
        if size < 0:
            raise ConfigError(f"size must be >= 0; got {size}")
        return (size, color)

    resolved = things.resolve({"thing": "crate", "size": 2}, where="cfg.thing", color="blue")
    assert (resolved.name, resolved.args, resolved.built) == ("box", {"size": 2, "color": "blue"}, (2, "blue"))
    assert things.resolve({"thing": "box", "size": 1, "color": "green"}, color="blue").args["color"] == "green"
    assert things.build({"thing": "box", "size": 1, "color": "green"}, color="blue") == (1, "blue")
    with pytest.raises(ConfigError, match=r"^cfg\.thing: size must be >= 0; got -1$"):
        things.resolve({"thing": "box", "size": -1}, where="cfg.thing")
    with pytest.raises(ConfigError, match=r"^cfg\.thing: thing 'box' got an unknown argument 'lenght'\. "
                                          r"Did you mean 'length'\? It accepts: size, color, length\.$"):
        things.resolve({"thing": "box", "size": 1, "lenght": 3}, where="cfg.thing", also_accepted=["length"])
    with pytest.raises(ConfigError, match=r"^cfg\.thing: thing config \{'size': 1\} has no 'thing' key"):
        things.resolve({"size": 1}, where="cfg.thing")
    with pytest.raises(ConfigError, match=r"^cfg\.thing: a thing is a name or a mapping with a 'thing' key; got 3\.$"):
        things.resolve(3, where="cfg.thing")


def test_registering_a_taken_name_needs_override():
    things = Registry("thing")
    things.register("a")(lambda: 1)
    with pytest.raises(ConfigError, match="already registered.*override=True"):
        things.register("a")(lambda: 2)
    things.register("a", override=True)(lambda: 3)
    assert things.get("a")() == 3


def test_unknown_name_names_registry_and_suggests_closest():
    with pytest.raises(ConfigError) as error:
        BLOCKS.get("convmixr")
    message = str(error.value)
    assert "Unknown block 'convmixr'" in message and "Did you mean 'convmixer'" in message
    assert "Registered blocks:" in message


def test_build_reports_unknown_and_missing_arguments():
    with pytest.raises(ConfigError, match=r"unknown argument 'kernal_size'\. Did you mean 'kernel_size'"):
        build_block({"block": "conv", "kernal_size": 3}, in_channels=3)
    with pytest.raises(ConfigError, match="missing required argument.*out_channels"):
        build_block({"block": "patch_embed"}, in_channels=3)


def test_builtin_blocks_are_registered_and_report_out_channels():
    expected = {"conv", "conv_norm_act", "separable", "patch_embed", "convmixer", "pool", "classifier"}
    assert expected <= set(BLOCKS.names())
    for name in ["conv", "conv_norm_act", "separable", "patch_embed"]:
        assert build_block({"block": name, "out_channels": 8}, in_channels=8).out_channels == 8
    assert build_block({"block": "pool"}, in_channels=8).out_channels == 8
    assert build_block({"block": "convmixer"}, in_channels=8).out_channels == 8
    assert build_block({"block": "classifier", "num_classes": 3}, in_channels=8).out_channels == 3


def test_register_block_from_another_project():
    @register_block("test_double")
    class Double(nn.Module):
        def __init__(self, in_channels: int):
            super().__init__()
            self.out_channels = in_channels

        def forward(self, x):
            return 2 * x

    assert isinstance(build_block({"block": "test_double"}, in_channels=4), Double)


def test_a_block_that_cannot_take_in_channels_is_refused_when_registered():
    with pytest.raises(ConfigError, match=r"^block 'test_no_inputs' \(.*NoInputs\) must accept in_channels: every block "
                                          r"is built with in_channels\. Add in_channels to its signature\.$"):
        @register_block("test_no_inputs")
        class NoInputs(nn.Module):
            def __init__(self, out_channels: int):
                super().__init__()
                self.out_channels = out_channels

    assert "test_no_inputs" not in BLOCKS
    register_block("test_open_ended")(lambda **arguments: nn.Identity())  # **kwargs takes in_channels too
    assert "test_open_ended" in BLOCKS


def test_entry_point_blocks_load_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "ep_blocks.py").write_text(textwrap.dedent("""
        from torch import nn
        from convzoo import register_block

        @register_block("test_entry_point_block")
        class Block(nn.Identity):
            def __init__(self, in_channels: int):
                super().__init__()
                self.out_channels = in_channels
    """))
    dist = tmp_path / "ep_blocks-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-blocks\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[convzoo.blocks]\nep = ep_blocks\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(BLOCKS, "_entries", dict(BLOCKS._entries))
    monkeypatch.setattr(BLOCKS, "_entry_points_loaded", False)
    assert "test_entry_point_block" in BLOCKS


@pytest.mark.parametrize("run", ["first", "second"])
def test_each_test_starts_from_a_clean_registry(run):
    assert "test_left_behind" not in BLOCKS  # the second run would find the first run's entry without the fixture
    register_block("test_left_behind")(nn.Identity)


def _out_of_range_values(accepted):
    """A value just below ``accepted`` and, where it has a top, one above it."""
    below = accepted.low if accepted.low_open else accepted.low - 1
    return [below] + ([accepted.high + 1] if accepted.high is not None else [])


RANGED = [
    pytest.param(table, name, argument, id=f"{table.kind}-{name}-{argument}")
    for table in (BLOCKS, NORMS, POOLS, ACTIVATIONS)
    for name in table.names()
    for argument in table.signature(name).parameters
    if argument in ARGUMENT_RANGES
]


def test_every_ranged_argument_of_a_builtin_is_covered():
    covered = {argument for _, _, argument in (p.values for p in RANGED)}
    assert covered == set(ARGUMENT_RANGES), set(ARGUMENT_RANGES) - covered  # no rule for an argument nothing takes


@pytest.mark.parametrize("table, name, argument", RANGED)
def test_a_value_the_type_allows_but_no_layer_can_use_is_refused_by_its_name(table, name, argument):
    accepted = ARGUMENT_RANGES[argument]
    for value in _out_of_range_values(accepted):
        wants_int = fits_annotation(1, table.annotation(name, argument)) and not fits_annotation(0.5, table.annotation(name, argument))
        value = int(value) if wants_int else float(value)
        params = table.signature(name).parameters
        required = {p: 8 for p, param in params.items() if param.default is param.empty and p != argument}
        with pytest.raises(ConfigError, match=rf"{argument}={value!r} is out of range; it must be {accepted}") as info:
            table.check_call(name, {**required, argument: value})
        assert info.value.argument == argument


@pytest.mark.parametrize("layer, words", [
    ({"block": "pool", "pool_size": 64}, "pool_size=64 is larger than the 32x32 input: it must be from 1 to 32"),
    ({"block": "pool", "pool": "avg", "pool_size": 40, "padding": 2},
     "pool_size=40 is larger than the 32x32 input padded by 2: it must be from 1 to 36"),
    ({"block": "conv", "out_channels": 8, "kernel_size": 41, "padding": 4},
     "kernel_size=41 is larger than the 32x32 input padded by 4: it must be from 1 to 40"),
])
def test_a_window_larger_than_its_input_is_refused_with_the_accepted_range(layer, words):
    from convzoo import build_model

    with pytest.raises(ConfigError, match="layers\\[0\\]") as info:
        build_model({"num_classes": 10, "input_size": 32, "layers": [layer, {"block": "classifier"}]})
    assert words in str(info.value)
