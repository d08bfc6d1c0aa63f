"""The C allocator's heaps: funnelsync asks glibc for two, before its request threads start."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

# 16 threads allocating at once, then glibc's own account of its heaps (malloc_info)
CHURN = textwrap.dedent("""
    import ctypes, ctypes.util, os, sys, tempfile, threading
    from funnelsync.cli.memory import limit_heaps
    if sys.argv[1] == "limit":
        print("agreed", limit_heaps())
    barrier = threading.Barrier(16)
    def churn():
        barrier.wait()
        for _ in range(100):
            held = [bytearray(512) for _ in range(2000)]
            del held
    threads = [threading.Thread(target=churn) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.fopen.restype = ctypes.c_void_p
    fd, path = tempfile.mkstemp()
    os.close(fd)
    stream = ctypes.c_void_p(libc.fopen(path.encode(), b"w"))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    with open(path) as info:
        print("heaps", info.read().count("<heap nr="))
    os.unlink(path)
""")


def heaps(mode: str, **env: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, check=True)
    return done.stdout.split()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's heaps")
def test_two_heaps_serve_many_threads_and_a_set_malloc_arena_max_is_left_alone() -> None:
    without = heaps("none")
    assert without[0] == "heaps" and int(without[1]) > 2  # what glibc does on its own
    assert heaps("limit") == ["agreed", "True", "heaps", "2"]
    assert heaps("limit", MALLOC_ARENA_MAX="3") == ["agreed", "False", "heaps", "3"]
