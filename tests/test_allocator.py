"""keep_freed_memory: a freed 64 MB buffer is reused, not page-faulted in again."""

import platform
import subprocess
import sys

import pytest

# Ten rounds of allocating, filling and freeing a 64 MB tensor; prints the minor page faults.
ROUNDS = """
import resource, sys, torch
from convzoo.training.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
torch.ones(16_000_000)  # the first round always faults its pages in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(16_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    pages = 16_000_000 * 4 // 4096  # 15,625 pages of 4 KiB per round
    default, tuned = page_faults("default"), page_faults("tuned")
    assert default >= 9 * pages, default  # a fresh mmap every round: all its pages faulted in again
    assert tuned < default / 2, tuned  # the heap keeps freed buffers: most rounds reuse their pages (1-3 rounds fault here)
