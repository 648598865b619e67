"""Clients follow a job on its stream, and the stream wakes on this process's own writes.

Over a real server (uvicorn in a thread) whose streams poll the database only once an hour: anything
that arrives sooner was woken by the write's notice (`store/changes.py`), not by a poll. What the
server was asked is counted by an ASGI layer in front of the app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from typer.testing import CliRunner

from tests.integration.test_api_conditional import statements
from tests.integration.test_api_stream_end import sse_items
from tests.support import api
from tests.support.api import Tenant, create_job, live_server, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.cli.main import app as cli
from tuneyard.client import TuneyardClient
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import lifecycle, telemetry
from tuneyard.store.engine import Database

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings
# A stream that missed its wake-up would wait for its hourly poll: fail well before that.
pytestmark = pytest.mark.timeout(120)

AN_HOUR = 3600.0


class Requests:
    """Every request's method and path, and an event set once a stream has been opened."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str]], streaming: threading.Event) -> None:
        self.app, self.seen, self.streaming = app, seen, streaming

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append((scope["method"], scope["path"]))
            if scope["path"].endswith("/stream"):
                self.streaming.set()
        await self.app(scope, receive, send)


@pytest.fixture
def seen() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def streaming() -> threading.Event:
    return threading.Event()


@pytest.fixture
def unpolled(api_settings: Settings, db: Database, seen: list[tuple[str, str]],
             streaming: threading.Event) -> Iterator[str]:
    """The base URL of a live server on the test's database whose streams poll it once an hour."""
    served = create_app(api_settings, db, stream_poll_seconds=AN_HOUR)
    served.add_middleware(Requests, seen=seen, streaming=streaming)
    with live_server(served) as base:
        yield base


def running_job(client: TestClient, db: Database, tenant: Tenant) -> tuple[str, int]:
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    claimed = claim(db, "w1", 60)
    assert claimed is not None
    lifecycle.start(db, job_id, claimed.attempt)
    return job_id, claimed.attempt


def finish_once_streaming(db: Database, job_id: str, attempt: int, streaming: threading.Event) -> threading.Thread:
    """Play the worker in a thread: once a stream is open, a step, the model saved, completed."""
    def work() -> None:
        assert streaming.wait(30)
        telemetry.record_metrics(db, job_id, attempt, [telemetry.MetricIn(step=1, values={"loss": 2.0,
                                                                                         "total_steps": 1})])
        lifecycle.finalize(db, job_id, attempt)
        lifecycle.complete(db, job_id, attempt, {"loss": 2.0})

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    return worker


def test_a_stream_wakes_on_a_change_made_in_process_without_polling(
    app: FastAPI, client: TestClient, db: Database, tenant: Tenant, unpolled: str
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    with httpx.Client(base_url=unpolled, headers=tenant.headers, timeout=httpx.Timeout(30, read=30)) as http, \
            http.stream("GET", f"/v1/jobs/{job_id}/stream") as stream:
        items = sse_items(stream.iter_lines())
        assert [next(items)["data"]["type"] for _ in range(3)] == ["created", "claimed", "running"]
        with statements(db) as sent:
            telemetry.append_logs(db, job_id, attempt, [telemetry.LogIn("woken")])
            woken = next(items)  # an hour's poll away, unless the write woke the stream
        assert woken["event"] == "log" and woken["data"]["message"] == "woken"
    batch_reads = [s for s in sent if s.lstrip().upper().startswith("SELECT") and "FROM job_events" in s]
    # The read the notice woke, at most the empty one that follows a batch with items, and at most one
    # more when the process's follower (store/notices.py) saw the same commit while the stream was still
    # reading it (it drops only a wake-up for a revision it has finished reading): no polls.
    assert 1 <= len(batch_reads) <= 3, sent


def test_cli_follow_reads_one_stream_and_makes_no_polls(
    client: TestClient, db: Database, tenant: Tenant, unpolled: str, seen: list[tuple[str, str]],
    streaming: threading.Event, tmp_path: Path,
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    worker = finish_once_streaming(db, job_id, attempt, streaming)
    env = {"TUNEYARD_URL": unpolled, "TUNEYARD_API_KEY": tenant.key}
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "cli"), "jobs", "get", job_id, "--follow"], env=env)
    worker.join(30)
    assert result.exit_code == 0, result.output
    assert "step 1/1" in result.stdout and "completed" in result.stdout
    job_path = f"/v1/jobs/{job_id}"
    assert seen.count(("GET", f"{job_path}/stream")) == 1
    # The job read before the stream (for its total steps) and after it (for its outcome), nothing else.
    assert [path for _method, path in seen] == [job_path, f"{job_path}/stream", job_path]


def test_client_wait_follows_the_stream_and_polls_only_without_one(
    app: FastAPI, client: TestClient, db: Database, tenant: Tenant, unpolled: str, seen: list[tuple[str, str]],
    streaming: threading.Event,
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    worker = finish_once_streaming(db, job_id, attempt, streaming)
    with TuneyardClient(unpolled, tenant.key) as ty:
        assert ty.wait(job_id, timeout=60)["status"] == "completed"
    worker.join(30)
    assert [path for _method, path in seen] == [f"/v1/jobs/{job_id}/stream", f"/v1/jobs/{job_id}"]

    # A server (or a proxy) without the stream: the job is read instead.
    without_stream = TestClient(NoStream(app))
    answered = TuneyardClient("http://testserver", tenant.key, http=without_stream).wait(job_id, timeout=10)
    assert answered["status"] == "completed"


class NoStream:
    """The app behind a proxy that answers every stream with a plain page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith("/stream"):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<html>buffered</html>"})
            return
        await self.app(scope, receive, send)

