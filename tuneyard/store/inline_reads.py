"""Reads made on the API's event loop, for the hottest requests: never blocking it, never waiting long.

The polls `api/hot_reads.py` answers read one row of a few columns. Through a pooled connection on
a worker thread that read cost ~180 µs of CPU on SQLite, of which the statement itself is ~3: the
rest is the hand-off to the thread and back (~105) and SQLAlchemy's connection, transaction and
result machinery (~75); on PostgreSQL a poll cost 0.9 ms of the server's CPU in all. So these reads
are made where the request is, on connections of their own, with statements SQLAlchemy compiles once:

- **SQLite**: the read is a lookup in pages this process's cache usually holds, made synchronously.
  Its busy timeout is 0, so a read that would wait for a lock (WAL readers almost never do: a crash's
  recovery, a closing connection's checkpoint) fails at once; it cannot write (`PRAGMA query_only`);
  each statement is its own read transaction (autocommit).
- **PostgreSQL**: the read is a round trip, awaited on an asynchronous psycopg connection (up to
  `CONNECTIONS` per event loop, autocommit, read-only, `statement_timeout` short), so the loop serves
  others meanwhile. The same read (statement and values) arriving while one waits for a connection
  joins it: not yet sent, its snapshot will be newer than the joiner's arrival.

Either way a read that fails raises `InlineReadBusy` and the caller takes its usual path (the app, on
a thread, which waits where it must and says what went wrong in its words). A PostgreSQL connection
that failed is dropped, and no new one is made for `RECONNECT_SECONDS`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

STATEMENT_TIMEOUT_MS = 2000
"""A PostgreSQL read taking longer is cancelled, and the poll goes the app's way."""
RECONNECT_SECONDS = 1.0
"""After a PostgreSQL connection failed, reads go the usual way this long before one is tried again."""
CONNECTIONS = 4
"""PostgreSQL connections an event loop reads on at most: a read waits for the server's answer, and
under load (the server's CPU shared with training) one connection made the polls queue behind it."""


class InlineReadBusy(Exception):
    """The database would have made the read wait long, or failed it: take the usual path instead."""


class InlineReads:
    """A read-only connection for the event loop: SQLite's (with a lock, for the tests' several loops)
    or PostgreSQL's (asynchronous, one per loop)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        path = engine.url.database if self._dialect == "sqlite" else None
        self._path = path if path and path != ":memory:" and not path.startswith("file:") else None
        self._lock = threading.Lock()
        self._sqlite: sqlite3.Connection | None = None
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._failed_at = float("-inf")
        self._compiled: dict[int, tuple[ClauseElement, str, tuple[str, ...]]] = {}

    @property
    def available(self) -> bool:
        return self._path is not None or self._dialect == "postgresql"

    async def first(self, statement: ClauseElement, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The statement's first row as a tuple (its columns in order), or None; `InlineReadBusy` when
        the read would wait or fails. Only where `available`."""
        sql, names = self._compile(statement)
        if self._path is not None:
            return self._sqlite_first(sql, tuple(params[n] for n in names))
        return await self._postgres_first(sql, params)

    def close(self) -> None:
        """Closes every connection (from any thread: a PostgreSQL one's socket is simply finished)."""
        with self._lock:
            if self._sqlite is not None:
                self._sqlite.close()
                self._sqlite = None
            for pool in self._pools.values():
                for connection in pool.made:
                    connection.pgconn.finish()
            self._pools.clear()

    def _sqlite_first(self, sql: str, values: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            try:
                if self._sqlite is None:
                    # timeout=0: no busy handler; isolation_level=None: autocommit, each SELECT its own snapshot.
                    self._sqlite = sqlite3.connect(self._path or "", timeout=0, isolation_level=None,
                                                   check_same_thread=False)
                    self._sqlite.execute("PRAGMA query_only=1")
                row: tuple[Any, ...] | None = self._sqlite.execute(sql, values).fetchone()
            except sqlite3.Error as exc:
                raise InlineReadBusy(str(exc)) from exc
        return row

    async def _postgres_first(self, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
        pool = self._pools.setdefault(asyncio.get_running_loop(), _LoopPool())
        same = (sql, tuple(sorted(params.items())))
        queued = pool.queued.get(same)
        if queued is not None:  # the same read waits for a connection: its answer will be newer than now
            return await asyncio.shield(queued)
        answer: asyncio.Future[tuple[Any, ...] | None] = asyncio.get_running_loop().create_future()
        pool.queued[same] = answer
        try:
            try:
                connection = await self._take(pool)
            finally:
                del pool.queued[same]  # sent from now on: a read that arrives later makes its own
            row = await self._execute(pool, connection, sql, params)
        except BaseException as exc:
            answer.set_exception(exc if isinstance(exc, InlineReadBusy) else InlineReadBusy(repr(exc)))
            answer.exception()  # retrieved: none may have joined it
            raise
        answer.set_result(row)
        return row

    async def _execute(self, pool: _LoopPool, connection: psycopg.AsyncConnection[Any], sql: str,
                       params: dict[str, Any]) -> tuple[Any, ...] | None:
        try:
            cursor = await connection.execute(sql, params)
            row: tuple[Any, ...] | None = await cursor.fetchone()
        except psycopg.Error as exc:
            self._failed_at = time.monotonic()
            with self._lock:
                pool.made.remove(connection)
            connection.pgconn.finish()
            pool.released()
            raise InlineReadBusy(str(exc)) from exc
        pool.give_back(connection)
        return row

    async def _take(self, pool: _LoopPool) -> psycopg.AsyncConnection[Any]:
        """An idle connection of the loop's, a new one while there are fewer than CONNECTIONS, or the
        next one given back."""
        if pool.idle:
            return pool.idle.pop()
        if len(pool.made) + pool.connecting >= CONNECTIONS:
            return await pool.next_given_back()
        if time.monotonic() - self._failed_at < RECONNECT_SECONDS:
            raise InlineReadBusy("a connection to PostgreSQL failed moments ago")
        args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)  # as the engine connects
        pool.connecting += 1
        try:
            connection = await psycopg.AsyncConnection.connect(*args, **{**kwargs, "connect_timeout": 2},
                                                               autocommit=True)
            await connection.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            await connection.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            self._failed_at = time.monotonic()
            raise InlineReadBusy(str(exc)) from exc
        finally:
            pool.connecting -= 1
        with self._lock:
            pool.made.append(connection)
        return connection

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


@dataclass
class _LoopPool:
    """One event loop's PostgreSQL connections: those made, those idle, and the reads waiting for one."""

    made: list[psycopg.AsyncConnection[Any]] = field(default_factory=list)
    idle: list[psycopg.AsyncConnection[Any]] = field(default_factory=list)
    waiting: deque[asyncio.Future[psycopg.AsyncConnection[Any]]] = field(default_factory=deque)
    connecting: int = 0
    queued: dict[tuple[str, tuple[tuple[str, Any], ...]], asyncio.Future[tuple[Any, ...] | None]] = field(
        default_factory=dict)
    """The reads waiting for a connection, by statement and values: one arriving meanwhile with the same
    ones joins it. Not yet sent, its snapshot will be newer than the joiner's arrival, so the joiner
    reads what its own read would have (as `api/stream_reads.py`'s streams join queued reads). A hundred
    followers opening at once waited ~0.5 s for their turns on the connections, each asking the same."""

    def give_back(self, connection: psycopg.AsyncConnection[Any]) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():  # a waiter whose request was cancelled is passed over
                waiter.set_result(connection)
                return
        self.idle.append(connection)

    def released(self) -> None:
        """A connection was dropped: the first waiter makes its own (or finds the pool failing)."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(InlineReadBusy("the connection it waited for failed"))
                return

    async def next_given_back(self) -> psycopg.AsyncConnection[Any]:
        waiter: asyncio.Future[psycopg.AsyncConnection[Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.give_back(waiter.result())  # handed over as this request was cancelled: pass it on
            raise
