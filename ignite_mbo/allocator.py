"""Keep glibc from handing freed tensor memory back to the kernel after every training step.

glibc serves blocks above its mmap threshold with a fresh ``mmap`` and returns them with ``munmap``, and it
trims the heap's free top back to the kernel past its trim threshold; both thresholds adapt, but not far
enough for training steps that allocate and free gradients of several MB a few times per minibatch (an
ensemble's stacked first-layer kernel is 10 MB). Every step then page-faults the same memory in afresh:
4.1 M minor faults and 6.9 s of system time in a 4-epoch REINFORCE + IGNITE trial on one CPU thread, 0.13 M
faults and 0.6 s with the thresholds below (``benchmarks/results/allocator_cpu.txt``). Freed memory then
stays with the process up to ``TRIM_BYTES`` beyond what it uses; peak memory does not change.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest mmap threshold on 64-bit systems
TRIM_BYTES = 64 * 1024 * 1024

_done = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where the C library is not glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
    return _done
