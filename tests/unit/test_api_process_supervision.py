"""How serve supervises its API processes (tuneyard.api.processes), with shell scripts standing in for
them: one that dies is started again after a growing delay, a stop ends every one (SIGKILL to the
group of one that ignores SIGTERM, grandchildren included), and a taken port is a ListenError."""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path

import psutil
import pytest

from tuneyard.api import processes
from tuneyard.api.processes import ApiProcesses, listen
from tuneyard.errors import ListenError
from tuneyard.settings import Settings
from tuneyard.store.secrets import HeldSecrets


def standin(tmp_path: Path, body: str) -> str:
    """An executable that takes the API process's place (it is given, and ignores, its arguments)."""
    script = tmp_path / "standin"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def supervisor(tmp_path: Path, body: str, count: int = 1) -> tuple[ApiProcesses, socket.socket]:
    listener = listen(Settings(data_dir=tmp_path, port=0))
    api = ApiProcesses(listener, Settings(data_dir=tmp_path), {"PATH": os.environ["PATH"]}, HeldSecrets(), count,
                       python=standin(tmp_path, body))
    return api, listener


def test_one_that_dies_is_started_again_after_a_growing_delay(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    api, listener = supervisor(tmp_path, "exit 3")
    starts: list[float] = []
    with caplog.at_level(logging.INFO, logger=processes.__name__), listener:
        api.start()
        starts.append(time.monotonic())
        deadline = time.monotonic() + 10
        while len(starts) < 3 and time.monotonic() < deadline:
            pid = api.pids()
            api.check()
            if api.pids() and api.pids() != pid:
                starts.append(time.monotonic())
            time.sleep(0.02)
        api.stop(grace=1)
    assert len(starts) == 3, caplog.text
    first, second = starts[1] - starts[0], starts[2] - starts[1]
    assert 0.5 <= first < 1.0 + 0.5 and 1.0 <= second < 2.0 + 0.5  # 0.5 s, then doubled
    assert "exited unexpectedly with code 3; starting another in 0.5 s" in caplog.text
    assert "starting another in 1.0 s" in caplog.text
    assert api.pids() == []


def test_a_stop_kills_the_group_of_one_that_ignores_sigterm(tmp_path: Path) -> None:
    api, listener = supervisor(tmp_path, f"trap '' TERM\nsleep 60 &\necho $! > {tmp_path}/grandchild\nwait", count=2)
    with listener:
        api.start()
        grandchild = tmp_path / "grandchild"
        deadline = time.monotonic() + 10
        while not (grandchild.exists() and grandchild.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.02)
        pids = [*api.pids(), int(grandchild.read_text())]
        began = time.monotonic()
        api.stop(grace=0.5)
        assert 0.5 <= time.monotonic() - began < 5
    assert api.pids() == []
    for pid in pids:  # reaped, or (the grandchild, reparented) killed: no live process either way
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_taken_port_is_a_listen_error_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ListenError) as refused:
            listen(Settings(data_dir=tmp_path, port=port))
    assert refused.value.message == f"cannot listen on 127.0.0.1:{port}: Address already in use"


def test_only_the_first_start_of_the_first_process_recovers_what_a_dead_service_left(tmp_path: Path) -> None:
    # Another would queue again an export a live one is running; a restart, one its sibling is running.
    argv_log = tmp_path / "argv"
    api, listener = supervisor(tmp_path, f'echo "$@" >> {argv_log}; exit 1', count=2)
    with listener:
        api.start()
        deadline = time.monotonic() + 10
        while (not argv_log.exists() or len(argv_log.read_text().splitlines()) < 4) and time.monotonic() < deadline:
            api.check()
            time.sleep(0.05)
        api.stop(grace=1)
    starts = argv_log.read_text().splitlines()
    assert len(starts) >= 4, starts
    assert sum("--recover-unfinished" in start for start in starts) == 1
    assert "--recover-unfinished" in starts[0] or "--recover-unfinished" in starts[1]  # one of the two first
