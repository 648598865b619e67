"""Runners as subprocesses of this worker, each in a process group of its own.

Requests reach the runner as the contract's signals; telemetry and the log tail are read from the
run folder, which this machine sees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time

import psutil

from tuneyard.training import contract
from tuneyard.worker.executors import Launch
from tuneyard.worker.logtail import tail_lines
from tuneyard.worker.outcome import ExitStatus
from tuneyard.worker.telemetry import read_file_range

log = logging.getLogger(__name__)

GROUP_DEATH_TIMEOUT_SECONDS = 5.0
"""How long release() waits for SIGKILLed members to die; only a process stuck in the kernel
(uninterruptible I/O on a hung mount) takes longer."""


class LocalExecutor:
    """Starts `launch.argv` with no shell, in a new session, output to RUN_DIR/runner.log.

    Popen execs directly (never a bare fork, which is unsafe once CUDA or threads are up), and
    `start_new_session=True` makes the runner lead a process group that holds everything it spawns,
    so the whole tree can be killed at once.
    """

    def start(self, launch: Launch) -> LocalProcess:
        launch.run_dir.mkdir(parents=True, exist_ok=True)
        with open(launch.run_dir / contract.RUNNER_LOG_FILE, "ab") as runner_log:
            popen = subprocess.Popen(
                list(launch.argv),
                cwd=launch.run_dir,
                env=dict(launch.env),
                stdin=subprocess.DEVNULL,
                stdout=runner_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        log.info("job %s: runner started, pid %d: %s", launch.job_id, popen.pid, " ".join(launch.argv))
        return LocalProcess(popen, launch)


class LocalProcess:
    """One runner subprocess. Its pid is also its process group id (it leads its own session)."""

    def __init__(self, popen: subprocess.Popen[bytes], launch: Launch) -> None:
        self._popen = popen
        self.job_id = launch.job_id
        self._telemetry = launch.run_dir / contract.TELEMETRY_FILE
        self._log = launch.run_dir / contract.RUNNER_LOG_FILE
        self._status: ExitStatus | None = None
        self._descendants: list[psutil.Process] = []

    @property
    def pid(self) -> int:
        """The runner's pid, for this executor's own use and its tests; the supervisor uses `handle`."""
        return self._popen.pid

    @property
    def handle(self) -> str:
        return f"local pid {self.pid}"

    def exited(self) -> ExitStatus | None:
        # WNOWAIT looks without reaping: while the runner is an unreaped zombie its pid, and so
        # its group id, cannot be reused, which keeps kill() aimed at our own tree.
        if self._status is None and not self._reaped():
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                self._status = _status_of(info)
        return self._status

    def stop(self) -> None:
        self._signal_runner(contract.SIGNAL_STOP)

    def abort(self) -> None:
        self._signal_runner(contract.SIGNAL_ABORT)

    def checkpoint(self) -> None:
        self._signal_runner(contract.SIGNAL_CHECKPOINT)

    def kill(self) -> None:
        if self._reaped():
            return  # the group id may belong to someone else by now
        # Found before the runner dies, while they are still its descendants: torchrun starts each rank
        # in a session of its own, out of the group's reach (training/launch.py).
        self._descendants += _outside_group(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        for process in self._descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()  # psutil checks the pid still names the process it found

    def release(self) -> ExitStatus:
        # Helpers the runner left behind (data loader workers, a shell it spawned) die with it.
        # SIGKILL is delivered asynchronously, so wait until they are really gone: the next
        # attempt may start in the same run folder at once. The runner stays unreaped meanwhile,
        # which keeps its group id from being reused under us.
        self.kill()
        if not _wait_until_group_dead(self.pid, GROUP_DEATH_TIMEOUT_SECONDS):
            log.warning("job %s: process group %d still has live members after SIGKILL", self.job_id, self.pid)
        if not _wait_until_dead(self._descendants, GROUP_DEATH_TIMEOUT_SECONDS):
            log.warning("job %s: runner processes outside its group still live after SIGKILL", self.job_id)
        self._status = ExitStatus(self._popen.wait())
        return self._status

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        return read_file_range(self._telemetry, offset, limit)

    def log_tail(self, lines: int) -> list[str]:
        return tail_lines(self._log, lines)

    def _signal_runner(self, sig: signal.Signals) -> None:
        # The runner alone, not its group: the requests are for it, its helpers are its business.
        if self._reaped():
            return  # the pid may belong to someone else by now
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _reaped(self) -> bool:
        return self._popen.returncode is not None


def _outside_group(pid: int) -> list[psutil.Process]:
    """The descendants of `pid` in process groups of their own (the group kill misses them)."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    outside = []
    for process in descendants:
        with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
            if os.getpgid(process.pid) != pid:
                outside.append(process)
    return outside


def _wait_until_dead(processes: list[psutil.Process], timeout: float) -> bool:
    """Like _wait_until_group_dead: a zombie counts as dead (whoever inherited it may never reap it)."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in processes):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_until_group_dead(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_has_live_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _group_has_live_members(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs, zombies aside (they are dead, only unreaped).

    Read from /proc because killpg(pgid, 0) also succeeds for zombies, and a grandchild orphaned
    to an init that does not reap would stay one forever. Without /proc (not Linux) this cannot
    be known cheaply, and the group kill is trusted.
    """
    try:
        entries = os.scandir("/proc")
    except FileNotFoundError:
        return False
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue  # it ended while we looked
            state, _ppid, pgrp = stat.rsplit(b")", 1)[1].split()[:3]
            if int(pgrp) == pgid and state not in (b"Z", b"X"):
                return True
    return False


def _status_of(info: os.waitid_result) -> ExitStatus:
    if info.si_code == os.CLD_EXITED:
        return ExitStatus(info.si_status)
    return ExitStatus(-info.si_status)  # killed or dumped core: si_status is the signal
