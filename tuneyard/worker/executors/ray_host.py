"""What the Ray executor runs on the cluster: one actor per attempt that hosts the runner and answers
the worker's handle (`ray_cluster.RayProcess`).

* `ProcessHost`: a one-process runner, started by the local executor's own code (`local.py`: the
  argv, a session of its own, runner.log) in the actor's process on the node Ray placed it on, so the
  contract's signals are sent on the runner's node.
* `RankGroupHost`: a data-parallel runner through Ray Train. It runs `TorchTrainer.fit()` in a thread;
  each Ray Train worker runs `run_rank`, which starts one rank of the runner (the same local-executor
  code) with torchrun's environment, so the runner is unchanged. The ranks poll this actor for the
  supervisor's requests and report their exit codes to it, which become one runner's exit code as the
  torchrun launcher makes them (`training/launch.exit_code_of`).

Either way the runner is started with `--exit-with-parent`: when the Ray worker process hosting it
dies (killed, or its node lost), the runner ends itself instead of writing on into a run folder the
next attempt will use. This module imports no ray at import time: `ray_cluster` declares the actors
remote, and only the code that runs inside Ray Train imports it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from typing import Any

from tuneyard.training import contract
from tuneyard.training.launch import exit_code_of, report_failure
from tuneyard.worker.executors import Launch
from tuneyard.worker.executors.local import LocalExecutor, LocalProcess
from tuneyard.worker.logtail import tail_lines
from tuneyard.worker.telemetry import read_file_range

Ending = tuple[int, str | None]
"""What `wait` answers: the runner's returncode, and why it was lost when no process gave one."""

RANKS_GROUP = "ranks"
"""A group's host answers its ranks in a concurrency group of their own: `release`, in the default group,
waits for the ranks to report their ends, which must not queue behind it."""
RANKS_GROUP_THREADS = 4
RANK_POLL_SECONDS = 0.2
"""How often a rank asks the group's host for requests: how late a stop reaches it, at most."""
RELEASE_SECONDS = 20.0
"""How long a group's release waits for Ray Train to end after its ranks were told to die."""
STOPPING_CODES = frozenset({contract.EXIT_COMPLETED, contract.EXIT_STOPPED, -contract.SIGNAL_STOP,
                            -contract.SIGNAL_ABORT})
"""Rank endings that are no reason to end the other ranks (they end the same way by themselves)."""


def node_environment(launch: Launch, visible_gpus: str | None) -> dict[str, str]:
    """The runner's environment on this node: the worker's `launch.env` with the GPUs Ray gave this
    process (none when the job asked for none, so a runner never takes a GPU it was not given)."""
    gpus = visible_gpus if launch.resources.gpus and visible_gpus is not None else ""
    return {**launch.env, "CUDA_VISIBLE_DEVICES": gpus}


class ProcessHost:
    """One runner process, a child of this actor's process. The actor is threaded: `wait` blocks in
    a concurrency group of its own while the handle's other calls are answered in order."""

    def __init__(self, launch: Launch) -> None:
        env = node_environment(launch, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self._process = LocalExecutor().start(replace(launch, env=env))
        self._reaping = threading.Lock()
        """Held while `wait` reads the ending and while `release` reaps: the two run in different threads."""

    def where(self) -> str:
        return f"{socket.gethostname()} pid {self._process.pid}"

    def wait(self) -> Ending:
        with contextlib.suppress(ChildProcessError):  # release() reaped it meanwhile
            os.waitid(os.P_PID, self._process.pid, os.WEXITED | os.WNOWAIT)
        with self._reaping:
            status = self._process.exited()
        assert status is not None  # it exited, or release() reaped it and kept its status
        return status.returncode, None

    def stop(self) -> None:
        self._process.stop()

    def abort(self) -> None:
        self._process.abort()

    def checkpoint(self) -> None:
        self._process.checkpoint()

    def kill(self) -> None:
        self._process.kill()

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        return self._process.read_telemetry(offset, limit)

    def log_tail(self, lines: int) -> list[str]:
        return self._process.log_tail(lines)

    def release(self) -> int:
        with self._reaping:
            return self._process.release().returncode


class RankGroupHost:
    """A data-parallel runner's ranks on Ray Train workers, coordinated from this actor (no CPU of its
    own: the ranks hold the job's resources)."""

    def __init__(self, launch: Launch) -> None:
        self._launch = launch
        self._lock = threading.Lock()
        self._requests: list[str] = []
        self._codes: dict[int, int] = {}
        self._killed: set[int] = set()
        """Ranks ended by a kill sent from here: their endings are an effect, not a cause."""
        self._lost: str | None = None
        self._ending: Ending | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._fit, name=f"ray-train-{launch.job_id}", daemon=True)
        self._thread.start()

    def where(self) -> str:
        return f"{self._launch.ranks} Ray Train workers, coordinated from {socket.gethostname()} pid {os.getpid()}"

    def _fit(self) -> None:
        import ray
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        launch, resources = self._launch, self._launch.resources
        per_rank: dict[str, float] = {"CPU": resources.cpus, "GPU": resources.gpus}
        if resources.memory_bytes:
            per_rank["memory"] = resources.memory_bytes
        trainer = TorchTrainer(
            run_rank,
            train_loop_config={"launch": launch, "host": ray.get_runtime_context().current_actor},
            scaling_config=ScalingConfig(num_workers=launch.ranks, use_gpu=resources.gpus > 0,
                                         resources_per_worker=per_rank, placement_strategy="PACK"),
            # No retries of Ray's own: a failed attempt is the queue's to retry, from the last checkpoint.
            run_config=RunConfig(name=f"{launch.job_id}-{int(time.time() * 1000)}",
                                 storage_path=str(launch.run_dir / RAY_TRAIN_FOLDER),
                                 failure_config=_no_retries(FailureConfig)),
        )
        try:
            trainer.fit()
        except Exception as exc:  # a Ray Train worker or its node died: no rank may have said anything
            with self._lock:
                self._lost = f"Ray Train ended the run: {type(exc).__name__}: {str(exc)[:300]}"
        finally:
            self._done.set()

    # From the ranks.

    def requests_since(self, seen: int) -> list[str]:
        with self._lock:
            return self._requests[seen:]

    def rank_exited(self, rank: int, returncode: int, killed: bool) -> None:
        with self._lock:
            self._codes[rank] = returncode
            if killed:
                self._killed.add(rank)
            # As torchrun does: a rank that failed ends the others, which would otherwise wait for it
            # in their next collective (up to its timeout, training/distributed.py).
            if returncode not in STOPPING_CODES and "kill" not in self._requests:
                self._requests.append("kill")

    # From the worker's handle.

    def wait(self) -> Ending:
        self._done.wait()
        with self._lock:
            if self._ending is None:
                self._ending = self._judge()
            return self._ending

    def _judge(self) -> Ending:
        """The ranks' endings as one runner's (once: a failure is reported in the run's telemetry)."""
        codes, ranks = self._codes, self._launch.ranks
        if len(codes) == ranks and not any(codes.values()):
            return contract.EXIT_COMPLETED, None
        if len(codes) < ranks:
            return -signal.SIGKILL, self._lost or f"{ranks - len(codes)} of the run's ranks ended without an exit code"
        # The verdict names the rank that failed first, not those its failure had killed.
        code, message = exit_code_of({r: c for r, c in codes.items() if r not in self._killed} or codes)
        if message is not None:
            report_failure(self._launch.run_dir, message)
        return code, None

    def stop(self) -> None:
        self._request("stop")

    def abort(self) -> None:
        self._request("abort")

    def checkpoint(self) -> None:
        self._request("checkpoint")

    def kill(self) -> None:
        self._request("kill")

    def read_telemetry(self, offset: int, limit: int) -> bytes | None:
        return read_file_range(self._launch.run_dir / contract.TELEMETRY_FILE, offset, limit)

    def log_tail(self, lines: int) -> list[str]:
        return tail_lines(self._launch.run_dir / contract.RUNNER_LOG_FILE, lines)

    def release(self) -> int:
        self.kill()
        self._done.wait(RELEASE_SECONDS)
        return self.wait()[0] if self._done.is_set() else -signal.SIGKILL

    def _request(self, what: str) -> None:
        with self._lock:
            self._requests.append(what)


def _no_retries(failure_config: Any) -> Any:
    """Ray Train's FailureConfig retrying nothing, preemptions included (Ray Train v2, the default of the
    Ray this was written against, 2.60, retries a preempted node's workers without end unless told; v1 has
    no such field)."""
    try:
        return failure_config(max_failures=0, max_preemption_failures=0)
    except TypeError:
        return failure_config(max_failures=0)


RAY_TRAIN_FOLDER = "ray-train"
"""Ray Train's own record of a data-parallel attempt, in the run folder (every node sees it)."""


def run_rank(config: dict[str, Any]) -> None:
    """One rank of the runner, on a Ray Train worker: started with torchrun's environment, steered by
    the group's host until it ends, its exit code reported to the host. Never raises for the runner's
    ending: the host turns the ranks' codes into the attempt's verdict."""
    import ray
    import ray.train

    launch: Launch = config["launch"]
    host = config["host"]
    context = ray.train.get_context()
    rank = context.get_world_rank()
    env = {**node_environment(launch, os.environ.get("CUDA_VISIBLE_DEVICES")),
           **torchrun_environment(context, *_rendezvous(rank))}
    process = LocalExecutor().start(replace(launch, argv=launch.rank_argv, env=env))
    seen, killed = 0, False
    try:
        while process.exited() is None:
            requests = ray.get(host.requests_since.options(concurrency_group=RANKS_GROUP).remote(seen))
            seen += len(requests)
            for request in requests:
                _apply(process, request)
                killed = killed or request == "kill"
            time.sleep(RANK_POLL_SECONDS)
    finally:
        returncode = process.release().returncode
        ray.get(host.rank_exited.options(concurrency_group=RANKS_GROUP).remote(rank, returncode, killed))


def torchrun_environment(context: Any, master_addr: str, master_port: int) -> dict[str, str]:
    """The variables torchrun gives a rank (what `training/ranks.py` and torch's env:// rendezvous
    read), from the Ray Train worker's place in the run."""
    return {
        "RANK": str(context.get_world_rank()),
        "LOCAL_RANK": str(context.get_local_rank()),
        "WORLD_SIZE": str(context.get_world_size()),
        "LOCAL_WORLD_SIZE": str(context.get_local_world_size()),
        "GROUP_RANK": str(context.get_node_rank()),
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
    }


def _rendezvous(rank: int) -> tuple[str, int]:
    """Rank 0's address and a free port on its node, told to every rank over the process group Ray
    Train set up for its workers. The runner's ranks need a store of their own: Ray Train's workers
    already hold the one at Ray's MASTER_PORT."""
    import ray.util
    import torch.distributed as dist

    found: list[Any] = [None]
    if rank == 0:
        with socket.socket() as probe:
            probe.bind(("", 0))
            found = [(ray.util.get_node_ip_address(), probe.getsockname()[1])]
    dist.broadcast_object_list(found, src=0)
    address, port = found[0]
    return str(address), int(port)


def _apply(process: LocalProcess, request: str) -> None:
    {"stop": process.stop, "abort": process.abort, "checkpoint": process.checkpoint, "kill": process.kill}[request]()
