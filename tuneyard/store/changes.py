"""Which jobs changed: each job's revision counter, and this process's notice of its bumps.

`jobs.revision` goes up by one with every write that changes what a read of the job, its metrics or
its logs shows: a status move (`status.transition`), a worker's telemetry or logs (`status.fence`
with `shown=True`), a claim, a user's or platform's event, a dialect's labels. A heartbeat that only
extends the lease does not bump it, so a job training quietly between records keeps its revision.
Those reads answer the revision as their ETag (`api/conditional.py`): a client that sends it back
gets 304 decided from the job's row alone, without the telemetry tables being read.

Every such write calls `bump(session, job_id)` for its UPDATE's values, which also marks the job in
the session; once the transaction commits, `Database.write` tells this process's `JobChanges`, so
an open stream of the job wakes at once instead of polling. Writes made by another process (a
`tuneyard worker`, another API process) reach it through the process's one follower
(`store/notices.py`: PostgreSQL's LISTEN/NOTIFY, within milliseconds; SQLite's `PRAGMA data_version`
checked every 0.1 s), started on the first watch; an idle stream reads nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from tuneyard.store.notices import Follower
from tuneyard.store.tables import Job

CHANGED = "tuneyard_changed_jobs"
"""The `Session.info` key under which a write transaction collects the jobs it changed."""


def bump(session: Session, job_id: str) -> dict[str, Any]:
    """The UPDATE values that advance the job's revision; the job is marked changed in `session`."""
    touched(session, job_id)
    return {"revision": Job.revision + 1}


def touched(session: Session, job_id: str) -> None:
    """Mark the job changed in `session` (for an UPDATE that set its revision itself)."""
    session.info.setdefault(CHANGED, set()).add(job_id)


def changed_in(session: Session) -> set[str]:
    found: set[str] = session.info.get(CHANGED, set())
    return found


Wake = Callable[[int | None], None]
"""A listener: called with the job's revision once known to have reached it (another process's write
seen by the SQLite follower), None when only "changed" is known."""


class JobChanges:
    """Listeners for changes to jobs: `watch` a job with a callable, and every committed write that
    bumped its revision calls it: this process's in the writer's thread, other processes' in the
    follower's (`store/notices.py`), started on the first watch. A listener must be quick and must
    not raise (an open stream's hands the wake-up to its event loop)."""

    def __init__(self, follower: Callable[[JobChanges], Follower | None] | None = None) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str, set[Wake]] = {}
        self._make_follower = follower
        self._follower: Follower | None = None

    def watch(self, job_id: str, wake: Wake) -> Callable[[], None]:
        """Call `wake` after each change to the job; returns the function that stops it."""
        with self._lock:
            self._watchers.setdefault(job_id, set()).add(wake)
            if self._make_follower is not None:
                make, self._make_follower = self._make_follower, None
                self._follower = make(self)
                if self._follower is not None:
                    self._follower.start()

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(job_id)
                if watchers is not None:
                    watchers.discard(wake)
                    if not watchers:
                        del self._watchers[job_id]

        return unwatch

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._watchers)

    def notify(self, job_ids: Iterable[str]) -> None:
        """The jobs changed (revision unknown): wake every listener of each."""
        with self._lock:
            wakes = [wake for job_id in job_ids for wake in self._watchers.get(job_id, ())]
        for wake in wakes:
            wake(None)

    def moved(self, revisions: Mapping[str, int]) -> None:
        """The jobs' revisions as another process left them: each listener judges whether it has read that far."""
        with self._lock:
            wakes = [(wake, revision) for job_id, revision in revisions.items()
                     for wake in self._watchers.get(job_id, ())]
        for wake, revision in wakes:
            wake(revision)

    @property
    def follower(self) -> Follower | None:
        """The follower of other processes' writes, once the first watch has started it."""
        return self._follower

    def close(self) -> None:
        """Stop the follower (the database is being disposed); no watch starts another."""
        with self._lock:
            self._make_follower = None
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
