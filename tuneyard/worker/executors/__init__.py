"""Where a runner runs. The supervisor sees only these two protocols.

`local.LocalExecutor` starts the runner as a subprocess on this machine. A Ray executor (a task on a
Ray cluster, multi-GPU through Ray Train) belongs beside it as `ray.py`, implementing the same two
protocols; it is not written yet, and nothing here pretends otherwise.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tuneyard.worker.outcome import ExitStatus


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one runner attempt."""

    job_id: str
    argv: Sequence[str]
    """The full command, argv[0] included; never interpreted by a shell."""
    run_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """The runner's whole environment: nothing is inherited that is not listed here."""


class RunnerProcess(Protocol):
    """A started runner and everything it spawned."""

    @property
    def pid(self) -> int: ...

    def exited(self) -> ExitStatus | None:
        """How the runner ended, or None while it runs. Does not release the process yet."""

    def signal_runner(self, sig: signal.Signals) -> None:
        """Send a signal to the runner alone (graceful requests: its helpers are its own business)."""

    def kill_all(self) -> None:
        """SIGKILL the runner and everything it spawned. Safe to call at any time, repeatedly."""

    def release(self) -> ExitStatus:
        """Kill whatever is left of the runner's tree and reap it; the process is gone afterwards."""


class Executor(Protocol):
    def start(self, launch: Launch) -> RunnerProcess:
        """Start the runner; raise if it cannot be started at all."""
