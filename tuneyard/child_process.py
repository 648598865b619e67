"""How the processes that load torch (a runner, an export) start and end: without OpenMP's idle
threads spinning, and without paying Python's garbage collector for torch's module graph.

Torch computes on OpenMP threads, whose default is to spin for a while at the end of every parallel
region, waiting for the next. With as many threads as cores that only pays on an idle machine; on a
shared one (two cores, two test processes, their runners, a server) the spinning thread takes the
core its partner needs to finish the region: a tiny-llama forward of 150 tokens took 250 to 410 ms of
wall time (and half that in CPU) where sleeping threads took 10 to 30 ms, and a three-step run's CPU
time halved. How idle threads wait changes neither how many there are nor how work is split among
them, so results are bitwise the same.

Importing torch, transformers and peft leaves ~350,000 objects that live as long as the process
and are never garbage. Left to the collector, a tiny-llama run spent 0.9 to 1.3 s in the six full
collections its imports and model load set off, and Python's own shutdown collected everything
once more (another 1.3 to 2 s, after the last file was written). Both are paid by every job,
evaluation and export, and the test suite starts hundreds of them.

Nothing here changes what a process computes: the collector only frees unreachable cycles.
`tuneyard serve` imports its API outside the collector too (cli/serve.py); it exits as usual.

A runner's heap keeps what a step frees for the next step (`keep_freed_memory`), instead of glibc
handing it back to the kernel and taking fresh zeroed pages again one step later.

Children in a process group of their own (runners, the API processes of `serve --api-processes`)
also end with the process that started them, however it ends (`exit_with_parent`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import NoReturn

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"


def idle_threads_sleep() -> None:
    """OpenMP threads sleep when idle, unless the environment already says how they should wait.

    Call before torch is imported: the OpenMP runtime reads the variable once, as it loads.
    """
    os.environ.setdefault(WAIT_POLICY_VARIABLE, "PASSIVE")


M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_MMAP_THRESHOLD_BYTES = 32 << 20
"""Blocks up to this size come from the heap, as glibc's own ceiling for its adaptive threshold."""
HEAP_TRIM_THRESHOLD_BYTES = 2**31 - 1
"""Free memory at the top of the heap kept up to this (the most mallopt takes): in effect, all of it."""
HEAP_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Have glibc keep freed memory in the heap for reuse; False where it is not glibc or the
    environment already sets its malloc tunables (the operator's choice stands).

    A training step allocates and frees the same activation-sized tensors every step. glibc serves a
    block over its mmap threshold (128 KiB at first, then the largest block freed, at most 32 MiB)
    with fresh pages, and gives the heap's free top back to the kernel once it passes twice that; a
    step's end frees far more, so every step faulted its activations in again, zeroed page by page.
    On tiny-llama's fixed-length LoRA rows (fp32, 8 x 256 tokens) that cost 5 % of the step here
    (17,771 -> 18,860 tokens/s, medians of three interleaved runs; peak RSS 0.596 -> 0.594 GB). Blocks
    over 32 MiB (a batch's logits) are still mapped and unmapped alone, so the peak is unchanged.
    Results are bitwise the same: only where memory comes from changes.
    """
    environ = os.environ if environ is None else environ
    if any(name in environ for name in HEAP_VARIABLES) or "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
    except (ValueError, OSError):  # not a glibc system: the name is unknown there
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD_BYTES)
                and libc.mallopt(M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD_BYTES))


@contextlib.contextmanager
def imports_outside_collector() -> Iterator[None]:
    """Import the heavy libraries with the collector off, then freeze what they made.

    Frozen objects are never walked again, so the later collections that a run's own garbage sets
    off see only that garbage. The collector is on again afterwards: a long run's cycles are freed.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def exit_now(code: int) -> NoReturn:
    """End the process with `code` once its work is written, skipping the interpreter's teardown.

    The caller has closed and synced every file it promised (telemetry, checkpoints, result): what
    the teardown would still do is collect the whole module graph, run libraries' atexit hooks that
    only release what the process's end releases anyway (their locks, sessions, statistics), and
    join idle pool threads. Buffered output and log handlers are flushed first, as exit would.
    """
    with contextlib.suppress(Exception):  # a closed or broken stream has nothing left to flush
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


EXIT_WITH_PARENT_POLL_SECONDS = 0.5
"""How often a child looks whether its parent is still there: how long an orphan may outlive it."""


def exit_with_parent(poll_seconds: float = EXIT_WITH_PARENT_POLL_SECONDS) -> None:
    """Die when the process that started us dies (a worker or `tuneyard serve` killed with SIGKILL).

    A runner (or an API process of `serve --api-processes`) lives in its own process group so that
    signals meant for its parent do not reach it; the price is that nothing kills it when the parent
    dies. An orphan runner would go on writing into a run folder that the job's next attempt is about
    to use, an orphan API process would go on answering on the port; so it kills itself instead.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
