"""Model specs: a YAML file, dict or OmegaConf node -> a checked spec and its graph of layers.

A spec is a mapping (every key but ``layers`` optional):

```yaml
name: resnet_stage        # a label for logs
in_channels: 3            # image channels
num_classes: 10           # given to every block whose signature takes num_classes
input_size: 32            # int or [H, W]: the size the meta-device check runs at
width_multiplier: 1.0     # scales every out_channels (rounded to channel_divisor)
depth_multiplier: 1.0     # scales every explicit repeat (rounded up)
channel_divisor: 1
imports: [my_project.blocks]           # modules imported first, so their blocks can be named
block_defaults: {norm: batchnorm, act: relu}   # given to every block that takes the key,
                                               # unless the layer sets it
layers:
  - {name: stem, block: conv_norm_act, out_channels: 16}
  - {name: down, block: conv_norm_act, out_channels: 32, stride: 2,
     residual: {block: conv_norm_act, kernel_size: 1, act: none}}   # projection shortcut
  - {name: side, block: pool, from: stem, pool: avg}
  - {name: merged, block: concat, from: [down, side]}              # in_channels [32, 16]
  - {name: head, block: classifier}
outputs: [head]           # default: the last layer; several -> forward returns a dict
```

Layer keys besides the block's own arguments:

- ``name``: the submodule name, and how other layers refer to this one (default: its index,
  which cannot be referred to: layers are referenced by name, never by position).
- ``from``: the layer(s) it reads, by name; ``input`` is the network input. Default: the
  previous layer. Several names give the block ``in_channels`` as a list and the tensors as
  positional arguments, in that order.
- ``repeat``: stacked copies (each reading the previous one); ``first: {...}`` gives the first
  copy different arguments (``first: {stride: 2}`` makes a repeated layer a ResNet stage).
- ``residual``: ``true`` adds the identity (``x + block(x)``); a block spec or a list of them is the
  shortcut path, built where the block changes the shape (its ``in_channels``, ``out_channels``
  and ``stride`` inferred from the measured shapes unless given) and the identity elsewhere.

Any other top-level key is a variable for interpolation (``dim: 256`` with ``out_channels:
${...dim}``; three dots: the layer, the list, then the spec) and must be used by one: an
unknown, unused key is a typo and fails with the closest valid keys. Two resolvers serve model
families: [`calc`][convzoo.specs.calc.calc] (``${calc:16 * ${...widen}}``) and [`lookup`][convzoo.specs.calc.lookup] (a row of a table).

Examples:
    >>> spec = load_spec({"num_classes": 10, "dim": 8, "layers": [
    ...     {"name": "stem", "block": "conv", "out_channels": "${...dim}"},
    ...     {"block": "classifier"}]})
    >>> spec["layers"][0]["out_channels"], "dim" in spec, spec["input_size"]
    (8, False, [32, 32])
    >>> [(layer.name, layer.inputs) for layer in parse_layers(spec)]
    [('stem', ('input',)), ('1', ('stem',))]
"""


from convzoo.specs.calc import calc, lookup
from convzoo.specs.parse import SPEC_KEYS, interpolation_sources, load_spec, read_spec_file, upgrade_legacy_spec
from convzoo.specs.resolve import INPUT, LAYER_KEYS, BlockCall, Layer, LayerGraph, parse_layers, resolve

__all__ = [
    "INPUT", "LAYER_KEYS", "SPEC_KEYS", "BlockCall", "Layer", "LayerGraph", "calc", "interpolation_sources", "load_spec", "lookup",
    "parse_layers", "read_spec_file", "resolve", "upgrade_legacy_spec",
]
