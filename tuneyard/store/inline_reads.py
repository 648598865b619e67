"""Reads cheap enough to make on the API's event loop: SQLite only, never waiting for a lock.

The polls `api/hot_reads.py` answers read one row of a few columns. Through a pooled connection on
a worker thread that read cost ~180 µs of CPU, of which the statement itself is ~3: the rest is the
hand-off to the thread and back (~105) and SQLAlchemy's connection, transaction and result machinery
(~75). On SQLite the read is a lookup in pages this process's cache usually holds, so it is made
where the request is, on the event loop, on a connection of its own:

- it never waits: its busy timeout is 0, so a read that would wait for a lock (WAL readers almost
  never do: a crash's recovery, a closing connection's checkpoint) fails at once with
  `InlineReadBusy`, and the caller takes its usual path (the app, on a thread, which may wait);
- it cannot write (`PRAGMA query_only`), and each statement is its own read transaction (autocommit);
- statements are compiled once, by SQLAlchemy, for SQLite's placeholders.

On PostgreSQL a read is a network round trip, which must not hold up the loop: `available` is False
and callers keep their thread.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class InlineReadBusy(Exception):
    """The database would have made the read wait (or failed it): take the usual path instead."""


class InlineReads:
    """One read-only SQLite connection for the event loop (and a lock, for the tests' several loops)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        path = engine.url.database if engine.dialect.name == "sqlite" else None
        self._path = path if path and path != ":memory:" and not path.startswith("file:") else None
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._compiled: dict[int, tuple[ClauseElement, str, tuple[str, ...]]] = {}

    @property
    def available(self) -> bool:
        return self._path is not None

    def first(self, statement: ClauseElement, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The statement's first row as a tuple (its columns in order), or None; `InlineReadBusy` when
        the read would wait or fails. Only where `available`."""
        sql, names = self._compile(statement)
        with self._lock:
            try:
                row: tuple[Any, ...] | None = self._open().execute(sql, tuple(params[n] for n in names)).fetchone()
            except sqlite3.Error as exc:
                raise InlineReadBusy(str(exc)) from exc
        return row

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            assert self._path is not None, "inline reads are for a SQLite file"
            # timeout=0: no busy handler; isolation_level=None: autocommit, each SELECT its own snapshot.
            connection = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA query_only=1")
            self._connection = connection
        return self._connection

    def _compile(self, statement: ClauseElement) -> tuple[str, tuple[str, ...]]:
        # By identity (the statement kept beside, so its id cannot be reused): callers pass statements
        # built once a module, as tenancy's are, never one per call.
        found = self._compiled.get(id(statement))
        if found is None or found[0] is not statement:
            compiled = statement.compile(dialect=self._engine.dialect)
            assert isinstance(compiled, SQLCompiler)  # a SELECT's: it knows its placeholders' order
            found = (statement, str(compiled), tuple(compiled.positiontup or ()))
            self._compiled[id(statement)] = found
        return found[1], found[2]
