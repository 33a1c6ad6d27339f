"""Keep freed memory in the process: glibc's allocator tuned for a training loop on a CPU.

By default glibc serves every block above 128 KiB-32 MiB (its threshold adapts) with a fresh
``mmap`` and hands it back to the kernel on ``free``. A CPU training step allocates and frees
hundreds of activation and gradient buffers of that size, so every step page-faults all of them
in anew (measured: ~70k page faults/s, ~10% system time for a full-width airbench step).
``keep_freed_memory()`` turns both off (``mallopt(M_MMAP_MAX, 0)``: no mmap;
``mallopt(M_TRIM_THRESHOLD, -1)``: never trim, so freed memory stays in the heap) and the next
step reuses the same pages. The same effect as starting Python with ``MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=<huge>``, from inside. The threshold is "never", not a finite one:
mallopt takes an int, and at 2 GiB (the largest) three profiled ``cpu_fast`` steps of 1024
(``benchmarks/flops.py --profile cpu_fast``, whose zero-fills then page-faulted) took 5.8 s
against 3.8 s with -1 or the environment variables.

What it gains is measured by ``benchmarks/cpu_levers.py`` (``keep_freed=0`` vs ``1``): the docs'
benchmarks page, "CPU levers", gives the figures with their machine.

Examples:
    ``train()`` does this when ``keep_freed_memory=true``, the default:

    ```python
    from convzoo.training.allocator import keep_freed_memory
    keep_freed_memory()   # True: tuned; False where the C library is not glibc (nothing done)
    ```
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory"]

# glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_NEVER_TRIM = -1  # mallopt(3): "Setting M_TRIM_THRESHOLD to -1 disables trimming completely"


def keep_freed_memory() -> bool:
    """Tune glibc's allocator to keep freed memory for reuse; ``False`` (nothing done) without glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
