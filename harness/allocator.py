"""Keep memory that torch frees inside the cell's process, instead of handing it back to
the kernel after every op and faulting it in again on the next.

Where tcmalloc is installed the cells run on it (the fork server starts with it preloaded,
`executors/child.py`): it keeps freed blocks by design, without glibc's fragmentation below.
Otherwise, on glibc:

glibc serves an allocation above its mmap threshold with a fresh `mmap` (and releases it
with `munmap`), and trims the heap top above its trim threshold: a small model on a CPU
allocates and frees several 10 MB activations a step (the attention weights of a batch),
so each one comes back as zero-filled pages, page by page. Here glibc maps nothing (M_MMAP_MAX
0: every block comes from the heap, which glibc still maps when it cannot grow) and trims
only above 1 GiB, so those blocks are reused. Measured with 2 threads:
- the d_model-32 transformer on IMDb: 27–29 → 22–25 ms a step (mmap threshold raised to its
  32 MiB ceiling); the cnn and the BiLSTM unchanged within noise; raising only the trim
  threshold was slower (36 ms);
- MiniLM-L6's word-embedding gradient, a 47 MB block allocated, zero-filled and freed every
  training step, above any mmap threshold: 11.8 ms to fault in afresh, 2.8 ms from the heap.

What is kept shows in the process's resident memory: `release_freed_memory` hands it back
(`malloc_trim`) before a phase's peak is measured, so that peak is the phase's own. A cell sets
this after its data phase, and hands back what reading and encoding the rows freed first.
The price is fragmentation: batches of many widths leave holes that a later, wider block does
not fit, so the heap grows through an epoch; mapping the blocks afresh instead keeps it flat but
trains slower. That is why the cells run on tcmalloc where it is installed (figures in
docs/benchmarks.md, "Memory against Keras").

Only where the C library is glibc; elsewhere (musl, macOS) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # <malloc.h>
TRIM_THRESHOLD = 1 << 30
TCMALLOC = "tcmalloc_minimal"


@functools.cache
def tcmalloc_library() -> str | None:
    """The installed tcmalloc (Debian's `libtcmalloc-minimal4`), to preload into the cells'
    processes; None where there is none."""
    return ctypes.util.find_library(TCMALLOC)


def _this_process() -> ctypes.CDLL:
    return ctypes.CDLL(None)


def _tcmalloc_release():
    """tcmalloc's `MallocExtension_ReleaseFreeMemory` where this process runs on tcmalloc."""
    return getattr(_this_process(), "MallocExtension_ReleaseFreeMemory", None)


def _glibc_function(name: str):
    """A glibc function of this process, or None on another C library."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        return getattr(_this_process(), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> str | None:
    """Keep freed blocks for reuse; what this process's allocator does, or None.

    tcmalloc keeps them in its own caches by design. On glibc: no mmaps, trim threshold 1 GiB."""
    if _tcmalloc_release() is not None:
        return "tcmalloc (preloaded)"
    mallopt = _glibc_function("mallopt")
    if mallopt is None or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1 or mallopt(M_MMAP_MAX, 0) != 1:
        return None
    return f"glibc malloc: trim threshold {TRIM_THRESHOLD >> 20} MiB, no mmaps"


def release_freed_memory() -> None:
    """Return the free blocks the allocator holds to the kernel (all of them, not only the heap's top)."""
    release = _tcmalloc_release()
    if release is not None:
        release()
        return
    malloc_trim = _glibc_function("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
