"""``train.keep_freed_memory``: freed tensors are reused instead of page-faulted in anew."""

import subprocess
import sys

import pytest

from audiocl.training.allocator import keep_freed_memory

CHILD = """
import resource, sys
import torch
from audiocl.training.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):  # warm up: the heap grows to hold the block
    x = torch.ones(12 << 20)
    del x
before = faults()
for _ in range(5):
    x = torch.ones(12 << 20)  # 48 MB, above glibc's largest self-raised mmap threshold
    del x
print((faults() - before) / 5 / ((48 << 20) // 4096))
"""


def faulted_fraction(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True
    )
    return float(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_block_is_reused_without_page_faults():
    if not keep_freed_memory():
        pytest.skip("the C library is not glibc")
    assert faulted_fraction("plain") > 0.9  # every page of every new block faults
    assert faulted_fraction("keep") < 0.05
