"""The worker: claim a job, supervise its runner to the end, record how it ended, repeat.

At start it reaps expired leases before taking new work (jobs of a worker that died come back
first). Asked to shut down, it stops claiming and hands its running job back to the queue,
checkpointed, without counting a retry.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from tuneyard.errors import RunStorageError, UserError
from tuneyard.planning.cost import Prices
from tuneyard.scheduler import ClaimedJob, claim, reap
from tuneyard.scheduler.capacity import Capacity, declared_capacity, format_bytes
from tuneyard.scheduler.workers import new_worker_id, register_worker, set_worker_state, worker_heartbeat
from tuneyard.services import job_secrets, runs
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.jobs import load_job
from tuneyard.store.lifecycle import fail, retry_or_fail
from tuneyard.training import contract
from tuneyard.training.artifacts import write_json_atomic
from tuneyard.training.run_storage import RunStorage
from tuneyard.worker.command import (
    hub_environment,
    judge_environment,
    rank_resources,
    rank_threads,
    runner_argv,
    runner_env,
    spec_processes,
    spec_ranks,
    storage_environment,
    thread_environment,
)
from tuneyard.worker.executors import Executor, Launch
from tuneyard.worker.executors.registry import make_executor
from tuneyard.worker.lineage import job_lineage
from tuneyard.worker.outcome import LeaseLost, Outcome, Verdict
from tuneyard.worker.store_reporter import StoreReporter
from tuneyard.worker.supervisor import Supervisor, SupervisorTimings
from tuneyard.worker.telemetry import TelemetryTailer, read_file_range

log = logging.getLogger(__name__)


class Worker:
    """One job at a time. Run several (threads or processes) for more."""

    def __init__(self, db: Database, settings: Settings, environ: Mapping[str, str],
                 executor: Executor | None = None, worker_id: str | None = None,
                 capacity: Capacity | None = None, side_by_side: int = 1,
                 run_storage: RunStorage | None = None) -> None:
        """`capacity` defaults to what `settings.worker_memory_bytes` sets or the host measures;
        `side_by_side`: the workers of this process, whose runners share the host's cores; `run_storage`
        to what `settings.run_storage` names, opened and checked here (a SettingsError if unusable)."""
        self.db, self.settings = db, settings
        self.env = runner_env(environ, {**hub_environment(settings), **judge_environment(settings),
                                        **storage_environment(settings, environ),
                                        **thread_environment(settings, environ, side_by_side)})
        self.executor = executor or make_executor(settings)
        self.run_storage = run_storage or RunStorage.open(settings.run_storage, settings.run_storage_endpoint)
        self.id = worker_id or new_worker_id()
        self.capacity = capacity or declared_capacity(settings.worker_memory_bytes)

    def run(self, shutdown: threading.Event) -> None:
        """Work until `shutdown` is set; then hand back what is running and return."""
        memory = self.capacity.memory_bytes
        register_worker(self.db, self.id, host=socket.gethostname(), pid=os.getpid(), memory_bytes=memory,
                        device=self.capacity.device)
        log.info("worker %s: started, %s memory for jobs on %s (%s)", self.id,
                 "unknown" if memory is None else format_bytes(memory), self.capacity.device, self.capacity.source)
        try:
            while not shutdown.is_set():
                worker_heartbeat(self.db, self.id)
                reap(self.db)
                claimed = claim(self.db, self.id, self.settings.lease_seconds, memory_bytes=memory,
                                device=self.capacity.device)
                if claimed is None:
                    shutdown.wait(self.settings.poll_seconds)
                    continue
                self.run_job(claimed, shutdown)
        finally:
            set_worker_state(self.db, self.id, "stopped")
            log.info("worker %s: stopped", self.id)

    def run_job(self, claimed: ClaimedJob, shutdown: threading.Event) -> Outcome:
        job_id = claimed.job_id
        log.info("worker %s: job %s attempt %d claimed", self.id, job_id, claimed.attempt)
        run_dir = runs.run_dir(self.settings, job_id)
        job = load_job(self.db, job_id)
        secrets, lost = job_secrets.runner_environment(self.db, job.labels)
        if lost:
            return self._without_secrets(claimed, lost)
        lineage = job_lineage(job)
        if not self._restore(claimed, run_dir):
            return Outcome(Verdict.FAILED, None, "the run folder could not be fetched from run storage")
        launch = self._launch(claimed, run_dir, lineage, secrets)
        reporter = StoreReporter(self.db, job_id, claimed.attempt, run_dir, self.settings.lease_seconds, lineage,
                                 Prices(self.settings.price_per_cpu_hour, self.settings.price_per_cuda_hour),
                                 self.capacity.device)
        offset = _store_backlog(claimed, run_dir / contract.TELEMETRY_FILE, reporter)
        if offset is None:
            return Outcome(Verdict.LOST_LEASE, None, "the job moved on before its runner started")
        supervisor = Supervisor(launch, executor=self.executor, reporter=reporter,
                                timings=SupervisorTimings.from_settings(self.settings), telemetry_offset=offset)
        reporter.on_stop_requested = supervisor.request_stop
        reporter.on_cancel_requested = supervisor.request_cancel
        done = threading.Event()
        threading.Thread(target=_release_on_shutdown, args=(shutdown, done, supervisor), daemon=True,
                         name=f"drain-{job_id}").start()
        try:
            outcome = supervisor.run()
        finally:
            done.set()
        if outcome.verdict in (Verdict.COMPLETED, Verdict.CANCELLED):  # it never runs again
            job_secrets.forget(self.db, job.labels)
        return outcome

    def _without_secrets(self, claimed: ClaimedJob, lost: list[str]) -> Outcome:
        """Fail a job whose secrets this process does not hold, before its runner starts: run
        without them it would train on something else (a hub model it cannot download) or fail late."""
        message = (f"the job's {', '.join(lost)} is gone: secrets are held only in the memory of the server "
                   "process that accepted the job, and that process has restarted or this worker runs in "
                   "another one; submit the job again with it")
        try:
            fail(self.db, claimed.job_id, UserError.error_type, message, attempt=claimed.attempt,
                 details={"missing_secrets": lost})
        except Exception:  # another attempt owns it, or it was cancelled meanwhile: nothing to record
            log.exception("job %s attempt %d: could not record its missing secrets", claimed.job_id, claimed.attempt)
        log.warning("job %s attempt %d: failed before launch, %s not held by this process", claimed.job_id,
                    claimed.attempt, ", ".join(lost))
        return Outcome(Verdict.USER_ERROR, None, message, error_type=UserError.error_type,
                       details={"missing_secrets": lost})

    def _restore(self, claimed: ClaimedJob, run_dir: Path) -> bool:
        """Fetch from run storage what this machine's run folder lacks to resume (an earlier attempt
        ran elsewhere); False, with the attempt failed as a platform error (retried), when it cannot."""
        chosen = claimed.resume_path if claimed.resume_path and not Path(claimed.resume_path).is_absolute() else None
        try:
            self.run_storage.run(claimed.job_id).restore(run_dir, chosen)
        except RunStorageError as exc:
            log.warning("job %s attempt %d: %s", claimed.job_id, claimed.attempt, exc)
            try:
                retry_or_fail(self.db, claimed.job_id, claimed.attempt, exc.error_type,
                              f"could not fetch the run folder before starting: {exc}", {})
            except Exception:  # another attempt owns it, or it was cancelled meanwhile: nothing to record
                log.exception("job %s attempt %d: could not record the failed fetch", claimed.job_id, claimed.attempt)
            return False
        return True

    def _launch(self, claimed: ClaimedJob, run_dir: Path, lineage: dict[str, Any],
                secrets: dict[str, str]) -> Launch:
        run_dir.mkdir(parents=True, exist_ok=True)
        spec = run_dir / contract.SPEC_FILE
        if not spec.exists():  # later attempts start from the runner's own resolved spec.json
            write_json_atomic(spec, claimed.config)
        write_json_atomic(run_dir / contract.LINEAGE_FILE, lineage)  # ids for the model card
        processes = spec_processes(claimed.config)
        resume = _resume_arg(claimed, run_dir)
        run_copy = self.run_storage.url_of(claimed.job_id)
        argv = runner_argv(self.settings, run_dir, resume, processes, run_copy)
        rank_argv = runner_argv(self.settings, run_dir, resume, run_copy=run_copy)
        # The job's secrets join this runner's environment only, never the worker's or another job's.
        env = {**self.env, **rank_threads(self.env, processes), **secrets}
        return Launch(claimed.job_id, [*argv, "--exit-with-parent"], run_dir, env,
                      ranks=spec_ranks(claimed.config), rank_argv=[*rank_argv, "--exit-with-parent"],
                      resources=rank_resources(env, claimed.config, claimed.memory_estimate_bytes))


def _resume_arg(claimed: ClaimedJob, run_dir: Path) -> str:
    """A checkpoint the user chose, when it is still there; otherwise the newest complete one.

    With no checkpoint at all, `latest` starts from the beginning.
    """
    if claimed.resume_path:
        chosen = Path(claimed.resume_path)
        chosen = chosen if chosen.is_absolute() else run_dir / chosen
        if (chosen / contract.MANIFEST_FILE).exists():
            return str(chosen)
    return "latest"


def _store_backlog(claimed: ClaimedJob, telemetry: Path, reporter: StoreReporter) -> int | None:
    """Store what an earlier attempt's runner wrote after the store last heard from it; return the
    byte this attempt's runner will begin writing at, or None when the job is no longer ours.

    Done before the runner starts: the file is append-only and one runner writes it at a time, so
    every line up to that byte is the earlier attempt's. Should the store fail here, the supervisor
    reads on from the committed offset instead, so the lines are still stored once (as this attempt's).
    """
    committed, size = claimed.telemetry_offset, _size(telemetry)
    # A file shorter than the stored offset is another machine's copy (fetched from run storage, or
    # none): the store has already read all it holds, and this attempt's runner begins at its end.
    start = size if committed is None else min(committed, size)
    tailer = TelemetryTailer(partial(read_file_range, telemetry), job_id=claimed.job_id, offset=start)
    records = tailer.read_records()
    try:
        reporter.on_backlog(records, tailer.offset, claimed.telemetry_attempt)
    except LeaseLost:
        log.warning("job %s attempt %d: lost before its runner started", claimed.job_id, claimed.attempt)
        return None
    except Exception:
        log.exception("job %s attempt %d: earlier telemetry not stored; the supervisor reads it", claimed.job_id,
                      claimed.attempt)
        return start
    return tailer.offset


def _release_on_shutdown(shutdown: threading.Event, done: threading.Event, supervisor: Supervisor) -> None:
    while not done.is_set():
        if shutdown.wait(0.2):
            supervisor.request_release()
            return


def _size(path: Path) -> int:
    """What the telemetry file holds here (0 when there is none)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
