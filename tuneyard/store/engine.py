"""Engines and transactions.

SQLite is the embedded default, so it gets the settings a multi-process service needs: WAL (readers
never block the writer), a busy timeout (writers queue instead of failing), foreign keys, and
`BEGIN IMMEDIATE` for write transactions. pysqlite's own transaction handling would start them
lazily as DEFERRED, which lets two writers both read and then deadlock on the upgrade to a write
lock; so we switch it off and emit BEGIN ourselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from tuneyard.settings import Settings
from tuneyard.store import notices
from tuneyard.store.changes import JobChanges, changed_in
from tuneyard.store.inline_reads import InlineReads
from tuneyard.store.secrets import HeldSecrets, SecretHolder

BUSY_TIMEOUT_S = 30.0
# Execution option marking a transaction that only reads; on SQLite it then begins DEFERRED so
# readers never wait for the write lock.
READ_ONLY = "tuneyard_read_only"


POOL_SIZE = 24
"""Connections a process keeps open: the API's request threads (tuneyard.api.app.API_THREADS) plus
the workers' and the reaper's, so that a burst of requests never opens and closes connections (a
new PostgreSQL connection forks a backend: milliseconds, on the cores everything else needs)."""


def make_engine(settings: Settings, **engine_kwargs: Any) -> Engine:
    """An engine for Settings.resolved_database_url, configured for its dialect."""
    url = settings.resolved_database_url
    if "poolclass" not in engine_kwargs:
        engine_kwargs.setdefault("pool_size", POOL_SIZE)
        engine_kwargs.setdefault("max_overflow", POOL_SIZE // 2)
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **engine_kwargs)
    engine_kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **engine_kwargs)


def _sqlite_engine(url: str, **engine_kwargs: Any) -> Engine:
    connect_args = engine_kwargs.pop("connect_args", {})
    connect_args.setdefault("timeout", BUSY_TIMEOUT_S)
    engine = create_engine(url, connect_args=connect_args, **engine_kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, see module docstring
        cursor = dbapi_conn.cursor()
        if ":memory:" not in url and "mode=memory" not in url:
            cursor.execute("PRAGMA journal_mode=WAL")
            # WAL is durable across crashes at NORMAL; FULL would fsync every commit.
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "DEFERRED" if conn.get_execution_options().get(READ_ONLY) else "IMMEDIATE"
        # Straight to the sqlite3 connection: through exec_driver_sql, SQLAlchemy's execution machinery
        # cost a poll of a job more than its own statements (13 % of the server's samples under load).
        # COMMIT and ROLLBACK still go through SQLAlchemy, on this same connection.
        # (dbapi_connection, the sqlite3 connection itself: it stays set on a detached connection.)
        conn.connection.dbapi_connection.execute(f"BEGIN {mode}")  # type: ignore[union-attr]

    return engine


class Database:
    """An engine plus the two kinds of transaction the repositories use.

    Rows returned by repositories are detached snapshots (expire_on_commit is off): reading them
    after the transaction is safe, changing them changes nothing in the database.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Held beside the database, never in it: the jobs' secrets this process's workers hand their runners.
        self.secrets: SecretHolder = HeldSecrets()
        self.inline = InlineReads(engine)
        """Reads made on the API's event loop where that cannot hold it up (SQLite): `store/inline_reads.py`."""
        self._reader = engine.execution_options(**{READ_ONLY: True})
        self._announces = engine.dialect.name == "postgresql"
        own_backends: set[int] = set()
        if self._announces:
            # At READ COMMITTED every statement takes its own snapshot, in a transaction or not, so
            # BEGIN and COMMIT around a read only add two round trips. (SQLite keeps its read
            # transaction: there it is what holds one snapshot across statements.)
            self._reader = self._reader.execution_options(isolation_level="AUTOCOMMIT")
            own_backends = notices.own_backends(engine)
        # Who waits on a job here (its open streams), told after each commit that changed it, here or
        # (through the follower the first watch starts) in another process.
        reader = self._reader
        self.changes = JobChanges(lambda changes: notices.follower_for(reader, changes, own_backends))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction, committed on success, rolled back on any error; once it is
        committed, the jobs whose revision it bumped are announced to `changes` (and, on PostgreSQL,
        by NOTIFY to other processes)."""
        with Session(self.engine, expire_on_commit=False) as session:
            with session.begin():
                yield session
                changed = changed_in(session)
                if changed and self._announces:
                    notices.announce(session, changed)  # to other processes, sent by the COMMIT
            if changed:
                self.changes.notify(changed)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.changes.close()
        self.inline.close()
        self.engine.dispose()
