"""convzoo's C++ CPU training kernels: compiled on first use, loaded through ctypes, each behind a switch.

The sources in ``convzoo/ops/csrc/`` have a plain C ABI and no torch headers, so each compiles in about a
second with the system's C++ compiler (``torch.utils.cpp_extension`` drives it and caches the result).
Where no compiler is found the kernel is ``None`` and its users keep torch's path, with one warning.
Each kernel family has a [`Switch`][convzoo.ops.kernels.Switch], so a run or a benchmark can turn it off.

Examples:
    >>> switch = Switch("an example")
    >>> with switch(False):
    ...     bool(switch)
    False
    >>> bool(switch)
    True
"""

# No "from __future__ import annotations": TorchScript resolves annotations of the modules using these at runtime.
import ctypes
import functools
import hashlib
import logging
import platform
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from convzoo.errors import one_line

__all__ = ["Switch", "capturing_graph", "load"]

SOURCES = Path(__file__).parent / "csrc"


class Switch:
    """A process-wide on/off setting; calling it gives a ``with`` block that sets it there only.

    ``bool(switch)`` says whether it is on. Setting ``enabled`` turns it on or off for the rest of
    the process.

    Args:
        what: what the switch turns on, for ``repr``.
        enabled: its initial state.

    Attributes:
        what: what the switch turns on.
        enabled: whether it is on.

    Examples:
        >>> switch = Switch("an example")
        >>> with switch(False):
        ...     bool(switch)
        False
        >>> switch.enabled = False; switch
        Switch('an example', enabled=False)
    """

    def __init__(self, what: str, enabled: bool = True):
        self.what = what
        self.enabled = enabled

    def __bool__(self) -> bool:
        return self.enabled

    @contextmanager
    def __call__(self, enabled: bool = True) -> Iterator[None]:
        """Set the switch inside a ``with`` block, restoring it after.

        Args:
            enabled: its state inside the block.
        """
        previous, self.enabled = self.enabled, bool(enabled)
        try:
            yield
        finally:
            self.enabled = previous

    def __repr__(self) -> str:
        return f"Switch({self.what!r}, enabled={self.enabled})"


def capturing_graph() -> bool:
    """Whether torch is tracing, compiling or exporting: then every fast path steps aside, so that
    what is captured is torch's own ops (and exports as before)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def _cpu_tag() -> str:
    """A short hash of this CPU's feature flags: the kernels are built with -march=native, so a
    home directory shared by different machines must not hand one machine's build to another."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        flags = platform.processor() + platform.machine()
    return hashlib.sha1(flags.encode()).hexdigest()[:10]


COMPILE_FLAGS = ("-O3", "-march=native", "-fopenmp")
"""How every kernel is compiled (``benchmarks/norm_act_kernel.py`` builds an earlier revision's the same way)."""


def build(name: str, source: Path, cflags: tuple[str, ...] = COMPILE_FLAGS,
          build_directory: str | None = None) -> ctypes.CDLL:
    """``source`` compiled as the extension ``name`` (in torch's cache, or ``build_directory``) and
    loaded; raises if it cannot be built."""
    from torch.utils import cpp_extension

    path = cpp_extension.load(name=name, sources=[str(source)], is_python_module=False, extra_cflags=list(cflags),
                              extra_ldflags=["-fopenmp"], build_directory=build_directory, verbose=False)
    return ctypes.CDLL(path)


def declare(library: ctypes.CDLL, signatures: tuple[tuple[str, tuple], ...]) -> ctypes.CDLL:
    """``library`` with each ``(function, argtypes)`` declared, returning nothing."""
    for name, argtypes in signatures:
        function = getattr(library, name)
        function.restype = None
        function.argtypes = list(argtypes)
    return library


def _failure_marker(name: str, source: Path) -> Path:
    """Where a failed build of ``name`` is remembered: one file per kernel version (its source and
    flags) in torch's extension cache, so a process does not pay for the same failed build again,
    and a new kernel, other flags or another CPU (``name`` holds the CPU tag) are built afresh."""
    import os

    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()  # where torch builds
    version = hashlib.sha1(source.read_bytes() + " ".join(COMPILE_FLAGS).encode()).hexdigest()[:10]
    return Path(root) / "convzoo-failed-builds" / f"{name}-{version}.txt"


@contextmanager
def _quiet_build_log() -> Iterator[None]:
    """torch's extension builder logs a "no CUDA runtime" notice on every build; silence it there only."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(previous)


_INSTALL = "Install a C++ compiler (g++ or clang++) and ninja (pip install ninja) to enable it"


@functools.cache
def load(source: str, signatures: tuple[tuple[str, tuple], ...]) -> ctypes.CDLL | None:
    """The compiled ``csrc/<source>.cpp`` with each ``(function, argtypes)`` declared (returning
    nothing); ``None``, with one warning, if it cannot be built here.

    A failed build is remembered (`_failure_marker`): later processes warn and skip the build
    until the kernel's source, its flags or the CPU change, or the marker file is deleted.
    """
    name, path = f"convzoo_{source}_{_cpu_tag()}", SOURCES / f"{source}.cpp"
    marker = _failure_marker(name, path)
    if marker.is_file():
        warnings.warn(f"convzoo: the {source} kernel failed to build earlier ({marker.read_text().strip()[:300]}); "
                      f"torch's ops run instead. {_INSTALL}, then delete {marker} to build it again.",
                      RuntimeWarning, stacklevel=3)
        return None
    try:
        with _quiet_build_log():
            library = build(name, path, COMPILE_FLAGS)
    except Exception as error:  # no compiler, no ninja, a bad flag, a read-only cache: train on torch's path
        reason = one_line(error)[:300]
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(reason + "\n")
        except OSError:
            pass  # a read-only cache: the next process tries again
        warnings.warn(f"convzoo: could not build the {source} kernel ({reason}); torch's ops run instead. {_INSTALL}.",
                      RuntimeWarning, stacklevel=3)
        return None
    return declare(library, signatures)
