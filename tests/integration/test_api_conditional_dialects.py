"""Every dialect's polled reads of a job are conditional as the native ones are: 200 with an ETag, 304
without a body (and without the telemetry tables read) while the job has not changed, a new ETag once
it has, and a stranger's 404 in the dialect's own words whatever tag it sends."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_api_conditional import statements
from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tuneyard.scheduler import claim
from tuneyard.store import lifecycle, telemetry
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

TELEMETRY_TABLES = ("metric_points", "log_lines", "job_events", "checkpoints")


def native_404(error: dict[str, Any]) -> bool:
    return error["code"] == "NOT_FOUND" and set(error) == {"code", "message", "details"}


def openai_404(error: dict[str, Any]) -> bool:
    return error["type"] == "invalid_request_error" and set(error) == {"message", "type", "param", "code"}


# Each dialect's polled reads ({id}: the native id; {ftj}: Archetype's id) and its 404 in its words.
DIALECTS = {
    "felix": (("/felix/training-jobs/{id}", "/felix/training-jobs/{id}/logs",
               "/felix/training-jobs/{id}/checkpoints"), native_404),
    "fusion": (("/jobs/{id}", "/jobs/{id}/metrics", "/jobs/{id}/logs", "/jobs/{id}/events"), native_404),
    "openai": (("/v1/fine_tuning/jobs/{id}", "/v1/fine_tuning/jobs/{id}/events?limit=5",
                "/v1/fine_tuning/jobs/{id}/checkpoints"), openai_404),
    "local_and_agent_training": (("/api/training/jobs/{id}", "/api/training/jobs/{id}/logs?tail=10"), native_404),
    "archetype": (("/v0.5/fine-tune/jobs/{ftj}",), native_404),
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dialects_polled_reads_answer_304_until_the_job_changes(
    dialect: str, client: TestClient, db: Database, tenant: Tenant, other: Tenant
) -> None:
    templates, in_its_words = DIALECTS[dialect]
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    claimed = claim(db, "w1", 60)
    assert claimed is not None
    lifecycle.start(db, job_id, claimed.attempt)
    ftj = client.get(f"/v0.5/fine-tune/jobs/{job_id}", headers=tenant.headers).json()["id"]
    urls = [t.format(id=job_id, ftj=ftj) for t in templates]
    tags = {}
    for url in urls:
        first = client.get(url, headers=tenant.headers)
        assert first.status_code == 200, (url, first.text)
        assert first.headers["ETag"].startswith('W/"') and first.headers["Cache-Control"] == "private, no-cache"
        tags[url] = first.headers["ETag"]
    with statements(db) as sent:
        for url in urls:
            again = client.get(url, headers={**tenant.headers, "If-None-Match": tags[url]})
            assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == tags[url], url
    read = " ".join(sent).lower()
    assert not [table for table in TELEMETRY_TABLES if table in read], sent
    for url in urls:
        for sent_tag in (tags[url], "*"):
            stranger = client.get(url, headers={**other.headers, "If-None-Match": sent_tag})
            assert stranger.status_code == 404 and in_its_words(stranger.json()["error"]), (url, stranger.text)
            assert "ETag" not in stranger.headers
    # A metric point through the store, then a status move: each is a new answer, with a new ETag.
    reported = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    telemetry.record_metrics(db, job_id, claimed.attempt, [telemetry.MetricIn(
        step=1, values={"loss": 2.0, "eta_s": 30.0}, ts=reported)])
    tags = _moved(client, tenant, urls, tags)
    if dialect == "openai":  # counted from when the runner said it, so the same row answers the same
        shown = client.get(urls[0], headers=tenant.headers).json()
        assert shown["estimated_finish"] == int(reported.timestamp()) + 30
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=tenant.headers).status_code == 200
    _moved(client, tenant, urls, tags)


def _moved(client: TestClient, tenant: Tenant, urls: list[str], tags: dict[str, str]) -> dict[str, str]:
    fresh = {}
    for url in urls:
        answer = client.get(url, headers={**tenant.headers, "If-None-Match": tags[url]})
        assert answer.status_code == 200 and answer.headers["ETag"] != tags[url], (url, answer.status_code)
        fresh[url] = answer.headers["ETag"]
    return fresh
