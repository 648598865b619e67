"""Several workers in one process (threads), started together and drained together.

Alongside them one housekeeping thread heartbeats for every worker and reaps expired leases, on
the heartbeat's clock whether the workers are idle or busy: a worker deep in a day-long job is
still alive, and a job whose worker died is put back even while every worker here is busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from tuneyard.scheduler import reap
from tuneyard.scheduler.capacity import declared_capacity
from tuneyard.scheduler.workers import worker_heartbeat
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.training.run_storage import RunStorage
from tuneyard.worker.executors import Executor
from tuneyard.worker.executors.registry import make_executor
from tuneyard.worker.loop import Worker

log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, db: Database, settings: Settings, environ: Mapping[str, str], size: int,
                 executor: Executor | None = None) -> None:
        """`executor` defaults to the one `settings.executor` names; the workers share it."""
        self.shutdown = threading.Event()
        self.db = db
        executor = executor or make_executor(settings)
        capacity = declared_capacity(settings.worker_memory_bytes, workers=size)  # one host: measured once
        # Opened and checked once, at start: bad run storage stops the process before it claims a job.
        storage = RunStorage.open(settings.run_storage, settings.run_storage_endpoint) if size else RunStorage()
        self.workers = [Worker(db, settings, environ, executor, capacity=capacity, side_by_side=size,
                               run_storage=storage) for _ in range(size)]
        self.settings = settings
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(target=self._run, args=(worker,), name=f"worker-{worker.id}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if self.workers:
            threading.Thread(target=self._housekeeping, name="worker-housekeeping", daemon=True).start()

    def _housekeeping(self) -> None:
        while not self.shutdown.wait(self.settings.heartbeat_seconds):
            try:
                for worker in self.workers:
                    worker_heartbeat(self.db, worker.id)
                for reaped in reap(self.db):
                    log.info("job %s: lease of attempt %d expired; now %s", reaped.job_id, reaped.attempt,
                             reaped.new_status)
            except Exception:
                log.exception("housekeeping failed; trying again in %.0fs", self.settings.heartbeat_seconds)

    def _run(self, worker: Worker) -> None:
        try:
            worker.run(self.shutdown)
        except Exception:
            # A worker that dies leaves its job to the reaper; say so loudly rather than vanish.
            log.exception("worker %s crashed; its job will be reclaimed when its lease expires", worker.id)

    def drain(self) -> None:
        """Stop claiming, hand running jobs back (checkpointed), wait for the runners to exit."""
        self.shutdown.set()
        deadline = self.settings.stop_grace_seconds + 10
        for thread in self._threads:
            thread.join(timeout=deadline)
            if thread.is_alive():
                log.warning("%s did not finish draining in %.0fs", thread.name, deadline)
