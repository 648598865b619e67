"""Polls answered on the lean path (api/hot_reads.py) are the app's own answers, byte for byte, and a
kept answer reaches nobody the app would not give it to: a stranger, a revoked key, an older revision."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.types import Receive, Scope, Send

from tests.integration.test_api_conditional import statements
from tests.support import api
from tests.support.api import Tenant, create_job, finished_job, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.api.hot_reads import LARGEST_KEPT_BYTES, AnswerCache, HotReads, KeptAnswer
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import inline_reads, lifecycle, telemetry, tenancy
from tuneyard.store.engine import Database
from tuneyard.store.inline_reads import InlineReadBusy

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

POLLS = ("", "/metrics", "/metrics?since_step=1", "/metrics?since_step=1&kind=train", "/logs", "/logs?since=1",
         "/logs?tail=1", "/events")
BAD_POLLS = ("/metrics?since_step=abc", "/metrics?since_step=-5", "/logs?limit=0", "/metrics?kind=nope")
UNSHARED = {"date", "server"}  # uvicorn's own; TestClient sends neither, but a kept answer must not freeze them


@pytest.fixture
def app_alone(api_settings: Settings, db: Database) -> Iterator[TestClient]:
    """The same app without the lean path: the answers the lean path must give."""
    plain = create_app(api_settings, db, stream_poll_seconds=0.02)
    plain.user_middleware = [m for m in plain.user_middleware if m.cls is not HotReads]
    with TestClient(plain) as alone:
        yield alone


@contextmanager
def inline_statements(db: Database) -> Iterator[list[str]]:
    """The SQL sent meanwhile on SQLite's inline connection, which the engine's events do not see."""
    sent: list[str] = []
    connection = db.inline._sqlite  # the connection itself: sqlite3's trace is the only way to see it
    if connection is None:
        yield sent
        return
    connection.set_trace_callback(sent.append)
    try:
        yield sent
    finally:
        connection.set_trace_callback(None)


def hot_reads(app: FastAPI) -> HotReads:
    layer = app.middleware_stack
    while not isinstance(layer, HotReads):
        layer = layer.app  # type: ignore[union-attr]
    return layer


def running_job(client: TestClient, db: Database, tenant: Tenant) -> tuple[str, int]:
    """A running job with three metric points and three log lines, and its attempt."""
    job_id: str = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    claimed = claim(db, "w1", 60)
    assert claimed is not None
    lifecycle.start(db, job_id, claimed.attempt)
    telemetry.record_metrics(db, job_id, claimed.attempt, [telemetry.MetricIn(step=s, values={"loss": 3.0 - s / 10})
                                                           for s in (1, 2, 3)])
    telemetry.append_logs(db, job_id, claimed.attempt, [telemetry.LogIn(f"line {n}") for n in range(3)])
    return job_id, claimed.attempt


def answer_of(client: TestClient, url: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    got = client.get(url, headers=headers)
    return got.status_code, {k: v for k, v in got.headers.items() if k not in UNSHARED}, got.content


def test_kept_answers_and_304s_are_the_apps_own(
    client: TestClient, app_alone: TestClient, app: FastAPI, db: Database, tenant: Tenant
) -> None:
    job_id, _ = running_job(client, db, tenant)
    for poll in (*POLLS, *BAD_POLLS):
        url = f"/v1/jobs/{job_id}{poll}"
        expected = answer_of(app_alone, url, tenant.headers)
        assert answer_of(client, url, tenant.headers) == expected, poll  # the app's answer, kept
        assert answer_of(client, url, tenant.headers) == expected, poll  # the kept one
        if expected[0] == 200:
            tagged = {**tenant.headers, "If-None-Match": expected[1]["etag"]}
            assert answer_of(client, url, tagged) == answer_of(app_alone, url, tagged), poll
            assert answer_of(client, url, tagged)[0] == 304
    assert len(hot_reads(app).answers) == sum(1 for p in POLLS if not p.startswith("/events"))
    # A kept answer is read with one statement: the key, the job's revision and status, no telemetry; on
    # SQLite on the event loop's own connection, elsewhere through the engine.
    with statements(db) as sent, inline_statements(db) as sent_inline:
        for poll in ("", "/metrics", "/logs"):
            assert client.get(f"/v1/jobs/{job_id}{poll}", headers=tenant.headers).status_code == 200
    assert not sent, sent  # nothing through the engine: the app was not asked
    if db.dialect == "sqlite":  # sqlite3 can trace its connection; psycopg's inline one is seen below
        assert len(sent_inline) == 3 and all("revision" in s and "metric_points" not in s for s in sent_inline)


def test_a_change_is_answered_anew_and_the_old_answer_is_never_given(
    client: TestClient, app_alone: TestClient, db: Database, tenant: Tenant
) -> None:
    job_id, attempt = running_job(client, db, tenant)
    url = f"/v1/jobs/{job_id}/metrics?since_step=2"
    first = answer_of(client, url, tenant.headers)
    assert [p["step"] for p in client.get(url, headers=tenant.headers).json()["data"]] == [3]
    telemetry.record_metrics(db, job_id, attempt, [telemetry.MetricIn(step=4, values={"loss": 2.5})])
    now = answer_of(client, url, {**tenant.headers, "If-None-Match": first[1]["etag"]})
    assert now == answer_of(app_alone, url, tenant.headers) and now[1]["etag"] != first[1]["etag"]
    assert [p["step"] for p in client.get(url, headers=tenant.headers).json()["data"]] == [3, 4]


def test_strangers_and_revoked_keys_never_get_a_kept_answer(
    client: TestClient, db: Database, tenant: Tenant, other: Tenant
) -> None:
    job_id, _ = running_job(client, db, tenant)
    tags = {poll: client.get(f"/v1/jobs/{job_id}{poll}", headers=tenant.headers).headers["ETag"]
            for poll in ("", "/metrics", "/logs")}
    for poll, tag in tags.items():
        for headers in (other.headers, other.admin_headers, {**other.headers, "If-None-Match": tag}):
            stranger = client.get(f"/v1/jobs/{job_id}{poll}", headers=headers)
            assert stranger.status_code == 404 and "ETag" not in stranger.headers, poll
    tenancy.revoke_api_key(db, tenant.org_id, tenant.key_id)
    for poll, tag in tags.items():
        for headers in (tenant.headers, {**tenant.headers, "If-None-Match": tag}):
            revoked = client.get(f"/v1/jobs/{job_id}{poll}", headers=headers)
            assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "UNAUTHORIZED", poll
    # The organization's other key still reads the kept answers.
    assert client.get(f"/v1/jobs/{job_id}", headers={**tenant.admin_headers, "If-None-Match": tags[""]}
                      ).status_code == 304


def test_a_queued_job_is_always_the_apps_to_answer(
    client: TestClient, app_alone: TestClient, app: FastAPI, tenant: Tenant
) -> None:
    # Why a queued job waits depends on the live workers, which its revision does not name.
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    for _ in range(2):
        assert answer_of(client, f"/v1/jobs/{job_id}", tenant.headers) == answer_of(
            app_alone, f"/v1/jobs/{job_id}", tenant.headers)
    assert not [a for a in hot_reads(app).answers._answers.values() if b'"status":"queued"' in a.body]


def test_requests_the_lean_path_cannot_decide_go_to_the_app(
    client: TestClient, app_alone: TestClient, db: Database, tenant: Tenant
) -> None:
    job_id, _ = running_job(client, db, tenant)
    url = f"/v1/jobs/{job_id}"
    cases = [
        {},  # no key: 401 in the app's words
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer ty_nonsense"},
        {"Authorization": "Bearer "},
        {**tenant.headers, "Content-Length": "5"},
    ]
    for headers in cases:
        assert answer_of(client, url, headers)[:2] == answer_of(app_alone, url, headers)[:2], headers
    missing = f"/v1/jobs/job_{'0' * 26}"
    assert answer_of(client, missing, tenant.headers) == answer_of(app_alone, missing, tenant.headers)


def test_the_kept_answers_stay_within_their_bytes() -> None:
    cache = AnswerCache(capacity_bytes=1000)
    for n in range(5):
        cache.put(f"W/\"{n}\"", KeptAnswer("org", [], b"x" * 300))
    assert len(cache) == 3 and cache.get('W/"0"') is None and cache.get('W/"4"') is not None
    cache.get('W/"2"')  # used: kept over the older 3
    cache.put('W/"5"', KeptAnswer("org", [], b"x" * 300))
    assert cache.get('W/"2"') is not None and cache.get('W/"3"') is None
    cache.put('W/"big"', KeptAnswer("org", [], b"x" * 1001))
    assert cache.get('W/"big"') is None
    assert AnswerCache().capacity_bytes >= LARGEST_KEPT_BYTES


def test_a_lost_postgresql_connection_sends_polls_to_the_app_until_one_is_made_again(
    client: TestClient, app_alone: TestClient, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite's inline reads have no server to lose")
    monkeypatch.setattr(inline_reads, "RECONNECT_SECONDS", 0.5)
    job_id, _ = running_job(client, db, tenant)
    url = f"/v1/jobs/{job_id}/logs"
    expected = answer_of(app_alone, url, tenant.headers)
    assert answer_of(client, url, tenant.headers) == expected  # kept, and the inline connection made
    (lost,) = next(iter(db.inline._pools.values())).made  # its backend, to end as a restarted server would
    lost_pid = lost.info.backend_pid
    with db.engine.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost_pid})
    with statements(db) as sent:
        assert answer_of(client, url, tenant.headers) == expected  # the read fails: the app answers
        assert answer_of(client, url, tenant.headers) == expected  # within RECONNECT_SECONDS: the app again
    assert len([s for s in sent if "log_lines" in s]) == 2, sent
    time.sleep(0.6)
    with statements(db) as sent:
        assert answer_of(client, url, tenant.headers) == expected  # a new connection, the kept answer
    assert not sent, sent
    assert lost.closed and next(iter(db.inline._pools.values())).made[0].info.backend_pid != lost_pid


def test_an_inline_read_that_would_wait_leaves_the_poll_to_the_app(
    client: TestClient, app_alone: TestClient, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "sqlite":
        pytest.skip("a locked SQLite database: PostgreSQL's lost connection is the test above")
    job_id, _ = running_job(client, db, tenant)

    async def busy(*_args: object) -> None:  # as a locked database answers it (tests/unit/test_inline_reads.py)
        raise InlineReadBusy("database is locked")

    monkeypatch.setattr(db.inline, "first", busy)
    for poll in ("", "/metrics", "/logs"):
        url = f"/v1/jobs/{job_id}{poll}"
        assert answer_of(client, url, tenant.headers) == answer_of(app_alone, url, tenant.headers)


def test_polls_of_one_new_answer_wait_for_the_first_rendering_of_it(
    client: TestClient, app: FastAPI, db: Database, tenant: Tenant
) -> None:
    # After a change every poller misses at once: the app renders the new answer once, for all of them.
    job_id, attempt = running_job(client, db, tenant)
    telemetry.record_metrics(db, job_id, attempt, [telemetry.MetricIn(step=4, values={"loss": 2.5})])
    url = f"/v1/jobs/{job_id}/metrics?since_step=3"

    async def twenty_at_once() -> list[tuple[int, bytes]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=tenant.headers) as http:
            answers = await asyncio.gather(*(http.get(url) for _ in range(20)))
        return [(answer.status_code, answer.content) for answer in answers]

    with statements(db) as sent:
        answers = asyncio.run(twenty_at_once())
    assert {status for status, _ in answers} == {200} and len({body for _, body in answers}) == 1
    assert json.loads(answers[0][1])["data"][0]["step"] == 4
    assert len([s for s in sent if "metric_points" in s]) == 1, sent


def test_a_stream_opened_beside_the_app_is_the_apps_stream(
    client: TestClient, app_alone: TestClient, app: FastAPI, db: Database, tenant: Tenant, other: Tenant,
    api_settings: Settings,
) -> None:
    # A completed job's stream ends, so the whole of it can be compared, from the start and from a position.
    job_id = finished_job(client, db, api_settings, tenant)["job_id"]
    url = f"/v1/jobs/{job_id}/stream"
    whole = answer_of(app_alone, url, tenant.headers)
    assert whole[0] == 200 and whole[1]["content-type"].startswith("text/event-stream") and b"event: end" in whole[2]
    layer = hot_reads(app)
    inner, asked = layer.app, []

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        asked.append(scope["path"])
        await inner(scope, receive, send)

    layer.app = counting
    assert answer_of(client, url, tenant.headers) == whole
    assert asked == []  # opened beside the app
    middle = whole[2].split(b"\nid: ")[3].split(b"\n")[0].decode()
    resumed = {**tenant.headers, "Last-Event-ID": middle}
    assert answer_of(client, url, resumed) == answer_of(app_alone, url, resumed)
    # What the lean path cannot decide is the app's, in its words: a stranger, a bad position.
    for headers in (other.headers, {**tenant.headers, "Last-Event-ID": "1.2.3"},
                    {**tenant.headers, "Last-Event-ID": "9" * 101}):
        assert answer_of(client, url, headers) == answer_of(app_alone, url, headers)
        assert answer_of(client, url, headers)[0] in (404, 422)
    assert len(asked) == 6


def test_the_same_read_waiting_for_a_postgresql_connection_is_made_once(
    client: TestClient, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    if db.dialect != "postgresql":
        pytest.skip("SQLite's inline reads never wait for a connection")
    job_id, _ = running_job(client, db, tenant)
    monkeypatch.setattr(inline_reads, "CONNECTIONS", 1)
    executed: list[str] = []
    execute = db.inline._execute

    async def counted(*args: Any) -> Any:
        executed.append(args[2])
        return await execute(*args)

    monkeypatch.setattr(db.inline, "_execute", counted)

    async def twenty_at_once() -> list[tenancy.JobRevision | None]:
        return await asyncio.gather(*(tenancy.job_revision_inline(db, tenant.key, job_id) for _ in range(20)))

    found = asyncio.run(twenty_at_once())
    assert len(executed) == 1  # the first waited for the connection, and the nineteen joined it
    assert all(f is not None and f.org_id == tenant.org_id for f in found) and len(set(found)) == 1
    other_job = asyncio.run(tenancy.job_revision_inline(db, tenant.key, "job_" + "0" * 26))
    assert other_job is None and len(executed) == 2  # other values: a read of their own


def test_the_consoles_polls_are_answered_beside_the_app_too(
    client: TestClient, app: FastAPI, db: Database, tenant: Tenant
) -> None:
    # Its session cookie becomes a bearer key outside the lean path: a team's dashboards are the console.
    job_id, _ = running_job(client, db, tenant)
    by_key = {poll: answer_of(client, f"/v1/jobs/{job_id}{poll}", tenant.headers) for poll in ("", "/metrics")}
    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": "/jobs"},
                            headers={"Origin": "http://testserver"})
    assert signed_in.status_code == 200
    layer = hot_reads(app)
    inner, asked = layer.app, []

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        asked.append(scope["path"])
        await inner(scope, receive, send)

    layer.app = counting
    for poll, answer in by_key.items():
        assert answer_of(client, f"/v1/jobs/{job_id}{poll}", {}) == answer  # the cookie only
    assert asked == []
