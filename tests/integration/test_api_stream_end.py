"""A live stream ends with an `end` event when its job goes away, and a client leaving logs nothing.

Over a real server (uvicorn in a thread): the in-process client buffers a whole response, and what
is under test is what happens on a connection while it is open.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, live_server, ready_dataset
from tuneyard.api.routes import job_timeline

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings


class ServerErrors(logging.Handler):
    """Warnings and errors logged by uvicorn and by tuneyard, once `watch()`ed: uvicorn configures its
    loggers (dropping their handlers, not propagating) when a server is made, so watch after that."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []
        self.loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.error", "tuneyard")]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()} {record.exc_info or ''}")

    def watch(self) -> None:
        for logger in self.loggers:
            logger.addHandler(self)


@pytest.fixture
def server_errors() -> Iterator[ServerErrors]:
    errors = ServerErrors()
    yield errors
    for logger in errors.loggers:
        logger.removeHandler(errors)


def sse_items(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Items of an SSE stream as they arrive; comments (keep-alive pings) skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if fields:
                yield {"event": fields.get("event"), "id": fields.get("id"), "data": json.loads(fields["data"])}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value


def test_deleting_a_job_ends_its_open_stream_with_an_end_event(
    app: FastAPI, client: TestClient, tenant: Tenant, server_errors: ServerErrors
) -> None:
    job = create_job(client, tenant, ready_dataset(client, tenant)["id"])
    with live_server(app) as base, httpx.Client(base_url=base, headers=tenant.headers, timeout=10) as http:
        server_errors.watch()
        with http.stream("GET", f"/v1/jobs/{job['id']}/stream") as stream:
            items = sse_items(stream.iter_lines())
            first = next(items)
            assert first["event"] == "event"  # the job's creation: the stream is live
            assert http.delete(f"/v1/jobs/{job['id']}").status_code == 204
            rest = list(items)  # ends only when the server ends the stream
    assert rest[-1]["event"] == "end" and rest[-1]["data"] == {"status": "deleted"}
    assert rest[-1]["id"]  # a position like any other, so a client resuming from it gets 404, not a repeat
    assert not server_errors.records, server_errors.records


@pytest.mark.parametrize("keepalive", [0.01, 15.0])
def test_a_client_leaving_an_open_stream_logs_no_error(
    app: FastAPI, client: TestClient, tenant: Tenant, server_errors: ServerErrors,
    monkeypatch: pytest.MonkeyPatch, keepalive: float,
) -> None:
    monkeypatch.setattr(job_timeline, "KEEPALIVE_SECONDS", keepalive)
    job = create_job(client, tenant, ready_dataset(client, tenant)["id"])
    with live_server(app) as base:
        server_errors.watch()
        for _ in range(5):
            with httpx.Client(base_url=base, headers=tenant.headers, timeout=10) as http, \
                    http.stream("GET", f"/v1/jobs/{job['id']}/stream") as stream:
                assert next(sse_items(stream.iter_lines()))["event"] == "event"
            time.sleep(0.1)  # idle polls and pings run into the closed connection
        assert httpx.get(f"{base}/healthz").status_code == 200
    assert not server_errors.records, server_errors.records


def test_a_stream_of_a_job_deleted_before_it_opened_is_404(client: TestClient, tenant: Tenant) -> None:
    job = create_job(client, tenant, ready_dataset(client, tenant)["id"])
    assert client.delete(f"/v1/jobs/{job['id']}", headers=tenant.headers).status_code == 204
    response = client.get(f"/v1/jobs/{job['id']}/stream", headers=tenant.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
