"""Export a network to ONNX, ``torch.export`` (.pt2) or TorchScript, and check the artifact against it.

Every exporter is torch's own: ``torch.onnx.export(dynamo=True)`` (the ``torch.export``-based
exporter; the legacy TorchScript-based one cannot express the asymmetric padding of even-kernel
"same" convs), ``torch.export.export`` and ``torch.jit.trace`` (a [`GraphNet`][convzoo.network.nets.GraphNet]'s
dict-based ``forward`` cannot be scripted; tracing records the fixed plan it runs). The batch
dimension is dynamic in all three. The artifact carries [`DeployInfo`][convzoo.deploy.checkpoint.DeployInfo]
(input size, mean/std, class names): as ONNX metadata properties, one JSON value per key, or as
the extra file ``convzoo.json`` inside a .pt2 or TorchScript archive; [`read_metadata`][convzoo.deploy.export.read_metadata]
reads either.

Parity ([`check_parity`][convzoo.deploy.export.check_parity]): the eager network and the artifact, loaded back from disk (with
onnxruntime for ONNX), run the same seeded random batch of a size the exporter did not see; the
largest absolute difference over all outputs must stay within ``PARITY_ATOL + PARITY_RTOL *
max|eager output|``.

Why that tolerance, in fp32: a float32 carries 24 significant bits (unit roundoff u = 6e-8). An
artifact computes the same sums with other kernels and in another order (onnxruntime's MLAS
convolutions, batch norm folded into the conv weights, reductions re-associated), which moves
each result by a few u relative to the magnitudes summed. Over dot products of K <= ~5,000 terms
and a few dozen layers such rounding differences accumulate to about sqrt(K) * u * depth, ~1e-5 of
the output scale; ``PARITY_RTOL = 1e-4`` leaves a 10x margin over that, and ``PARITY_ATOL = 1e-5``
covers outputs near zero. An export bug (a padding off by one pixel, training-mode batch norm,
a dropped layer) moves outputs by percents of their scale: 100x above the bound. Measured on the
shipped configs and examples (``benchmarks/export_parity.py``): ONNX within 4e-6 of the output
scale (the U-Net; most within 1e-6), torch.export and TorchScript bit-identical (same kernels).

Examples:
    >>> import tempfile
    >>> from convzoo import build_model
    >>> from convzoo.deploy import deploy_info
    >>> net = build_model({"in_channels": 3, "num_classes": 10, "layers": [
    ...     {"block": "conv_norm_act", "out_channels": 8}, {"block": "classifier"}]})
    >>> path = export_model(net, tempfile.mkdtemp() + "/net.pt2", "export", deploy_info(net))
    >>> parity = check_parity(net, path, "export")
    >>> parity.ok, parity.max_abs_diff, read_metadata(path).input_size
    (True, 0.0, (32, 32))
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import pickle
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from convzoo.deploy.checkpoint import DeployInfo
from convzoo.errors import ConfigError, ExportError, MissingExtraError, at, one_line
from convzoo.network.nets import ConvNet
from convzoo.network.weights import load_failure

__all__ = [
    "EXPORT_FORMATS", "PARITY_ATOL", "PARITY_RTOL", "ExportError", "MissingExtraError", "Parity",
    "check_parity", "export_model", "load_exported", "read_metadata",
]

EXPORT_FORMATS = {"onnx": ".onnx", "export": ".pt2", "torchscript": ".pt"}
"""Format -> file suffix."""
PARITY_RTOL = 1e-4
"""Parity's relative tolerance: times the largest eager output (see the module docstring)."""
PARITY_ATOL = 1e-5
"""Parity's absolute tolerance (see the module docstring)."""
EXAMPLE_BATCH = 2
"""The exporters trace a batch of 2: torch.export specialises sizes 0 and 1, so 2 keeps the batch symbolic."""
CHECK_BATCH = 3
"""Parity runs a batch of 3, a size the exporter never saw: a batch size baked into the graph fails."""
INPUT_NAME = "images"
METADATA_FILE = "convzoo.json"
#: ONNX files are protobufs, limited to 2 GB; bigger models keep their weights in a side file.
_ONNX_INLINE_LIMIT = 1.8e9
_ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


def require_onnx() -> None:
    """Fail with the install command when the ``export`` extra is missing."""
    missing = []
    for package in _ONNX_PACKAGES:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise MissingExtraError(
            f"ONNX export and checking need {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: pip install 'convzoo[export]' (or pip install {' '.join(_ONNX_PACKAGES)})."
        )


def _check_format(fmt: str) -> str:
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format {fmt!r} is not known; use one of {', '.join(EXPORT_FORMATS)}.")
    return fmt


def _example(net: ConvNet, batch: int, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    # normalised images are roughly standard normal per channel
    return torch.randn(batch, net.in_channels, *net.input_size, generator=generator)


@contextlib.contextmanager
def _torchscript() -> Iterator[None]:
    # torch marks TorchScript deprecated in favour of torch.export (the deploy guide says so); the format
    # stays for runtimes that only load TorchScript (LibTorch in C++, older mobile runtimes).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)
        yield


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Every ``torch.load`` inside stays weights-only. ``torch.export.load`` retries a pickle of the
    archive that a weights-only load refused with ``weights_only=False``, which would run whatever the
    file names; torch's own switch, ``TORCH_FORCE_WEIGHTS_ONLY_LOAD``, overrides that retry."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")  # torch refuses both set at once
    saved = {name: os.environ.pop(name, None) for name in names}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _fp32_on_cpu(net: ConvNet) -> ConvNet:
    """``net`` itself when it is float32 on the CPU, else such a copy: artifacts are written and
    checked in fp32 from the CPU (ONNX is device-free; a .pt2 or TorchScript module moves with ``.to``)."""
    tensors = [*net.parameters(), *net.buffers()]
    if all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors):
        return net
    return copy.deepcopy(net).cpu().float()


def _as_list(y: Tensor | dict[str, Tensor] | Sequence[Tensor]) -> list[Tensor]:
    """A network's or an artifact's result as its list of outputs (a multi-output dict is in ``outputs`` order)."""
    if isinstance(y, dict):
        return list(y.values())
    return [y] if isinstance(y, Tensor) else list(y)


def export_model(net: ConvNet, path: str | os.PathLike, fmt: str, info: DeployInfo) -> Path:
    """Write ``net`` (in eval mode, fp32, on the CPU) as a ``fmt`` artifact carrying ``info``.

    Args:
        net: a network built by convzoo (it reports ``in_channels``, ``input_size``, ``outputs``).
        path: the file to write (its folder is created).
        fmt: ``onnx``, ``export`` (torch.export, .pt2) or ``torchscript``.
        info: what the artifact's users need to feed it ([`convzoo.deploy.deploy_info`][convzoo.deploy.checkpoint.deploy_info]).

    Raises:
        MissingExtraError: ONNX without the ``export`` extra installed.
        ExportError: the exporter failed (its exception chained).
    """
    _check_format(fmt)
    if fmt == "onnx":
        require_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _fp32_on_cpu(net)
    was_training = net.training
    net.eval()
    example = (_example(net, EXAMPLE_BATCH),)
    batch = {0: torch.export.Dim("batch")}
    metadata = info.to_json()
    try:
        if fmt == "onnx":
            program = torch.onnx.export(net, example, dynamo=True, dynamic_shapes=(batch,), input_names=[INPUT_NAME],
                                        output_names=list(net.outputs), verbose=False)
            # one key per field, each a JSON value: runtimes read metadata props as strings
            program.model.metadata_props.update({key: json.dumps(value) for key, value in info.to_dict().items()})
            size = sum(p.numel() * p.element_size() for p in net.parameters())
            program.save(path, external_data=size > _ONNX_INLINE_LIMIT)
        elif fmt == "export":
            program = torch.export.export(net, example, dynamic_shapes=(batch,))
            torch.export.save(program, path, extra_files={METADATA_FILE: metadata})
        else:
            with _torchscript():
                traced = torch.jit.trace(net, example, strict=False, check_trace=False)
                torch.jit.save(traced, path, _extra_files={METADATA_FILE: metadata})
    except Exception as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"exporting {info.name!r} to {fmt} failed: {type(error).__name__}: {first}") from error
    finally:
        net.train(was_training)
    return path


_AGAIN = "export it again with python -m convzoo export, or pass the run's checkpoint (.ckpt)"


@contextlib.contextmanager
def _reading(path: str, fmt: str) -> Iterator[None]:
    """Whatever a reader raises on a file from elsewhere (not written by [`export_model`][convzoo.deploy.export.export_model], or damaged since),
    as one [`ConfigError`][convzoo.errors.ConfigError] naming the file. A .pt2 or .pt is a zip archive: anything else is refused before
    torch's reader logs a traceback of its own."""
    if fmt != "onnx" and not zipfile.is_zipfile(path):
        raise ConfigError(f"{path!r} is not a {EXPORT_FORMATS[fmt]} artifact (not a zip archive: truncated, or another "
                          f"kind of file); {_AGAIN}.")
    try:
        yield
    except ConfigError:
        raise
    except pickle.UnpicklingError as error:  # a .pt2 whose pickle names code: a weights-only load refused it
        raise ConfigError(load_failure(repr(path), error, f"{_AGAIN[0].upper()}{_AGAIN[1:]}.", kind=f"{EXPORT_FORMATS[fmt]} artifact")) from None
    except Exception as error:  # each runtime has its own errors (DecodeError, BadZipFile, RuntimeError, ...)
        first = one_line(str(error).split(". ")[0])
        raise ConfigError(f"{path!r} cannot be read as a {EXPORT_FORMATS[fmt]} artifact ({type(error).__name__}: "
                          f"{first}); {_AGAIN}.") from None


def load_exported(path: str | os.PathLike, fmt: str) -> Callable[[Tensor], list[Tensor]]:
    """The artifact at ``path`` as a function from a CPU batch to the list of its outputs."""
    _check_format(fmt)
    path = os.fspath(path)
    if fmt == "onnx":
        require_onnx()
        import onnxruntime

        with _reading(path, fmt):
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return lambda x: [torch.from_numpy(y) for y in session.run(None, {INPUT_NAME: x.numpy()})]
    with _reading(path, fmt):
        if fmt == "export":
            with _weights_only_loads():
                module = torch.export.load(path).module()
        else:
            with _torchscript():
                module = torch.jit.load(path, map_location="cpu")

    return lambda x: _as_list(module(x))


def format_of(path: str | os.PathLike) -> str:
    """The format an artifact's suffix says (``.onnx``, ``.pt2``, ``.pt``)."""
    suffix = Path(path).suffix
    for fmt, known in EXPORT_FORMATS.items():
        if suffix == known:
            return fmt
    raise at(repr(str(path)), f"cannot tell the format from the suffix {suffix!r}; "
                              f"use {', '.join(EXPORT_FORMATS.values())}.")


def _json_or_text(value: str) -> object:
    """A metadata value: convzoo's are JSON; another tool's may be plain text (kept, and ignored by DeployInfo)."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def read_metadata(path: str | os.PathLike) -> DeployInfo:
    """The [`DeployInfo`][convzoo.deploy.checkpoint.DeployInfo] an artifact written by [`export_model`][convzoo.deploy.export.export_model] carries.

    A file that is not such an artifact (another tool's, a damaged copy, a missing or broken record)
    raises one [`ConfigError`][convzoo.errors.ConfigError] naming it.
    """
    fmt, name = format_of(path), os.fspath(path)
    with _reading(name, fmt):
        if fmt == "onnx":
            import onnx

            metadata = onnx.load(name, load_external_data=False).metadata_props
            record = {p.key: _json_or_text(p.value) for p in metadata} if metadata else None
        else:
            extra = {METADATA_FILE: ""}
            if fmt == "export":
                with _weights_only_loads():
                    torch.export.load(name, extra_files=extra)
            else:
                with _torchscript():
                    torch.jit.load(name, map_location="cpu", _extra_files=extra)
            record = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else None
    if record is None:
        raise ConfigError(f"{name!r} carries no {METADATA_FILE}: it was not written by convzoo's export, so the input "
                          f"size, normalisation and class names are unknown; {_AGAIN}.")
    try:
        return DeployInfo.from_dict(record)
    except (ValueError, TypeError, AttributeError) as error:  # a record that is not a mapping of the fields
        raise at(repr(name), f"{one_line(error).rstrip('.')}; {_AGAIN}.") from None


@dataclass(frozen=True)
class Parity:
    """Eager network vs artifact on one random batch: max |difference| per output, and the verdict.

    Attributes:
        fmt: the artifact's format (``onnx``, ``export``, ``torchscript``).
        batch: the batch size it was checked at.
        diffs: output name -> max absolute difference (inf: the shape differs).
        scale: max |eager output| over all outputs.
        tolerance: the largest difference allowed (``PARITY_ATOL + PARITY_RTOL * scale``).
        error: why the artifact could not run the batch (``None``: it ran).
    """

    fmt: str
    batch: int
    diffs: dict[str, float]
    scale: float
    tolerance: float
    error: str | None = None

    @property
    def max_abs_diff(self) -> float:
        """The largest difference over all outputs (inf when there are none)."""
        return max(self.diffs.values()) if self.diffs else float("inf")

    @property
    def ok(self) -> bool:
        """The artifact ran and every difference is within the tolerance (a NaN output fails)."""
        return self.error is None and self.max_abs_diff <= self.tolerance  # NaN compares False: a NaN output fails

    def __str__(self) -> str:
        if self.error is not None:
            return f"parity on a random batch of {self.batch}: the {self.fmt} artifact failed to run it: {self.error}: MISMATCH"
        per_output = "" if len(self.diffs) == 1 else " (" + ", ".join(f"{k} {v:.2g}" for k, v in self.diffs.items()) + ")"
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"parity on a random batch of {self.batch}: max |eager - {self.fmt}| = {self.max_abs_diff:.3g}"
                f"{per_output}; output scale {self.scale:.3g}, tolerance {self.tolerance:.3g} "
                f"({PARITY_ATOL:g} + {PARITY_RTOL:g} x scale): {verdict}")


def check_parity(net: ConvNet, path: str | os.PathLike, fmt: str, batch: int = CHECK_BATCH, seed: int = 1) -> Parity:
    """Run ``net`` (eval mode, fp32, CPU) and the artifact at ``path`` on the same seeded random batch.

    An output of another shape counts as an infinite difference; an artifact that cannot run the
    batch at all (a batch size frozen into its graph, say) fails with its error in ``Parity.error``.
    """
    net = _fp32_on_cpu(net)
    x = _example(net, batch, seed)
    artifact = load_exported(path, fmt)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            expected = _as_list(net(x))
    finally:
        net.train(was_training)
    scale = max(y.abs().max().item() for y in expected)
    tolerance = PARITY_ATOL + PARITY_RTOL * scale
    try:
        with torch.no_grad():
            got = artifact(x)
    except Exception as error:  # whatever the runtime raises: the verdict is "does not work"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return Parity(fmt, batch, {}, scale, tolerance, error=f"{type(error).__name__}: {first}")
    diffs = {}
    for index, name in enumerate(net.outputs):
        if index >= len(got) or got[index].shape != expected[index].shape:
            diffs[name] = float("inf")
        else:
            diffs[name] = (got[index].float() - expected[index]).abs().max().item()
    return Parity(fmt, batch, diffs, scale, tolerance)
