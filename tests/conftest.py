"""Every tier. When pytest-xdist runs the tests in several processes, each one's runners, exports and
in-process torch get that process's share of the cores (OMP_NUM_THREADS, which a worker passes on to
its runners as the operator's choice; TUNEYARD_EXPORT_THREADS for a served `tuneyard serve`). Two
test processes whose runners each ran torch's pool on both of CI's two cores waited on each other at
every op: such steps took 3x as long as with one thread each (tuneyard/settings.py, runner_threads)."""

from __future__ import annotations

import os
import sys

_processes = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _processes > 1:
    _share = str(max(1, len(os.sched_getaffinity(0)) // _processes))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TUNEYARD_EXPORT_THREADS"):
        os.environ.setdefault(_name, _share)
    if "torch" in sys.modules:  # a plugin imported it before this file: its pool is already sized
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
