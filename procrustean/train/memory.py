"""Keep freed host memory for reuse, instead of giving it back to the OS at every step.

A training step allocates and frees the same activation-sized tensors step after step. glibc's malloc
serves blocks above its mmap threshold with fresh ``mmap``s and trims the top of the heap when it is
freed, so the next step page-faults the same memory in again. Raising the threshold to its maximum
(32 MB on 64-bit glibc) and not trimming keeps those pages: the effect jemalloc or tcmalloc (PyTorch's
CPU performance advice, through ``LD_PRELOAD``) would have, with nothing to install. Measured on the
2-core CPU machine (docs/RESULTS.md, Cost): ResNet-8's step ~13% faster, and the mix of the weakening
at ``stage:1`` from 5.4% to 3.7% of a step.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024  # the largest threshold 64-bit glibc accepts


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks (True when done; False where the C library is not glibc)."""
    if platform.system() != "Linux":
        return False
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False  # musl and others: their own policies
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MAX_MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
