"""Runners on a Ray cluster (`TUNEYARD_EXECUTOR=ray`, the cluster at `TUNEYARD_RAY_ADDRESS`).

Each attempt is one actor (`ray_host`) placed by the resources the launch asks for: a one-process
runner is the actor's child, with the rank's CPUs, GPU and memory; a data-parallel runner's ranks run on
Ray Train workers (`TorchTrainer`, one worker per rank), coordinated by an actor that holds nothing.
The supervisor sees the same `RunnerProcess` as with the local executor. Every call on the handle is
bounded: requests are sent without waiting, reads wait at most `CALL_SECONDS` (and find nothing new
when the actor is slow to answer), and whether the runner ended is read from a reference that the
actor resolves when it does, without asking it. An actor or node that died is a runner lost: its
`ExitStatus` is a crash, and the queue retries the attempt from the last checkpoint.

The run folder must be on a filesystem every node and the worker see at the same path
(docs/deploy.md): the runner writes there, and the handle reads it from the worker once the actor is
gone, for the telemetry and log lines a lost runner left.
"""

from __future__ import annotations

import logging
import socket
import time
from functools import cache
from typing import Any

import ray
import ray.exceptions

from tuneyard.child_process import EXIT_WITH_PARENT_POLL_SECONDS
from tuneyard.errors import SettingsError
from tuneyard.settings import ENV_PREFIX
from tuneyard.training import contract
from tuneyard.worker.executors import Launch, Resources
from tuneyard.worker.executors.ray_host import RANKS_GROUP, RANKS_GROUP_THREADS, ProcessHost, RankGroupHost
from tuneyard.worker.logtail import tail_lines
from tuneyard.worker.outcome import ExitStatus
from tuneyard.worker.telemetry import read_file_range

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
"""How long a worker waits for the Ray head's port to accept a connection at start."""
CALL_SECONDS = 5.0
"""The longest a read of telemetry or the log tail waits for the actor (the supervisor's thread is
waiting meanwhile; the next read asks again)."""
LOST_RUNNER_GRACE_SECONDS = 4 * EXIT_WITH_PARENT_POLL_SECONDS
"""How long `release` gives a lost runner to end itself: it notices its host's death within its poll
(`child_process.exit_with_parent`), and no one here can see it end, so the next attempt in its run
folder is held back this long rather than race its last writes."""
RELEASE_SECONDS = 30.0
"""The longest `release` waits for the actor to end its runner before the actor itself is killed."""
WAIT_GROUP = "wait"
"""The actor's concurrency group for `wait`, which blocks until the runner ends; the handle's other
calls run in the default group, one at a time, in the order they were sent."""
GONE = (ray.exceptions.RayActorError, ray.exceptions.NodeDiedError, ray.exceptions.WorkerCrashedError,
        ray.exceptions.ObjectLostError)
"""A call failed because the actor, its process or its node is gone (ActorUnavailableError, a
RayActorError too, is told apart: the actor may answer again)."""


class RayExecutor:
    """Starts each runner attempt as an actor on the cluster this process connected to."""

    def __init__(self, address: str) -> None:
        if not ray.is_initialized():
            _check_reachable(address)
            try:
                # The runner's output goes to runner.log; Ray's copy of its workers' output is not wanted here.
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except (ConnectionError, RuntimeError) as exc:
                raise SettingsError(ENV_PREFIX + "RAY_ADDRESS",
                                    f"no Ray cluster could be reached at {address!r}: {exc}") from None

    def start(self, launch: Launch) -> RayProcess:
        _check_feasible(launch.resources)
        if launch.ranks == 1:
            actor = _remote(ProcessHost).options(**_actor_resources(launch.resources)).remote(launch)
        else:  # the ranks, on Ray Train's workers, hold the job's resources
            actor = _remote(RankGroupHost).options(num_cpus=0).remote(launch)
        log.info("job %s: runner submitted to Ray (%d rank(s), each %s): %s", launch.job_id, launch.ranks,
                 launch.resources, " ".join(launch.argv if launch.ranks == 1 else launch.rank_argv))
        return RayProcess(actor, launch)


class RayProcess:
    """The worker's handle on one attempt's actor."""

    def __init__(self, actor: Any, launch: Launch) -> None:
        self._actor = actor
        self._run_dir = launch.run_dir
        self.job_id = launch.job_id
        self._ending = actor.wait.options(concurrency_group=WAIT_GROUP).remote()
        self._placed = actor.where.remote()
        """Resolves once the actor exists: until then (Ray may wait for room on the cluster) reads find
        nothing without asking, so a supervisor does not wait on an actor that is not there yet."""
        self._status: ExitStatus | None = None
        self._released = False

    @property
    def handle(self) -> str:
        return f"ray actor {self._actor._actor_id.hex()[:16]}"

    def exited(self) -> ExitStatus | None:
        if self._status is None:
            ready, _ = ray.wait([self._ending], timeout=0)
            if ready:
                self._status = self._read_ending()
        return self._status

    def stop(self) -> None:
        self._send("stop")

    def abort(self) -> None:
        self._send("abort")

    def checkpoint(self) -> None:
        self._send("checkpoint")

    def kill(self) -> None:
        self._send("kill")

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        local = lambda: read_file_range(self._run_dir / contract.TELEMETRY_FILE, offset, limit)  # noqa: E731
        return self._read("read_telemetry", local, b"", offset, limit)

    def log_tail(self, lines: int) -> list[str]:
        return self._read("log_tail", lambda: tail_lines(self._run_dir / contract.RUNNER_LOG_FILE, lines), [], lines)

    def release(self) -> ExitStatus:
        if not self._released:
            self._released = True
            released = True
            try:
                returncode = ray.get(self._actor.release.remote(), timeout=RELEASE_SECONDS)
                self._status = self._status or ExitStatus(returncode)
            except GONE as exc:
                released = False
                self._status = self._status or ExitStatus.lost_runner(_why(exc))
            except ray.exceptions.GetTimeoutError:
                released = False
                log.warning("job %s: the runner's actor did not release it within %.0fs; killing the actor",
                            self.job_id, RELEASE_SECONDS)
                self._status = self._status or ExitStatus.lost_runner("its Ray actor did not answer release")
            finally:
                # The runner's group is gone (or its host is): the actor's resources go back to the cluster,
                # and a group's Ray Train workers, owned by it, go with it.
                ray.kill(self._actor, no_restart=True)
            if not released:
                time.sleep(LOST_RUNNER_GRACE_SECONDS)
        assert self._status is not None
        return self._status

    def _read_ending(self) -> ExitStatus:
        try:
            returncode, lost = ray.get(self._ending, timeout=CALL_SECONDS)
        except GONE as exc:
            return ExitStatus.lost_runner(_why(exc))
        return ExitStatus(returncode, lost=lost)

    def _send(self, request: str) -> None:
        """A request without waiting for it: the actor runs them in the order sent."""
        if self._released or self.exited() is not None:
            return
        getattr(self._actor, request).remote()

    def _read(self, method: str, local: Any, nothing: Any, *args: Any) -> Any:
        """The actor's answer; from the shared run folder once the actor is gone; `nothing` new when it
        is slow or unreachable for now."""
        if self._released:
            return local()
        if not ray.wait([self._placed], timeout=0)[0]:
            return nothing
        try:
            return ray.get(getattr(self._actor, method).remote(*args), timeout=CALL_SECONDS)
        except ray.exceptions.ActorUnavailableError:
            return nothing
        except GONE:
            return local()
        except ray.exceptions.GetTimeoutError:
            log.warning("job %s: the runner's actor did not answer %s within %.0fs", self.job_id, method, CALL_SECONDS)
            return nothing


def _check_reachable(address: str) -> None:
    """A head's GCS that does not accept connections is told at once: `ray.init` would retry for minutes."""
    if address == "auto":
        return  # Ray finds the address itself (a local cluster's, or RAY_ADDRESS's)
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as exc:
        raise SettingsError(ENV_PREFIX + "RAY_ADDRESS", f"no Ray cluster answers at {address!r}: {exc}") from None


@cache
def _remote(host: type) -> Any:
    """`host` as an actor class, made once a process (Ray exports each class it is given). Never
    restarted by Ray: a runner whose host died is the queue's to retry."""
    remote: Any = ray.remote  # its typing lists the options of tasks, not those of actors
    return remote(max_restarts=0, concurrency_groups={WAIT_GROUP: 1, RANKS_GROUP: RANKS_GROUP_THREADS})(host)


def _actor_resources(resources: Resources) -> dict[str, Any]:
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
    if resources.memory_bytes:
        options["memory"] = resources.memory_bytes
    return options


def _check_feasible(resources: Resources) -> None:
    """OSError (the supervisor's "could not be started") when no live node could ever hold one rank:
    Ray would keep such an actor pending, and the job with it, until a big enough node joined."""
    wanted = {"CPU": resources.cpus, "GPU": resources.gpus, "memory": resources.memory_bytes or 0}
    for node in ray.nodes():
        have = node.get("Resources", {})
        if node.get("Alive") and all(have.get(name, 0) >= amount for name, amount in wanted.items() if amount):
            return
    asked = ", ".join(f"{amount} {name}" for name, amount in wanted.items() if amount)
    raise OSError(f"no node of the Ray cluster has {asked} for one of the runner's processes")


def _why(exc: Exception) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"its Ray actor or node died: {type(exc).__name__}{': ' + first[:200] if first else ''}"

