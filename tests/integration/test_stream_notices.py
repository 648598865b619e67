"""A stream wakes on another process's writes, and an idle stream reads nothing.

Over a real server (uvicorn in a thread) whose streams poll the database once an hour: a change another
process made that arrives sooner was carried by the process's follower (`store/notices.py`:
LISTEN/NOTIFY on PostgreSQL, `PRAGMA data_version` on SQLite), not by a poll.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from tests.integration.conftest import pg_url
from tests.integration.test_api_conditional import statements
from tests.integration.test_api_stream_end import sse_items
from tests.integration.test_follow_stream import AN_HOUR, running_job
from tests.support import api
from tests.support.api import Tenant, live_server
from tuneyard.api.app import create_app
from tuneyard.settings import Settings
from tuneyard.store import telemetry
from tuneyard.store.engine import Database
from tuneyard.store.notices import PostgresFollower

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings
pytestmark = pytest.mark.timeout(120)

# Another process: its own interpreter, engine and connections, writing through the store as a worker would.
WRITER = """
import sys
from tuneyard.settings import Settings
from tuneyard.store import telemetry
from tuneyard.store.engine import Database, make_engine
url, data_dir, job_id, attempt, message = sys.argv[1:]
db = Database(make_engine(Settings(data_dir=data_dir, database_url=url)))
telemetry.append_logs(db, job_id, int(attempt), [telemetry.LogIn(message)])
db.dispose()
"""
TELEMETRY_TABLES = ("jobs", "job_events", "metric_points", "log_lines")


def write_log_elsewhere(settings: Settings, job_id: str, attempt: int, message: str) -> None:
    subprocess.run([sys.executable, "-c", WRITER, settings.resolved_database_url, str(settings.data_dir), job_id,
                    str(attempt), message], check=True, timeout=60)


@contextmanager
def streams(base: str, tenant: Tenant, job_id: str, count: int = 1) -> Iterator[list[Iterator[dict[str, Any]]]]:
    """`count` open streams of the job, each past the job's first three events (created, claimed, running)."""
    with httpx.Client(base_url=base, headers=tenant.headers, timeout=httpx.Timeout(30, read=30)) as http:
        opened = [http.stream("GET", f"/v1/jobs/{job_id}/stream") for _ in range(count)]
        try:
            items = [sse_items(response.__enter__().iter_lines()) for response in opened]
            for each in items:
                assert [next(each)["data"]["type"] for _ in range(3)] == ["created", "claimed", "running"]
            yield items
        finally:
            for response in opened:
                response.__exit__(None, None, None)


def following(db: Database) -> Any:
    """The database's follower once it has its connection (the first stream started it)."""
    deadline = time.monotonic() + 10
    while (follower := db.changes.follower) is None or not follower.connected.is_set():
        assert time.monotonic() < deadline, "the follower never connected"
        time.sleep(0.02)
    return follower


def test_a_stream_wakes_on_another_processs_write(
    client: TestClient, db: Database, tenant: Tenant, api_settings: Settings
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    with live_server(create_app(api_settings, db, stream_poll_seconds=AN_HOUR)) as base, \
            streams(base, tenant, job_id) as [items]:
        following(db)
        write_log_elsewhere(api_settings, job_id, attempt, "from another process")
        woken = next(items)  # an hour's poll away, unless the notice woke the stream
    assert woken["event"] == "log" and woken["data"]["message"] == "from another process"


def test_idle_streams_read_nothing(client: TestClient, db: Database, tenant: Tenant, api_settings: Settings,
                                   open_db: Callable[[], Database]) -> None:
    job_id, attempt = running_job(client, db, tenant)
    # The shipped safety-net poll, not an hour: what a server's idle streams really cost.
    with live_server(create_app(api_settings, db)) as base, streams(base, tenant, job_id, count=3) as items:
        following(db)
        time.sleep(0.3)  # the follower's first look at the watched jobs, made as it connected
        with statements(db) as sent:
            time.sleep(2)
        reads = [s for s in sent if any(f" {table}" in s for table in TELEMETRY_TABLES)]
        assert reads == [], reads
        # ...and they still wake: another engine (as another process) writes.
        telemetry.append_logs(open_db(), job_id, attempt, [telemetry.LogIn("after the quiet")])
        for each in items:
            assert next(each)["data"]["message"] == "after the quiet"


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_the_listener_survives_its_connection_being_killed(
    client: TestClient, db: Database, tenant: Tenant, api_settings: Settings, open_db: Callable[[], Database]
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    writer = open_db()
    with live_server(create_app(api_settings, db, stream_poll_seconds=AN_HOUR)) as base, \
            streams(base, tenant, job_id) as [items]:
        follower = following(db)
        assert isinstance(follower, PostgresFollower)
        killed = follower.backend_pid
        admin = create_engine(pg_url(), poolclass=NullPool)
        with admin.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed}).scalar()
        admin.dispose()
        deadline = time.monotonic() + 20
        while not (follower.connected.is_set() and follower.backend_pid != killed):
            assert time.monotonic() < deadline, "the listener did not reconnect"
            time.sleep(0.05)
        telemetry.append_logs(writer, job_id, attempt, [telemetry.LogIn("after the kill")])
        assert next(items)["data"]["message"] == "after the kill"


def test_streams_of_one_job_share_the_read_of_a_change(
    client: TestClient, db: Database, tenant: Tenant, api_settings: Settings
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    served = create_app(api_settings, db, stream_poll_seconds=AN_HOUR)
    reads = served.state.context.stream_reads
    with live_server(served) as base, streams(base, tenant, job_id, count=10) as items:
        before = reads.reads_started
        telemetry.append_logs(db, job_id, attempt, [telemetry.LogIn("seen by ten")])
        got = [next(each) for each in items]
        started = reads.reads_started - before
    assert [item["data"]["message"] for item in got] == ["seen by ten"] * 10
    assert len({item["id"] for item in got}) == 1
    # One change woke ten streams standing at one position: they joined one read, or a few under
    # load (a stream that asks after that read finished reads for itself), never ten.
    assert 1 <= started <= 3, started
