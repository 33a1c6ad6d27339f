"""convzoo's C++ CPU training kernels: compiled on first use, loaded through ctypes, each behind a switch.

The sources in ``convzoo/csrc/`` have a plain C ABI and no torch headers, so each compiles in about a
second with the system's C++ compiler (``torch.utils.cpp_extension`` drives it and caches the result).
Where no compiler is found the kernel is ``None`` and its users keep torch's path, with one warning.
Each kernel family has a :class:`Switch`, so a run or a benchmark can turn it off.

Example:
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
    """A process-wide on/off setting; calling it gives a ``with`` block that sets it there only."""

    def __init__(self, what: str, enabled: bool = True):
        self.what = what
        self.enabled = enabled

    def __bool__(self) -> bool:
        return self.enabled

    @contextmanager
    def __call__(self, enabled: bool = True) -> Iterator[None]:
        """Set the switch inside a ``with`` block, restoring it after."""
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


#: How every kernel is compiled (``benchmarks/norm_act_kernel.py`` builds an earlier revision's the same way).
COMPILE_FLAGS = ("-O3", "-march=native", "-fopenmp")


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


@functools.cache
def load(source: str, signatures: tuple[tuple[str, tuple], ...]) -> ctypes.CDLL | None:
    """The compiled ``csrc/<source>.cpp`` with each ``(function, argtypes)`` declared (returning
    nothing); ``None``, with one warning, if it cannot be built here."""
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # its "no CUDA runtime" notice
    try:
        library = build(f"convzoo_{source}_{_cpu_tag()}", SOURCES / f"{source}.cpp")
    except Exception as error:  # no compiler, no ninja, a read-only cache: train on torch's path
        warnings.warn(f"convzoo: could not build the {source} kernel ({one_line(error)[:300]}); torch's ops run "
                      f"instead. Install a C++ compiler and ninja to enable it.", RuntimeWarning, stacklevel=3)
        return None
    return declare(library, signatures)
