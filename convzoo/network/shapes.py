"""Inferring shapes, the third stage of the build pipeline: on PyTorch's ``meta`` device, where no
memory is allocated and shapes still propagate, every block copy is built and run once, in order.

A bad spec fails here, naming the layer, the block, the shapes and the fix; the measured shapes
fill in what the spec leaves out (a shortcut's channels and stride). The result, per layer, is the
settled arguments of each copy, from which the real network is built, and each layer's output shape.
This is the only place modules run to check a spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from convzoo.blocks.residual import Residual
from convzoo.errors import ConfigError, about, at
from convzoo.specs.resolve import INPUT, BlockCall, Layer, LayerGraph

__all__ = ["Node", "infer_shapes"]


#: The meta-device pass runs a batch of two, so batch norm in training mode accepts 1x1 maps.
_CHECK_BATCH = 2


def _shapes(xs: Sequence[torch.Tensor]) -> str:
    return " and ".join(str(tuple(x.shape[1:])) for x in xs)


def _in_channels(where: str, args: Mapping[str, Any], xs: Sequence[torch.Tensor], source: str) -> int | list[int]:
    channels = [int(x.shape[1]) for x in xs]
    inferred: int | list[int] = channels[0] if len(channels) == 1 else channels
    given = args.get("in_channels", inferred)
    if given != inferred:
        raise ConfigError(
            f"{where}: in_channels={given} but {source} {inferred} channels; drop in_channels from the spec "
            f"(it is inferred) or fix the earlier layer's out_channels."
        )
    return inferred


def _build(where: str, builder: Callable[..., nn.Module], args: dict[str, Any]) -> nn.Module:
    """One block on the meta device, from its arguments (checked against its signature when the spec was resolved)."""
    try:
        module = builder(**args)
    except ConfigError as error:  # the block's own check of a value: name the layer
        raise at(where, error) from None
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(f"{where}: building it with {args} failed: {error}") from error
    if not isinstance(getattr(module, "out_channels", None), int):
        raise ConfigError(
            f"{where}: {type(module).__name__} has no integer `out_channels` attribute; every block must report "
            f"its output channels so the next layer can be built."
        )
    return module


#: Arguments that are a spatial window, in any block: each must fit inside its (padded) input.
_WINDOWS = ("kernel_size", "pool_size", "patch_size")


def _window_too_large(args: Mapping[str, Any], xs: Sequence[torch.Tensor]) -> tuple[str | None, str]:
    """The window argument the block was given that is larger than its padded input, and the accepted range."""
    padding = args.get("padding") or 0
    if len(xs) != 1 or xs[0].dim() != 4 or not isinstance(padding, int):
        return None, ""  # "same" (or inferred) padding fits any window
    height, width = xs[0].shape[2:]
    limit = min(height, width) + 2 * padding
    padded = f" padded by {padding}" if padding else ""
    for name in _WINDOWS:
        window = args.get(name)
        if isinstance(window, int) and window > limit:
            return name, (f"{name}={window} is larger than the {height}x{width} input{padded}: "
                          f"it must be from 1 to {limit}")
    return None, ""


def _run(where: str, module: nn.Module, xs: Sequence[torch.Tensor],
         args: Mapping[str, Any] | None = None) -> torch.Tensor:
    """Run a block (built with ``args``) on meta tensors: shape problems become ConfigErrors; a bug keeps its
    traceback."""
    try:
        y = module(*xs)
    except ConfigError as error:
        raise at(where, error) from None
    except NotImplementedError as error:
        _add_note(error, f"while running {where} on the meta device (convzoo checks shapes there before building)")
        raise
    except (RuntimeError, ValueError) as error:  # what torch raises for shapes that do not fit
        window, too_large = _window_too_large(args or {}, xs)
        fix = ("inputs merged by one layer must agree in height and width (and in channels for add): resize one "
               "with upsample or pool, or fix the strides" if len(xs) > 1 else too_large or
               "check the earlier layers' strides, kernels and padding or the spec's input_size")
        noun = "inputs of shapes" if len(xs) > 1 else "its input of shape"
        raise about(ConfigError(
            f"{where}: cannot run on {noun} {_shapes(xs)} (channels, height, width): {error}. Fix: {fix}."
        ), window) from None
    except Exception as error:  # a bug in the block itself: show it as one, with the layer named
        _add_note(error, f"while running {where} on inputs of shape {_shapes(xs)}")
        raise
    if not isinstance(y, torch.Tensor):
        raise ConfigError(f"{where}: forward returned {type(y).__name__}; a block must return one tensor.")
    if y.dim() == 4 and min(y.shape[2:]) < 1:
        raise ConfigError(
            f"{where}: output would be {y.shape[2]}x{y.shape[3]} for a {_shapes(xs)} input; it must be at least 1x1 "
            f"(reduce the stride/kernel or raise input_size)."
        )
    return y


def _add_note(error: BaseException, note: str) -> None:
    if hasattr(error, "add_note"):  # Python >= 3.11
        error.add_note(note)


def _residual(where: str, layer: Layer, x: torch.Tensor, y: torch.Tensor) -> tuple[tuple[BlockCall, ...], torch.Tensor]:
    """The skip path of one copy: the identity where ``block`` keeps the shape, else the shortcut blocks."""
    if y.shape == x.shape:
        return (), x + y
    if not layer.shortcut:
        raise ConfigError(
            f"{where}: residual needs a shape-preserving block, but it maps {tuple(x.shape[1:])} to "
            f"{tuple(y.shape[1:])}; drop `residual: true`, keep out_channels/stride unchanged, or give the skip "
            f"its own blocks: residual: {{block: conv_norm_act, kernel_size: 1, act: none}}."
        )
    if x.dim() != 4 or y.dim() != 4 or y.shape[2] > x.shape[2] or y.shape[3] > x.shape[3]:
        raise ConfigError(f"{where}: cannot infer a shortcut from {tuple(x.shape[1:])} to {tuple(y.shape[1:])}; "
                          f"give the shortcut blocks' stride and out_channels explicitly.")
    stride = math.ceil(x.shape[2] / y.shape[2])
    skip, channels, specs, stride_set = x, int(x.shape[1]), [], False
    for i, entry in enumerate(layer.shortcut):
        args = dict(entry.args)
        if "out_channels" in entry.accepts:
            args.setdefault("out_channels", int(y.shape[1]))
        if "stride" in entry.accepts and not stride_set:
            args.setdefault("stride", stride)
            stride_set = True
        args["in_channels"] = channels
        part = f"{where} residual[{i}] (block {entry.block!r})"
        module = _build(part, entry.builder, args)
        skip = _run(part, module, [skip], args)
        channels = module.out_channels
        specs.append(replace(entry, args=args))
    if skip.shape != y.shape:
        raise ConfigError(
            f"{where}: the shortcut gives {tuple(skip.shape[1:])} but the block gives {tuple(y.shape[1:])}; "
            f"they must match to be added. Give the shortcut blocks out_channels/stride that reproduce the block's "
            f"output (the inferred stride was {stride})."
        )
    return tuple(specs), skip + y


@dataclass(frozen=True)
class Node:
    """One block copy as shape inference settled it: where it lives, what it reads, the call it is built
    from and how summaries name it.

    [`construct`][convzoo.network.shapes.Node.construct] builds the real module from it (the build stage), and the
    network keeps the records in ``nodes``.

    Attributes:
        path: submodule path in the network, e.g. ``layers.stage2.0``.
        layer: the spec layer's name.
        label: how summaries show the copy: its block, ``residual(...)`` when wrapped, or a module's class name.
        inputs: the layers (or earlier copies) it reads; ``input`` is the network input.
        call: the block and its arguments as settled, ``in_channels`` included (``None`` in a summary's rows
            for a module convzoo did not build).
        shortcut: ``None``: no residual; ``()``: the identity; else the shortcut's calls, their arguments settled.

    Examples:
        >>> from convzoo import build_model
        >>> net = build_model({"in_channels": 3, "layers": [{"block": "conv", "out_channels": 8, "repeat": 2}]})
        >>> [(node.path, node.inputs, node.call.args["in_channels"]) for node in net.nodes]
        [('layers.0.0', ('input',), 3), ('layers.0.1', ('0.0',), 8)]
    """

    path: str
    layer: str
    label: str
    inputs: tuple[str, ...]
    call: BlockCall | None = field(default=None, repr=False, compare=False)
    shortcut: tuple[BlockCall, ...] | None = field(default=None, repr=False, compare=False)

    def construct(self) -> nn.Module:
        """The copy's module (wrapped with its skip path when residual), built from the settled call."""
        module = self.call.builder(**self.call.args)
        if self.shortcut is None:
            return module
        parts = [part.builder(**part.args) for part in self.shortcut]
        return Residual(module, (parts[0] if len(parts) == 1 else nn.Sequential(*parts)) if parts else None)


def _label(block: str, shortcut: tuple[BlockCall, ...] | None) -> str:
    if shortcut is None:
        return block
    if not shortcut:
        return f"residual({block})"
    return f"residual({block}, shortcut={'+'.join(s.block for s in shortcut)})"


def infer_shapes(graph: LayerGraph) -> tuple[dict[str, list[Node]], dict[str, torch.Size]]:
    """Build and run every block copy on meta tensors (call it under ``torch.device("meta")``): each layer's copies
    as [`Node`][convzoo.network.shapes.Node] records, their arguments settled, and each layer's output shape.

    A spec that does not fit together fails here with one [`ConfigError`][convzoo.errors.ConfigError] naming the layer, the
    shapes and the fix; [`build_model`][convzoo.network.build.build_model] leads it with the key the user wrote
    ([`LayerGraph.named`][convzoo.specs.resolve.LayerGraph.named]).
    """
    values = {INPUT: torch.empty(_CHECK_BATCH, graph.spec["in_channels"], *graph.spec["input_size"])}
    settled: dict[str, list[Node]] = {}
    previous = INPUT
    for layer in graph.layers:
        xs = [values[name] for name in layer.inputs]
        source = ("the previous layer gives" if layer.inputs == (previous,) else
                  f"{', '.join(map(repr, layer.inputs))} give" if len(layer.inputs) > 1 else f"{layer.inputs[0]!r} gives")
        copies = []
        for copy in range(layer.repeat):
            where = layer.where(copy)
            args = dict(layer.copy_call(copy).args)
            args["in_channels"] = _in_channels(where, args, xs, source if copy == 0 else "the previous copy gives")
            call = replace(layer.call, args=args)
            try:
                y = _run(where, _build(where, call.builder, args), xs, args)
            except ConfigError as error:
                raise about(error, layer=layer.index) from None
            shortcut = None
            if layer.shortcut is not None:
                shortcut, y = _residual(where, layer, xs[0], y)
            copies.append(Node(path=f"layers.{layer.name}" + (f".{copy}" if layer.repeat > 1 else ""), layer=layer.name,
                               label=_label(layer.block, shortcut),
                               inputs=layer.inputs if copy == 0 else (f"{layer.name}.{copy - 1}",),
                               call=call, shortcut=shortcut))
            xs = [y]
        settled[layer.name] = copies
        values[layer.name] = xs[0]
        previous = layer.name
    return settled, {name: value.shape[1:] for name, value in values.items()}
