"""Inline reads (store/inline_reads.py) never wait: a locked SQLite database fails them at once, so the
event loop they run on is never held up; and they cannot write."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, bindparam, create_engine, select

from tuneyard.store.inline_reads import InlineReadBusy, InlineReads

numbers = Table("numbers", MetaData(), Column("n", Integer))
AT_LEAST = select(numbers.c.n).where(numbers.c.n >= bindparam("least")).order_by(numbers.c.n)


def first(reads: InlineReads, params: dict[str, Any]) -> tuple[Any, ...] | None:
    return asyncio.run(reads.first(AT_LEAST, params))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "inline.db"
    with sqlite3.connect(path, isolation_level=None) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE numbers (n INTEGER)")
        setup.executemany("INSERT INTO numbers VALUES (?)", [(1,), (2,), (3,)])
    setup.close()
    return path


def test_a_read_answers_with_the_statements_bound_values(database: Path) -> None:
    engine = create_engine(f"sqlite:///{database}")
    reads = InlineReads(engine)
    try:
        assert reads.available
        assert first(reads, {"least": 2}) == (2,)
        assert first(reads, {"least": 9}) is None
        assert reads._sqlite is not None
        with pytest.raises(sqlite3.OperationalError, match="readonly"):  # query_only: it cannot write
            reads._sqlite.execute("INSERT INTO numbers VALUES (4)")
    finally:
        reads.close()
        engine.dispose()


def test_a_locked_database_fails_the_read_at_once_instead_of_waiting(database: Path) -> None:
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # held from the first write until the connection closes
    holder.execute("INSERT INTO numbers VALUES (4)")
    engine = create_engine(f"sqlite:///{database}")
    reads = InlineReads(engine)
    try:
        started = time.monotonic()
        with pytest.raises(InlineReadBusy, match="locked"):
            first(reads, {"least": 1})
        assert time.monotonic() - started < 1.0  # the engine's own connections would wait 30 s
        holder.close()
        assert first(reads, {"least": 4}) == (4,)
    finally:
        holder.close()
        reads.close()
        engine.dispose()


def test_a_sqlite_database_in_memory_is_not_read_inline() -> None:
    # Its own connection would open another, empty, database.
    engine = create_engine("sqlite://")
    assert not InlineReads(engine).available
    engine.dispose()
