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

Children in a process group of their own (runners, the API processes of `serve --api-processes`)
also end with the process that started them, however it ends (`exit_with_parent`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import NoReturn

WAIT_POLICY_VARIABLE = "OMP_WAIT_POLICY"


def idle_threads_sleep() -> None:
    """OpenMP threads sleep when idle, unless the environment already says how they should wait.

    Call before torch is imported: the OpenMP runtime reads the variable once, as it loads.
    """
    os.environ.setdefault(WAIT_POLICY_VARIABLE, "PASSIVE")


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
