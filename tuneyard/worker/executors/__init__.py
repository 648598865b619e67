"""Where a runner runs. The supervisor sees only the two protocols here: it starts a runner through
an `Executor` and from then on knows it only by its `RunnerProcess` handle.

The handle carries everything the supervisor needs from the runner's side: the telemetry stream by
byte offset, the tail of the runner's log, requests by their meaning in the runner contract (stop,
abort, checkpoint) and an opaque name for logs. How those travel (files and POSIX signals on this
machine, messages to a remote task) is the executor's business, so a new executor is one new module
plus one line in `registry.py`.

`local.LocalExecutor` starts the runner as a subprocess on this machine. `ray_cluster.RayExecutor`
starts it on a Ray cluster: one process as an actor, several ranks through Ray Train; it places the
runner by the `Resources` its launch asks for, which the local executor has no use for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tuneyard.worker.outcome import ExitStatus


@dataclass(frozen=True)
class Resources:
    """What each of a runner's processes (each rank) needs of the machine it runs on, for an executor
    that places runners on a cluster; the local executor runs where it is."""

    cpus: int = 1
    """The threads it computes with (OMP_NUM_THREADS)."""
    gpus: int = 0
    """1 when the job must train on CUDA, else 0."""
    memory_bytes: int | None = None
    """The job's peak memory estimate (`jobs.memory_estimate_bytes`), when it has one."""


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one runner attempt."""

    job_id: str
    argv: Sequence[str]
    """The full command, argv[0] included; never interpreted by a shell."""
    run_dir: Path
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The runner's whole environment: nothing is inherited that is not listed here. Never in the repr:
    it carries the job's secrets (tuneyard.store.secrets)."""
    ranks: int = 1
    """The run's processes: more than one for a data-parallel job, which `argv` starts through torchrun."""
    rank_argv: Sequence[str] = ()
    """One rank's command (`python -m tuneyard.training ...`), for an executor that starts each rank
    itself and gives it torchrun's environment (Ray Train); `argv` itself when `ranks` is 1."""
    resources: Resources = field(default_factory=Resources)
    """What each rank asks of the machine it is placed on."""


class RunnerProcess(Protocol):
    """A started runner and everything it spawned. Every method may be called from the supervising
    thread at any time, also after the runner ended; none of them blocks for long except `release`."""

    @property
    def handle(self) -> str:
        """An opaque name for the runner in logs ("local pid 4242"); nothing is to be parsed from it."""

    def exited(self) -> ExitStatus | None:
        """How the runner ended, or None while it runs. Does not release the process yet."""

    def stop(self) -> None:
        """Ask the runner to checkpoint at its next step boundary and exit (the contract's stop); a
        runner asked twice aborts. Goes to the runner alone: its helpers are its own business."""

    def abort(self) -> None:
        """Ask the runner to leave at once, writing nothing more (the contract's abort)."""

    def checkpoint(self) -> None:
        """Ask the runner for a checkpoint at its next step boundary; it keeps training."""

    def kill(self) -> None:
        """End the runner and everything it spawned now, without asking. Safe at any time, repeatedly."""

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        """Up to `limit` bytes of the runner's telemetry stream from byte `offset`; b"" when nothing is
        there yet. None when the stream is now shorter than `offset`: it was truncated or replaced, and
        the reader starts over from 0. Still readable after `release`."""

    def log_tail(self, lines: int) -> list[str]:
        """Up to `lines` last lines of the runner's console output; [] when there is none. Still
        readable after `release`: it is the evidence for an ending the runner did not explain."""

    def release(self) -> ExitStatus:
        """Kill whatever is left of the runner's tree and reap it; the process is gone afterwards."""


class Executor(Protocol):
    def start(self, launch: Launch) -> RunnerProcess:
        """Start the runner; raise OSError if it cannot be started at all."""
