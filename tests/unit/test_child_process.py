"""How runners and exports start and end (tuneyard.child_process), each in a Python of its own:
what they change (the collector, the environment, the exit) belongs to a whole process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.support.runs import REPO
from tuneyard.child_process import WAIT_POLICY_VARIABLE, idle_threads_sleep


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(REPO), **env})


def test_exit_now_keeps_the_code_and_every_byte_written_before_it() -> None:
    # stdout into a pipe is block-buffered: without the flush the last block would be lost.
    done = _python("""
        import logging, sys
        from tuneyard.child_process import exit_now
        logging.basicConfig(stream=sys.stderr, format="%(message)s")
        sys.stdout.write("x" * 1003)  # less than a buffer: nothing written yet
        logging.getLogger("runner").warning("last words")
        exit_now(3)
    """)
    assert done.returncode == 3, done.stderr
    assert len(done.stdout) == 1003
    assert done.stderr.strip() == "last words"


def test_imports_outside_collector_freeze_what_they_made_and_give_the_collector_back() -> None:
    done = _python("""
        import gc
        from tuneyard.child_process import imports_outside_collector
        with imports_outside_collector():
            assert not gc.isenabled()
            import decimal, email.message  # noqa: F401
        assert gc.isenabled() and gc.get_freeze_count() > 1000, gc.get_freeze_count()
        gc.disable()
        with imports_outside_collector():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    """)
    assert done.returncode == 0, done.stderr


def test_idle_threads_sleep_unless_the_environment_already_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WAIT_POLICY_VARIABLE, raising=False)
    idle_threads_sleep()
    assert os.environ[WAIT_POLICY_VARIABLE] == "PASSIVE"
    monkeypatch.setenv(WAIT_POLICY_VARIABLE, "ACTIVE")
    idle_threads_sleep()
    assert os.environ[WAIT_POLICY_VARIABLE] == "ACTIVE"


@pytest.mark.parametrize("entry", ["tuneyard.training.__main__", "tuneyard.export.__main__"])
def test_the_entries_load_no_torch_before_they_set_the_wait_policy(entry: str) -> None:
    # OpenMP reads OMP_WAIT_POLICY once, when torch loads it: an entry that imported torch at its
    # top would set the variable too late, and nothing would say so.
    done = _python(f"""
        import sys
        import {entry}  # noqa: F401
        assert "torch" not in sys.modules
    """)
    assert done.returncode == 0, done.stderr


_HEAP_CYCLES = """
    import ctypes, resource, sys
    from tuneyard.child_process import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else False
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    block = 4 << 20
    def step():  # a step's activations: allocated, written, all freed at its end
        blocks = [libc.malloc(block) for _ in range(16)]
        for address in blocks:
            ctypes.memset(address, 1, block)
        for address in blocks:
            libc.free(address)
    step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        step()
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _heap_faults(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_HEAP_CYCLES), mode], capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(REPO), **env})
    assert done.returncode == 0, done.stderr
    kept, faults = done.stdout.split()
    return kept, int(faults)


def test_a_kept_heap_serves_the_next_step_without_faulting_its_pages_in_again() -> None:
    # glibc's defaults hand a step's freed 64 MiB back and fault it in again next step: 16,384 pages
    # a step; with the runner's policy the second step on reuses them.
    kept, faults = _heap_faults("keep")
    default_kept, default_faults = _heap_faults("default")
    assert (kept, default_kept) == ("True", "False")
    assert default_faults > 4 * 16_000, default_faults
    assert faults < default_faults / 20, (faults, default_faults)


def test_the_operators_malloc_settings_stand() -> None:
    kept, faults = _heap_faults("keep", MALLOC_TRIM_THRESHOLD_="65536")
    assert kept == "False" and faults > 4 * 16_000
    assert _heap_faults("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=65536")[0] == "False"
