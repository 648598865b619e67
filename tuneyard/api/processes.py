"""`tuneyard serve --api-processes N`: the API in N processes of its own, the workers left in serve's.

In one process the API's request threads and the workers' supervisors share one interpreter and its
GIL: under a hundred pollers the supervisors' telemetry and heartbeats wait their turn, and so does
training. Here the serve process keeps the workers (and what they need: the database's migration,
the admin key, the jobs' secrets) and binds the listening socket itself, so a taken address fails
before anything starts; then it starts N API processes (tuneyard.api.child), each accepting on that
one socket, inherited as a descriptor: the kernel hands each connection to one of them. They share
what must hold across processes through the database (rate limits, idempotency, stream wake-ups:
tuneyard.store.notices), and ask the serve process for the jobs' secrets (tuneyard.store.secret_channel).

They are supervised as runners are (tuneyard.worker.executors.local): an argv, no shell, a session of
their own (a Ctrl-C meant for serve reaches them through serve, in order), death with serve however
it dies (`--exit-with-parent`). One that dies is started again after a backoff; stopping is SIGTERM
(uvicorn's graceful shutdown), a bounded grace, then SIGKILL to the group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tuneyard.errors import ListenError
from tuneyard.settings import Settings
from tuneyard.store.secret_channel import SecretsBroker
from tuneyard.store.secrets import SecretHolder

log = logging.getLogger(__name__)

BACKLOG = 2048
"""Connections the kernel queues before an API process accepts them (uvicorn's own default)."""
RESTART_FIRST_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
"""An API process that keeps dying is started again after 0.5, 1, 2, ... seconds, at most this."""
STABLE_SECONDS = 60.0
"""An API process that ran this long before it died is started again after the first delay."""
STOP_GRACE_SECONDS = 10.0
"""How long the API processes get to finish their requests after SIGTERM before SIGKILL: uvicorn
waits for every open response, and a live stream may never end on its own."""
SUPERVISE_SECONDS = 0.2


def listen(settings: Settings) -> socket.socket:
    """The listening socket on the settings' address, or ListenError saying why not (a taken port)."""
    host, port = settings.host, settings.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn chooses
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # As uvicorn: a restarted serve need not wait for the last one's connections to leave TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


@dataclass
class _Slot:
    """One of the N places an API process runs in, and its restarts."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0
    """Deaths in a row, each within STABLE_SECONDS of its start: the backoff's exponent."""
    restart_at: float = 0.0
    recovers: bool = False
    """Whether its next start finishes what a dead service left unfinished (exports it left running
    queued again, datasets left validating): the first start of the first slot only, since another
    process would take what a live one is running for what a dead one left."""

    @property
    def name(self) -> str:
        return f"API process {self.index}"


class ApiProcesses:
    """N API processes on `listener`, their secrets held by `secrets` (the serve process's)."""

    def __init__(self, listener: socket.socket, settings: Settings, environ: Mapping[str, str],
                 secrets: SecretHolder, count: int, python: str = sys.executable) -> None:
        self._listener = listener
        # The serve process's settings, flags included, in the variables the API process reads them from.
        self._env = {**environ, **settings.as_environment()}
        self._secrets = secrets
        self._python = python
        self.slots = [_Slot(index, recovers=index == 0) for index in range(count)]

    def pids(self) -> list[int]:
        return [slot.proc.pid for slot in self.slots if slot.proc is not None]

    def start(self) -> None:
        for slot in self.slots:
            self._spawn(slot)

    def supervise(self, stopping: threading.Event) -> None:
        """Start again any that died, until `stopping` is set."""
        while not stopping.wait(SUPERVISE_SECONDS):
            self.check()

    def check(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.proc is not None:
                code = _exit_code(slot.proc)
                if code is not None:
                    self._died(slot, code, now)
            elif now >= slot.restart_at:
                try:
                    self._spawn(slot)
                except OSError:
                    log.exception("%s could not be started", slot.name)
                    self._schedule(slot, now, lived=0.0)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """SIGTERM every API process, wait up to `grace`, SIGKILL each group still there, reap them all."""
        live = [slot for slot in self.slots if slot.proc is not None]
        for slot in live:
            assert slot.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.proc.pid, signal.SIGTERM)  # unreaped, so the pid is still this process's
        deadline = time.monotonic() + grace
        while any(_exit_code(slot.proc) is None for slot in live if slot.proc) and time.monotonic() < deadline:
            time.sleep(0.05)
        for slot in live:
            assert slot.proc is not None
            if _exit_code(slot.proc) is None:
                log.warning("%s (pid %d) still running %.0f s after SIGTERM; killing it", slot.name, slot.proc.pid,
                            grace)
            _bury(slot.proc)
            slot.proc = None

    def _spawn(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair()
        try:
            argv = [self._python, "-m", "tuneyard.api.child", "--listen-fd", str(self._listener.fileno()),
                    "--secrets-fd", str(theirs.fileno()), "--exit-with-parent",
                    *(["--recover-unfinished"] if slot.recovers else [])]
            proc = subprocess.Popen(argv, env=self._env, stdin=subprocess.DEVNULL, start_new_session=True,
                                    pass_fds=(self._listener.fileno(), theirs.fileno()))
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()  # the API process's copy is its own: the channel ends (EOF) when it does
        SecretsBroker(self._secrets, ours, slot.name).start()
        slot.proc, slot.started, slot.recovers = proc, time.monotonic(), False
        log.info("%s started, pid %d", slot.name, proc.pid)

    def _died(self, slot: _Slot, code: int, now: float) -> None:
        assert slot.proc is not None
        pid = slot.proc.pid
        _bury(slot.proc)
        slot.proc = None
        delay = self._schedule(slot, now, lived=now - slot.started)
        log.warning("%s (pid %d) exited unexpectedly with %s; starting another in %.1f s", slot.name, pid,
                    _described(code), delay)

    def _schedule(self, slot: _Slot, now: float, lived: float) -> float:
        slot.failures = 0 if lived >= STABLE_SECONDS else slot.failures + 1
        delay = min(RESTART_FIRST_SECONDS * 2 ** max(slot.failures - 1, 0), RESTART_MAX_SECONDS)
        slot.restart_at = now + delay
        return delay


def _exit_code(proc: subprocess.Popen[bytes]) -> int | None:
    """The exit code (minus the signal that killed it), or None while it runs; without reaping it.

    While an exited child is an unreaped zombie its pid, and so its group id, cannot be reused: the
    group kill in `_bury` is aimed at its own group (as tuneyard.worker.executors.local does).
    """
    if proc.returncode is not None:
        return proc.returncode
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def _bury(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of its group (it, or anything it started there), then reap it."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _described(code: int) -> str:
    if code >= 0:
        return f"code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"
