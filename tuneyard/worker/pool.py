"""Several workers in one process (threads), started together and drained together."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.worker.loop import Worker

log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(self, db: Database, settings: Settings, environ: Mapping[str, str], size: int) -> None:
        self.shutdown = threading.Event()
        self.workers = [Worker(db, settings, environ) for _ in range(size)]
        self.settings = settings
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(target=self._run, args=(worker,), name=f"worker-{worker.id}", daemon=True)
            thread.start()
            self._threads.append(thread)

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
