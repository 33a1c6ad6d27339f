"""The one argument checker (convzoo.arguments.check_arguments), as the registry and the config checks name
arguments, and errors.at, the one way an error is named by where it is."""

from typing import Literal

import pytest

from convzoo.arguments import Naming, Range, builder_signature, check_arguments, target_signature
from convzoo.errors import CheckpointError, ConfigError, about, at
from convzoo.registry import Registry


def box(size: int, color: str = "red", kernel_size: int = 3):
    return (size, color, kernel_size)


class Parent:
    def __init__(self, depth: int = 1, mode: Literal["fast", "slow"] = "fast"):
        pass


class Child(Parent):
    def __init__(self, width: int, **kwargs):
        super().__init__(**kwargs)


AS_ENTRY = Naming("thing 'box'")
AS_KEY = Naming("Child", key="cfg.child")


@pytest.mark.parametrize("arguments, naming, words, about_argument", [
    ({"size": 1, "colour": "x"}, AS_ENTRY,
     "thing 'box' got an unknown argument 'colour'. Did you mean 'color'? It accepts: size, color, kernel_size.",
     "colour"),
    ({"color": "x"}, AS_ENTRY, "thing 'box' is missing required argument(s) size. It accepts: size, color, kernel_size.",
     None),
    ({"size": "big"}, AS_ENTRY, "thing 'box': size='big' has the wrong type (str); it must be int.", "size"),
    ({"size": 1, "kernel_size": 0}, AS_ENTRY, "thing 'box': kernel_size=0 is out of range; it must be >= 1.",
     "kernel_size"),
    ({"size": 1, "colour": "x"}, Naming("box", key="cfg.box"),
     "cfg.box.colour is not an argument of box. Did you mean 'color'? It accepts: size, color, kernel_size.", "colour"),
    ({"color": "x"}, Naming("box", key="cfg.box"), "cfg.box is missing the required argument(s) size of box.", None),
    ({"size": "big"}, Naming("box", key="cfg.box"), "cfg.box.size='big' has the wrong type (str); it must be int.",
     "size"),
])
def test_each_naming_says_the_same_problems_its_own_way(arguments, naming, words, about_argument):
    with pytest.raises(ConfigError) as info:
        check_arguments(builder_signature(box), arguments, naming)
    assert (str(info.value), info.value.argument) == (words, about_argument)


def test_partial_skips_only_the_required_arguments():
    check_arguments(builder_signature(box), {"color": "blue"}, AS_ENTRY, partial=True)
    with pytest.raises(ConfigError, match="unknown argument 'colr'"):
        check_arguments(builder_signature(box), {"colr": "blue"}, AS_ENTRY, partial=True)
    with pytest.raises(ConfigError, match="kernel_size=-1 is out of range"):
        check_arguments(builder_signature(box), {"kernel_size": -1}, AS_ENTRY, partial=True)


def test_also_accepted_names_are_suggested_and_listed_but_not_taken():
    with pytest.raises(ConfigError, match=r"unknown argument 'lenght'\. Did you mean 'length'\? "
                                          r"It accepts: size, color, kernel_size, length\.$"):
        check_arguments(builder_signature(box), {"size": 1, "lenght": 2}, AS_ENTRY, also_accepted=["length"])


def test_supplied_arguments_are_neither_required_nor_settable():
    check_arguments(builder_signature(box), {"color": "x"}, AS_KEY, supplied=["size"])
    with pytest.raises(ConfigError, match=r"^cfg\.child\.size is set by convzoo itself; remove it from the config\.$"):
        check_arguments(builder_signature(box), {"size": 1}, AS_KEY, supplied=["size"])


def test_ranges_are_the_callers_table():
    check_arguments(builder_signature(box), {"size": 1, "kernel_size": 0}, AS_KEY, ranges={})
    with pytest.raises(ConfigError, match=r"^cfg\.child\.size=0 is out of range; it must be from 1 to 4\.$"):
        check_arguments(builder_signature(box), {"size": 0}, AS_KEY, ranges={"size": Range(1, 4)})


def test_open_ended_builders_take_any_name_but_their_own_are_still_checked():
    signature = target_signature(Child)  # **kwargs followed up to Parent
    assert list(signature[0]) == ["width", "depth", "mode"] and not signature[2]
    check_arguments(signature, {"width": 2, "depth": 3}, AS_KEY)
    with pytest.raises(ConfigError, match=r"^cfg\.child\.mode='fats' is not one of 'fast', 'slow'\. Did you mean 'fast'\?$"):
        check_arguments(signature, {"width": 2, "mode": "fats"}, AS_KEY)
    with pytest.raises(ConfigError, match="cfg.child.speed is not an argument of Child"):
        check_arguments(signature, {"width": 2, "speed": 3}, AS_KEY)
    own = builder_signature(Child)  # a registry entry's **kwargs are its own
    assert own[2]
    check_arguments(own, {"width": 2, "speed": 3}, AS_ENTRY)
    with pytest.raises(ConfigError, match="width='2' has the wrong type"):
        check_arguments(own, {"width": "2"}, AS_ENTRY)


def test_values_judged_later_are_not_type_checked():
    node = {"_target_": "some.Class"}
    check_arguments(builder_signature(box), {"size": node}, AS_KEY, judged_later=lambda v: isinstance(v, dict))
    with pytest.raises(ConfigError, match="has the wrong type"):
        check_arguments(builder_signature(box), {"size": node}, AS_KEY)


def test_the_registry_checks_with_it_and_names_where_once():
    things = Registry("thing")
    things.register("box")(box)
    things.check_call("box", {"color": "x"}, where="cfg.thing", partial=True)
    with pytest.raises(ConfigError, match=r"^cfg\.thing: thing 'box' is missing required argument\(s\) size\."):
        things.check_call("box", {"color": "x"}, where="cfg.thing")
    with pytest.raises(ConfigError, match=r"^cfg\.thing: thing 'box': kernel_size=0 is out of range") as info:
        things.check_call("box", {"kernel_size": 0}, where="cfg.thing: ", partial=True)
    assert info.value.argument == "kernel_size"


def test_at_names_where_once_and_keeps_the_error_kind_and_what_it_is_about():
    error = at("model.layers[1]", about(CheckpointError("kernel_size=0 is bad."), "kernel_size", 1))
    assert (type(error), str(error), error.argument, error.layer) == (
        CheckpointError, "model.layers[1]: kernel_size=0 is bad.", "kernel_size", 1)
    assert at("model.layers[1]", error) is error
    for named in ("data.batch_size=0 ...", "data: ...", "data[0] ...", "data=x ..."):
        assert str(at("data", named)) == named
    assert str(at("init", "init scheme 'normal' ...")) == "init: init scheme 'normal' ..."  # a word, not the key
    assert str(at("", "plain")) == "plain" and isinstance(at("", "plain"), ConfigError)
