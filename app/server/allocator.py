"""The memory allocator `chatroom` runs on: jemalloc, when the system has it.

Under storms of TLS connections that come and go, the server's memory on glibc's allocator
keeps growing and is not given back, whatever its tunables (measured: 92, 110, 114, 117 MB
after four cycles of 500 connections, and still rising over fourteen; `malloc_trim` only
slows it): uvloop's TLS and OpenSSL allocate and free buffers of every size for every
connection. jemalloc gives freed pages back to the system within a second
(`dirty_decay_ms`), and the same storms leave the server within 5% of where it started. On
the benchmarks it costs no CPU we could measure.

`chatroom` re-executes itself once, with jemalloc preloaded (Debian's libjemalloc2);
without it, or with CHAT_ALLOCATOR=system, it runs on the system's allocator.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Sequence

JEMALLOC = "libjemalloc.so.2"
JEMALLOC_SETTINGS = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0"


def run_on_jemalloc(argv: Sequence[str]) -> None:
    """Re-execute this command with jemalloc preloaded, unless it is already, or cannot be."""
    if os.environ.get("CHAT_ALLOCATOR", "jemalloc") != "jemalloc":
        return
    if JEMALLOC in os.environ.get("LD_PRELOAD", "") or ctypes.util.find_library("jemalloc") is None:
        return
    preload = " ".join(filter(None, [os.environ.get("LD_PRELOAD"), JEMALLOC]))
    env = {**os.environ, "LD_PRELOAD": preload, "MALLOC_CONF": os.environ.get("MALLOC_CONF", JEMALLOC_SETTINGS)}
    os.execve(sys.executable, [sys.executable, "-m", "app.cli", *argv], env)  # noqa: S606 - ourselves again
