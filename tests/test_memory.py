"""The allocator setting a build runs with (hubpub.memory): a freed large block goes back to the system."""

import platform
import subprocess
import sys

import pytest

FREED = r"""
import contextlib, sys
from pathlib import Path
from hubpub.memory import large_blocks_reused, large_blocks_to_the_os

def rss_mib():
    status = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) // 1024

if sys.argv[1] != "off":
    assert large_blocks_to_the_os()
with large_blocks_reused() if sys.argv[1] == "reused" else contextlib.nullcontext():
    first = bytearray(16 << 20)
    del first  # a freed 16 MiB mapping: glibc's own rule then serves blocks up to 16 MiB from its heap
    blocks = [bytearray(4 << 20) for _ in range(64)]  # 256 MiB in 4 MiB blocks, like a model's weights
    pin = bytearray(256 << 10)  # allocated after them: the heap cannot shrink below it
    before = rss_mib()
    del blocks
    print(before - rss_mib())
# After the `with`, as before it: blocks beyond what the heap holds free (256 MiB) get their own mappings.
blocks = [bytearray(8 << 20) for _ in range(64)]
pin2 = bytearray(256 << 10)
before = rss_mib()
del blocks
print(before - rss_mib())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's (elsewhere it does nothing)")
def test_freed_weights_go_back_to_the_system():
    def handed_back(setting: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", FREED, setting], capture_output=True, text=True, check=True)
        return [int(line) for line in out.stdout.split()]

    assert handed_back("off")[0] < 64  # glibc's default: freed, but kept by the process
    assert handed_back("on")[0] >= 250  # each block its own mapping, unmapped when freed
    within, after = handed_back("reused")
    assert within < 64 and after >= 250  # LiteRT's converter: kept for the next block, as by default; then not
