"""Notices of other processes' writes to jobs, handed to this process's `JobChanges`.

A stream waits on `JobChanges`, which this process's own commits tell at once (`Database.write`).
What another process commits (a `tuneyard worker`, a second API process) reaches it through one
follower per process, a thread started on the first watch and stopped by `Database.dispose`:

* PostgreSQL: every write transaction that bumped revisions sends `pg_notify(CHANNEL, job_id)` before
  its COMMIT (`announce`), so the notice goes out only if the write does. The follower LISTENs on a
  connection of its own and hands each job id to `JobChanges.notify`, skipping notices sent by this
  process's own connections (already told). Measured (`benchmarks/stream_notices.py`, a loaded 2-core
  host): another process's commit wakes a watcher here in p50 0.2 ms, max 12 ms; the write pays one
  more statement in its transaction (within the noise of a 4-15 ms logged write); idle, the follower
  waits in select() and costs ~0.3 ms of CPU a second.
* SQLite has no NOTIFY. The follower asks its own connection `PRAGMA data_version` (it changes when
  any other connection, here or in another process, commits) every `SQLITE_TICK_SECONDS`, and only
  when it changed reads `SELECT id, revision` of the watched jobs (the primary key) and hands them to
  `JobChanges.moved`: a stream is woken only if the revision is past what it has read. The latency is
  the tick: p50 50 ms, max 101 ms measured; an idle database costs one PRAGMA per tick (~1.5 ms of CPU
  a second, in proportion to the tick) and no read of any table.

A follower that loses its connection opens another (backing off up to `RECONNECT_MAX_SECONDS`) and
then wakes every watched job once, since notices sent meanwhile were lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from select import select as wait_for_input
from typing import Any, Protocol

from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from tuneyard.store.tables import Job

log = logging.getLogger(__name__)

CHANNEL = "tuneyard_jobs"
"""PostgreSQL's channel for job changes; each notice's payload is one job id."""
SQLITE_TICK_SECONDS = 0.1
"""How often the SQLite follower asks whether anyone committed: the latency of a cross-process wake."""
NOTICE_WAIT_SECONDS = 0.5
"""How long the PostgreSQL follower waits for notices before it checks whether it should stop."""
RECONNECT_MAX_SECONDS = 5.0


class Listeners(Protocol):
    """What a follower tells: `JobChanges`."""

    def watched(self) -> list[str]: ...

    def notify(self, job_ids: Collection[str]) -> None: ...

    def moved(self, revisions: dict[str, int]) -> None: ...


class Follower(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


def announce(session: Session, job_ids: Collection[str]) -> None:
    """Send a notice for each job, delivered when (and only if) `session`'s transaction commits."""
    session.execute(text("SELECT pg_notify(:channel, job_id) FROM unnest(CAST(:ids AS text[])) AS job_id"),
                    {"channel": CHANNEL, "ids": sorted(job_ids)})


def follower_for(reader: Engine, listeners: Listeners, own: set[int]) -> Follower | None:
    """The follower for the database `reader` (the engine's read-only transactions) reads; `own` are the
    server processes of this process's connections (`own_backends`). None for an in-memory SQLite,
    which no other process sees."""
    if reader.dialect.name == "postgresql":
        return PostgresFollower(reader, listeners, own)
    database = reader.url.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(reader.url):
        return None
    return SqliteFollower(reader, listeners)


def own_backends(engine: Engine) -> set[int]:
    """The server processes of `engine`'s pooled connections, kept up to date: their notices were told here."""
    pids: set[int] = set()

    @event.listens_for(engine, "connect")
    def _opened(dbapi_conn: Any, record: Any) -> None:
        record.info["backend_pid"] = dbapi_conn.info.backend_pid
        pids.add(dbapi_conn.info.backend_pid)

    @event.listens_for(engine, "close")
    @event.listens_for(engine, "detach")  # the follower's own: the pool forgets it, and so do we
    def _gone(_dbapi_conn: Any, record: Any) -> None:
        pids.discard(record.info.get("backend_pid"))

    return pids


class _Thread:
    """A daemon thread that runs `follow` on a fresh connection until stopped, reconnecting after errors."""

    name = "job-notices"

    def __init__(self, engine: Engine, listeners: Listeners) -> None:
        self.engine, self.listeners = engine, listeners
        self.stopping = threading.Event()
        self.connected = threading.Event()  # set while a connection is followed (tests wait on it)
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=NOTICE_WAIT_SECONDS * 4)

    def _run(self) -> None:
        delay = 0.1
        while not self.stopping.is_set():
            try:
                self.follow()
                delay = 0.1
            except Exception as exc:  # a dropped connection, a restarting server: follow again
                self.connected.clear()
                log.warning("job change notices: %s; reconnecting in %.1f s", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def follow(self) -> None:
        raise NotImplementedError


class PostgresFollower(_Thread):
    def __init__(self, engine: Engine, listeners: Listeners, own: set[int]) -> None:
        super().__init__(engine, listeners)
        self.own = own
        self.backend_pid: int | None = None

    def follow(self) -> None:
        pooled = self.engine.raw_connection()
        conn = pooled.driver_connection
        pooled.detach()  # its own connection for good: it stays in LISTEN, outside any transaction
        try:
            conn.autocommit = True  # type: ignore[union-attr]
            conn.execute(f"LISTEN {CHANNEL}")  # type: ignore[union-attr]
            self.backend_pid = conn.info.backend_pid  # type: ignore[union-attr]
            self.connected.set()
            self.listeners.notify(self.listeners.watched())  # whatever changed before LISTEN
            while not self.stopping.is_set():
                for notice in conn.notifies(timeout=0):  # type: ignore[union-attr]
                    if notice.pid not in self.own:
                        self.listeners.notify((notice.payload,))
                # Waiting in select rather than in notifies(timeout=...), whose wait wakes itself up
                # many times a second: 1.1 ms of CPU a second against 0.1 ms idle.
                wait_for_input([conn.fileno()], [], [], NOTICE_WAIT_SECONDS)  # type: ignore[union-attr]
        finally:
            self.connected.clear()
            pooled.close()


class SqliteFollower(_Thread):
    def follow(self) -> None:
        conn = self.engine.connect()
        conn.detach()
        try:
            version = self._data_version(conn)
            self.connected.set()
            self._tell(conn)  # whatever changed before the first version was read
            while not self.stopping.wait(SQLITE_TICK_SECONDS):
                now = self._data_version(conn)
                if now != version:
                    version = now
                    self._tell(conn)
        finally:
            self.connected.clear()
            conn.close()

    @staticmethod
    def _data_version(conn: Any) -> int:
        # Straight to sqlite3, outside any transaction: the one statement an idle tick makes, no table read.
        row = conn.connection.dbapi_connection.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def _tell(self, conn: Any) -> None:
        watched = self.listeners.watched()
        if not watched:
            return
        with conn.begin():  # the reader's: BEGIN DEFERRED
            rows = conn.execute(select(Job.id, Job.revision).where(Job.id.in_(watched))).all()
        self.listeners.moved({job_id: revision for job_id, revision in rows})
