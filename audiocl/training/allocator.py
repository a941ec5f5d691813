"""Keep freed memory in the process, so CPU training does not page-fault its activations anew
on every step.

glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB, raised on the fly up to 32 MiB
as large blocks are freed) with a fresh ``mmap`` and returns it to the kernel on ``free``; the
next step's tensor of the same size is then zero-filled page by page again. A training step
allocates and frees many tensors of several MB, so a fresh process spends a third of each
step in page faults: `benchmarks/bench_allocator.py` measures ECAPA C=256 AAM steps at 0.55 s
plain and 0.33 s with the thresholds below (2-core CPU). A process that has already freed
large blocks (a first training stage) runs fast by chance; this makes it so from the start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 << 20  # blocks below this come from the heap and are reused
TRIM_THRESHOLD = 512 << 20  # free memory kept before the heap is shrunk


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (it then holds up to about
    ``TRIM_THRESHOLD`` of freed memory for reuse). True when applied; False where the C library
    is not glibc (macOS, musl, Windows), which is left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
