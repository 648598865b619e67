"""The store on an in-memory SQLite database, migrated: the fake unit tests use.

It is the real code on a real (if private) database, so a unit test exercises the same SQL the
service runs; only concurrency is out of reach (one shared connection). It lives with the tests,
not in the package: nothing in production uses it.
"""

from __future__ import annotations

from sqlalchemy.pool import StaticPool

from tuneyard.settings import Settings
from tuneyard.store.engine import Database, make_engine
from tuneyard.store.migrate import migrate


def memory_database() -> Database:
    # One connection for the engine's whole life: each new connection to :memory: is a new database.
    engine = make_engine(Settings(database_url="sqlite://"), poolclass=StaticPool)
    migrate(engine)
    return Database(engine)
