"""How many heaps the C allocator keeps: two, on glibc, unless MALLOC_ARENA_MAX says otherwise.

glibc gives a thread that allocates while another does its own heap (up to eight a core) and
keeps what was freed in it for that heap's next use. funnelsync's request threads parse HubSpot's
answers and read the journal's next batch, so each grew a heap of its own: a backfill of 100,000
contacts peaked at 286-297 MB, against 256 MB with two heaps, at the same speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

HEAPS = 2
M_ARENA_MAX = -8  # mallopt's parameter, from glibc's malloc.h


def limit_heaps() -> bool:
    """Ask glibc for at most `HEAPS` heaps; true when it agreed. Must run before the threads
    start; elsewhere (another C library, another system) nothing changes."""
    if sys.platform != "linux" or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_ARENA_MAX, HEAPS))
