"""Weight transfer: copy every tensor whose name and shape match from a checkpoint into a network.

Fine-tuning starts here: a CIFAR-10 run's weights into the same network with a 100-class head
copies everything but the head, whose shape differs; [`load_weights`][convzoo.network.weights.load_weights] says exactly that.
Layers are named in the spec (``layers.<name>...``), so inserting a layer shifts no other name.

Examples:
    >>> from convzoo import build_model, load_weights
    >>> spec = {"in_channels": 3, "layers": [
    ...     {"name": "stem", "block": "conv_norm_act", "out_channels": 8},
    ...     {"name": "head", "block": "classifier"}]}
    >>> cifar10 = build_model({**spec, "num_classes": 10})
    >>> cifar100 = build_model({**spec, "num_classes": 100})
    >>> transfer = load_weights(cifar100, cifar10.state_dict())
    >>> transfer.transferred[:2], list(transfer.skipped)
    (['layers.stem.conv.weight', 'layers.stem.norm.weight'], ['layers.head.fc.weight', 'layers.head.fc.bias'])
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from convzoo.errors import ConfigError, one_line

__all__ = ["WeightSource", "WeightTransfer", "check_imports_allowed", "load_failure", "load_weights", "read_checkpoint_file",
           "read_checkpoint_spec", "read_state_dict"]

log = logging.getLogger("convzoo.weights")  # the name it has always logged under

WeightSource = Union[str, os.PathLike, Mapping[str, Any], nn.Module]
"""What [`load_weights`][convzoo.network.weights.load_weights] reads: a checkpoint file (convzoo/Lightning ``.ckpt`` or a saved state
dict), a loaded checkpoint or state dict, or a module."""


@dataclass
class WeightTransfer:
    """What [`load_weights`][convzoo.network.weights.load_weights] did. Names are the target network's (``layers.stem.conv.weight``).

    ``prefix`` is what the source's names carry in front of the network's (``model.`` in a
    convzoo checkpoint, whose LightningModule holds the network as ``model``). ``str()`` gives the
    report [`load_weights`][convzoo.network.weights.load_weights] logs.

    Attributes:
        source: what the tensors came from (a file path, or the kind of object).
        prefix: what the source's names carry in front of the network's (``""``: none).
        transferred: the tensors copied.
        missing: in the network, not in the source: they keep the values they had.
        unexpected: in the source (its own names), with no place in the network.
        skipped: name -> (source shape, network shape): present in both, not copied.
        source_names: the source name of every transferred tensor.

    Examples:
        >>> from torch import nn
        >>> from convzoo import load_weights
        >>> report = load_weights(nn.Linear(4, 3), nn.Linear(4, 2).state_dict())
        >>> report.transferred, report.skipped, report.missing
        ([], {'weight': ((2, 4), (3, 4)), 'bias': ((2,), (3,))}, [])
    """

    source: str
    prefix: str = ""
    transferred: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    source_names: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        prefix = f" (names under {self.prefix!r})" if self.prefix else ""
        lines = [f"weights from {self.source}{prefix}: {len(self.transferred)} tensors transferred, "
                 f"{len(self.skipped)} skipped for a shape mismatch, {len(self.missing)} missing, "
                 f"{len(self.unexpected)} unexpected"]
        lines += [f"  skipped {name}: {tuple(a)} in the source, {tuple(b)} in the network"
                  for name, (a, b) in self.skipped.items()]
        for title, names in (("missing", self.missing), ("unexpected", self.unexpected)):
            if names:
                lines.append(f"  {title}: {_shorten(names)}")
        return "\n".join(lines)


def _shorten(names: list[str], limit: int = 8) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def read_checkpoint_file(path: str | os.PathLike, described: str, fix: str,
                         error: type[ConfigError] = ConfigError, weights_only: bool = True,
                         trusted: str = "") -> Mapping[str, Any]:
    """Load a checkpoint or state-dict file as data, on the CPU: ``torch.load(weights_only=True)``, so
    tensors and plain containers only, and a file cannot run code when loaded. A missing, unreadable or
    non-mapping file, or one that pickles anything else (a function, a class), raises ``error`` in one
    line: ``described`` (how the caller names the file: ``ckpt_path=...``), what is wrong, then ``fix``.

    ``weights_only=False`` unpickles whatever the file holds, which runs any code it names: only for a
    file from a source the caller trusts, and only when the caller asked for it by name. ``trusted``
    says how to ask (``load_model(path, weights_only=False)``); it ends the message of a refused file.

    Examples:
        >>> read_checkpoint_file("nowhere.ckpt", "ckpt_path=nowhere.ckpt", "Give a run's last.ckpt.")
        Traceback (most recent call last):
        convzoo.errors.ConfigError: ckpt_path=nowhere.ckpt does not exist. Give a run's last.ckpt.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        nearby = sorted(p.name for p in path.parent.glob("*.ckpt")) if path.parent.is_dir() else []
        hint = f" {path.parent} holds: {', '.join(nearby)}." if nearby else ""
        raise error(f"{described} does not exist.{hint} {fix}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as failure:  # a refused global, a truncated zip, a text file: unusable either way
        raise error(load_failure(described, failure, fix, trusted)) from None
    if not isinstance(loaded, Mapping):
        raise error(f"{described} holds a {type(loaded).__name__}, not a checkpoint or a state dict. {fix}")
    return loaded


#: How torch names what a weights-only load refused: ``Unsupported global: GLOBAL io.open was not ...``.
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")
#: torch's messages bold some words for a terminal (``\x1b[1m``); a one-line error keeps the words only.
_TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")


def load_failure(described: str, failure: Exception, fix: str, trusted: str = "", kind: str = "PyTorch checkpoint") -> str:
    """One line on why torch could not load a file: what a weights-only load refused (the file
    pickles a function or class, so loading it could run code; ``trusted`` says how to opt in), or
    that it is unreadable (``kind``: what it should have been). ``described`` names the file.

    Examples:
        >>> load_failure("'a.pt'", EOFError("Ran out of input"), "Pass a state dict.")
        "'a.pt' is not a readable PyTorch checkpoint (EOFError: Ran out of input): truncated, or another kind of file. Pass a state dict."
    """
    refused = _REFUSED_GLOBAL.search(str(failure)) if isinstance(failure, pickle.UnpicklingError) else None
    if refused:
        return (f"{described} pickles {refused.group(1)}, which is not a tensor or a plain value: loading it could run "
                f"code, so it is refused (convzoo loads files with weights_only=True). {fix}"
                + (f" {trusted}" if trusted else ""))
    reason = "".join(c for c in _TERMINAL_STYLE.sub("", one_line(failure)) if c.isprintable())[:160]
    return f"{described} is not a readable {kind} ({type(failure).__name__}: {reason}): truncated, or another kind of file. {fix}"


def read_state_dict(source: WeightSource) -> tuple[dict[str, Tensor], str]:
    """The tensors of ``source`` by name, and how to name the source in messages.

    Examples:
        >>> tensors, name = read_state_dict({"state_dict": {"model.w": torch.zeros(2)}, "epoch": 3})
        >>> list(tensors), name
        (['model.w'], 'a Lightning checkpoint')
    """
    if isinstance(source, nn.Module):
        return dict(source.state_dict()), f"a {type(source).__name__}"
    if isinstance(source, (str, os.PathLike)) and Path(source).suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:  # tensors only: a safetensors file cannot run code
            return load_file(os.fspath(source)), f"{source} (safetensors)"
        except (OSError, SafetensorError) as error:
            raise ConfigError(f"weights file {str(source)!r} cannot be read as safetensors ({error}).") from None
    if isinstance(source, (str, os.PathLike)):
        loaded = read_checkpoint_file(
            source, f"weights file {str(source)!r}",
            fix="Pass a checkpoint (.ckpt), a saved state dict or a .safetensors file.",
            trusted="If you trust the file and its source, pass torch.load(path, weights_only=False) instead of the "
                    "path: that runs what the file pickles.")
        path = Path(source)
        tensors, kind = read_state_dict(loaded)
        return tensors, f"{path} ({kind})"
    if isinstance(source, Mapping):
        kind = "a state dict"
        if isinstance(source.get("state_dict"), Mapping):  # a Lightning checkpoint (convzoo's included)
            source, kind = source["state_dict"], "a Lightning checkpoint"
        tensors = {str(k): v for k, v in source.items() if isinstance(v, Tensor)}
        if not tensors:
            raise ConfigError(f"{kind} with no tensors (keys: {_shorten([str(k) for k in source])}); "
                              f"pass a checkpoint, a state dict or a module.")
        return tensors, kind
    raise ConfigError(f"cannot read weights from a {type(source).__name__}; pass a checkpoint path, a state dict or a module.")


def _common_prefix(source: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> str:
    """The prefix that, stripped from the source's names, matches the most of the network's.

    Every dotted prefix of every source name is a candidate (``""``, ``model.``, ``model.net.``);
    ties go to the shortest, so a state dict saved from the network itself needs no stripping.
    """
    votes: Counter[str] = Counter()
    for name in source:
        parts = name.split(".")
        for cut in range(len(parts)):
            prefix = ".".join(parts[:cut]) + ("." if cut else "")
            if name[len(prefix):] in target:
                votes[prefix] += 1
    if not votes:
        return ""
    best = max(votes.values())
    return min((p for p, n in votes.items() if n == best), key=len)


def load_weights(net: nn.Module, source: WeightSource, strict: bool = False) -> WeightTransfer:
    """Copy into ``net`` every tensor of ``source`` whose name and shape match; report the rest.

    Parameters and buffers (batch-norm statistics) alike; values are cast to the network's dtype
    and keep its device and memory layout. The names may carry a prefix in the source (a
    LightningModule's ``model.``), found by matching; tensors outside it are the wrapper's own and
    are left out of the report. With ``strict=True`` anything missing,
    unexpected or of another shape is an error and nothing is copied; otherwise those tensors keep
    their values. The report is also logged (logger ``convzoo.weights``: INFO, or WARNING when
    nothing was transferred).

    Args:
        net: the network to fill, in place.
        source: a checkpoint path (a convzoo or Lightning ``.ckpt``, a ``torch.save``-d state dict,
            or a ``.safetensors`` file), a loaded checkpoint, a state dict, or a module.
        strict: require an exact match of names and shapes.

    Returns:
        a [`WeightTransfer`][convzoo.network.weights.WeightTransfer]: transferred, missing, unexpected, and skipped (shape mismatch).

    Raises:
        ConfigError: the source cannot be read; with ``strict``, any mismatch (all listed).

    Examples:
        >>> import torch
        >>> from convzoo import build_model
        >>> spec = {"in_channels": 3, "num_classes": 10, "layers": [
        ...     {"name": "stem", "block": "conv", "out_channels": 8}, {"name": "head", "block": "classifier"}]}
        >>> trained, fresh = build_model(spec), build_model(spec)
        >>> report = load_weights(fresh, {"model." + name: t for name, t in trained.state_dict().items()})
        >>> report.prefix, len(report.transferred), torch.equal(fresh.layers.stem.weight, trained.layers.stem.weight)
        ('model.', 4, True)
    """
    tensors, where = read_state_dict(source)
    target = net.state_dict()
    prefix = _common_prefix(tensors, target)
    report = WeightTransfer(source=where, prefix=prefix)
    for name, value in tensors.items():
        if not name.startswith(prefix):
            continue  # the wrapper's own state (a LightningModule's metrics), not the network's
        own = name[len(prefix):]
        if own not in target:
            report.unexpected.append(name)
        elif value.shape != target[own].shape:
            report.skipped[own] = (tuple(value.shape), tuple(target[own].shape))
        else:
            report.transferred.append(own)
            report.source_names[own] = name
    placed = set(report.transferred) | set(report.skipped)
    report.missing = [name for name in target if name not in placed]
    if strict and (report.missing or report.unexpected or report.skipped):
        raise ConfigError(f"load_weights(strict=True): the source does not fit the network exactly.\n{report}\n"
                          f"Fix: load the checkpoint into the network it was trained with, or pass strict=False "
                          f"to copy the tensors that fit.")
    with torch.no_grad():
        for name in report.transferred:
            # state_dict() tensors share storage with the parameters and buffers: copy_ fills those
            target[name].copy_(tensors[report.source_names[name]])
    if report.transferred:
        log.info("%s", report)
    else:
        log.warning("%s\nNothing was transferred: the source's tensor names share nothing with the network's.", report)
    return report


def check_imports_allowed(spec: Mapping[str, Any], source: str, allow_imports: bool) -> None:
    """Refuse a spec that came from a file (a checkpoint) and names modules not imported yet in ``imports:``.

    Importing a module runs its code, so a downloaded checkpoint must not choose what gets imported:
    its modules are imported only with ``allow_imports=True``, or when the caller imported them
    already (then building imports nothing). A spec the caller wrote is theirs: build it directly.

    Args:
        spec: the model spec (its ``imports`` key is read).
        source: where the spec came from, named in the error (``"checkpoint 'a.ckpt'"``).
        allow_imports: the caller trusts the source: any module may be imported.

    Raises:
        ConfigError: the spec imports modules not imported yet and ``allow_imports`` is false.

    Examples:
        >>> check_imports_allowed({"imports": ["math"]}, "checkpoint 'a.ckpt'", allow_imports=False)  # imported already
        >>> check_imports_allowed({"imports": ["my_blocks"]}, "checkpoint 'a.ckpt'", allow_imports=False)
        Traceback (most recent call last):
        convzoo.errors.ConfigError: checkpoint 'a.ckpt': its model spec imports my_blocks (imports:), and importing a module runs its code. If you trust it, import it yourself first or pass allow_imports=True (--allow-imports on the command line).
    """
    modules = spec.get("imports") or []
    modules = [modules] if isinstance(modules, str) else [str(m) for m in modules]
    new = [module for module in modules if module not in sys.modules]
    if new and not allow_imports:
        them = "them" if len(new) > 1 else "it"
        raise ConfigError(
            f"{source}: its model spec imports {', '.join(new)} (imports:), and importing a module runs its code. "
            f"If you trust {them}, import {them} yourself first or pass allow_imports=True (--allow-imports on the "
            f"command line)."
        )


def read_checkpoint_spec(path: str | os.PathLike, described: str, weights_only: bool = True, allow_imports: bool = False,
                         trusted: str = "") -> tuple[Mapping[str, Any], dict[str, Any]]:
    """A convzoo checkpoint file and the model spec it was trained with: the one path every loader takes.

    The file is read as data ([`read_checkpoint_file`][convzoo.network.weights.read_checkpoint_file]), its
    ``hyper_parameters['model']`` brought to today's spec form (``upgrade_legacy_spec``), and the modules the
    spec imports allowed only as [`check_imports_allowed`][convzoo.network.weights.check_imports_allowed] says.

    Args:
        path: the checkpoint.
        described: how the caller names the file in errors (``"checkpoint 'a.ckpt'"``).
        weights_only: read it as data (``False`` unpickles anything: a file the caller trusts).
        allow_imports: the caller trusts the spec's ``imports:``.
        trusted: how to ask for ``weights_only=False`` with the caller's API, ending a refusal.

    Returns:
        The checkpoint (a mapping) and the upgraded spec.

    Raises:
        ConfigError: unreadable, not a convzoo checkpoint (no model spec), or imports not allowed.

    Examples:
        >>> import tempfile, torch
        >>> path = tempfile.mktemp(suffix=".ckpt")
        >>> torch.save({"state_dict": {}, "hyper_parameters": {"model": {"layers": [{"block": "conv",
        ...            "out_channels": 4}]}}}, path)
        >>> read_checkpoint_spec(path, "checkpoint")[1]["layers"]
        [{'block': 'conv', 'out_channels': 4}]
    """
    from convzoo.specs.parse import upgrade_legacy_spec

    checkpoint = read_checkpoint_file(path, described, weights_only=weights_only,
                                      fix="Pass a run's checkpoints/best.ckpt or last.ckpt.", trusted=trusted)
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or "model" not in hparams:
        raise ConfigError(f"{str(path)!r} is not a convzoo checkpoint: it has no hyper_parameters['model'] (the model "
                          f"spec); train with train.py, or build the network yourself and use convzoo.load_weights.")
    spec = upgrade_legacy_spec(hparams["model"])
    check_imports_allowed(spec, described, allow_imports)
    return checkpoint, spec
