"""Conditional reads of a job: a weak ETag from its revision, 304 while it has not changed, decided
without the telemetry tables; every write a reader would see moves the ETag, and a stranger gets 404."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event

from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.scheduler import claim, heartbeat
from tuneyard.services.admin import ADMIN_KEY_FILE
from tuneyard.settings import Settings
from tuneyard.store import lifecycle, telemetry
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

ROUTES = ("", "/metrics", "/logs", "/events")


@contextmanager
def statements(db: Database) -> Iterator[list[str]]:
    """The SQL this process sends to the test's database meanwhile."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def etags(client: TestClient, tenant: Tenant, job_id: str) -> dict[str, str]:
    """Each route's ETag now (a plain read, 200)."""
    found = {}
    for route in ROUTES:
        answer = client.get(f"/v1/jobs/{job_id}{route}", headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["ETag"].startswith('W/"') and answer.headers["Cache-Control"] == "private, no-cache"
        found[route] = answer.headers["ETag"]
    return found


def assert_unchanged(client: TestClient, tenant: Tenant, job_id: str, tags: dict[str, str]) -> None:
    for route, tag in tags.items():
        answer = client.get(f"/v1/jobs/{job_id}{route}", headers={**tenant.headers, "If-None-Match": tag})
        assert answer.status_code == 304, (route, answer.text)
        assert answer.content == b"" and answer.headers["ETag"] == tag


def assert_changed(client: TestClient, tenant: Tenant, job_id: str, tags: dict[str, str]) -> dict[str, str]:
    """Every route answers 200 with a new ETag to its old one; returns the new ones."""
    fresh = {}
    for route, tag in tags.items():
        answer = client.get(f"/v1/jobs/{job_id}{route}", headers={**tenant.headers, "If-None-Match": tag})
        assert answer.status_code == 200, (route, answer.status_code)
        assert answer.headers["ETag"] != tag
        fresh[route] = answer.headers["ETag"]
    return fresh


def test_an_unchanged_job_answers_304_without_reading_its_telemetry(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    job = create_job(client, tenant, ready_dataset(client, tenant)["id"])
    claimed = claim(db, "w1", 60)
    assert claimed is not None
    lifecycle.start(db, job["id"], claimed.attempt)
    telemetry.record_metrics(db, job["id"], claimed.attempt, [telemetry.MetricIn(step=1, values={"loss": 2.0})])
    tags = etags(client, tenant, job["id"])
    with statements(db) as sent:
        assert_unchanged(client, tenant, job["id"], tags)
    read = " ".join(sent).lower()
    assert "metric_points" not in read and "log_lines" not in read and "job_events" not in read, sent
    # A list of tags, and `*` (any current answer), are If-None-Match's other forms.
    metrics = f"/v1/jobs/{job['id']}/metrics"
    assert client.get(metrics, headers={**tenant.headers, "If-None-Match": f'W/"x", {tags["/metrics"]}'}
                      ).status_code == 304
    assert client.get(metrics, headers={**tenant.headers, "If-None-Match": "*"}).status_code == 304
    # Another request's tag names another answer: points after step 0 are not those after step -1.
    later = client.get(metrics, params={"since_step": 0}, headers={**tenant.headers, "If-None-Match": tags["/metrics"]})
    assert later.status_code == 200 and later.headers["ETag"] != tags["/metrics"]


def test_every_write_a_reader_sees_moves_the_etag_and_a_heartbeat_does_not(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    tags = etags(client, tenant, job_id)
    claimed = claim(db, "w1", 60)  # queued -> starting
    assert claimed is not None
    tags = assert_changed(client, tenant, job_id, tags)
    lifecycle.start(db, job_id, claimed.attempt)
    tags = assert_changed(client, tenant, job_id, tags)
    heartbeat(db, job_id, claimed.attempt, 60)  # the lease moves; nothing a reader sees does
    assert_unchanged(client, tenant, job_id, tags)
    # An eval point alone touches no other column of the job: the revision moves all the same.
    telemetry.record_metrics(db, job_id, claimed.attempt, [telemetry.MetricIn(step=2, values={"eval_loss": 1.5},
                                                                              kind="eval")])
    tags = assert_changed(client, tenant, job_id, tags)
    telemetry.append_logs(db, job_id, claimed.attempt, [telemetry.LogIn("a line")])
    tags = assert_changed(client, tenant, job_id, tags)
    client.post(f"/v1/jobs/{job_id}/cancel", headers=tenant.headers)
    after = client.get(f"/v1/jobs/{job_id}", headers={**tenant.headers, "If-None-Match": tags[""]})
    assert after.status_code == 200 and after.json()["status"] == "cancelling"


def test_another_organizations_job_is_404_whatever_tag_it_sends(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    for route, tag in etags(client, tenant, job_id).items():
        for sent in (tag, "*"):
            answer = client.get(f"/v1/jobs/{job_id}{route}", headers={**other.headers, "If-None-Match": sent})
            assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND", route
            assert "ETag" not in answer.headers



def test_in_single_user_mode_a_poll_without_a_key_reads_as_the_local_admin(
    client: TestClient, db: Database, tenant: Tenant, api_settings: Settings
) -> None:
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    (api_settings.data_dir / ADMIN_KEY_FILE).write_text(tenant.admin_key + "\n", encoding="utf-8")
    local = TestClient(create_app(api_settings.with_overrides(auth="none"), db))
    for route in ROUTES:
        first = local.get(f"/v1/jobs/{job_id}{route}")
        assert first.status_code == 200, (route, first.text)
        again = local.get(f"/v1/jobs/{job_id}{route}", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304, route
    # With keys required, the same request is refused before the job is looked at.
    assert client.get(f"/v1/jobs/{job_id}").status_code == 401


def test_a_polled_job_shows_its_uploads_names_without_reading_them_again(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    job_id = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    claimed = claim(db, "w1", 60)
    assert claimed is not None
    lifecycle.start(db, job_id, claimed.attempt)
    telemetry.append_logs(db, job_id, claimed.attempt, [telemetry.LogIn("training on the uploads")])
    first = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()
    shown = json.dumps(first["config"]["datasets"])
    assert "/files/" not in shown and "(file_" in shown  # the upload's name and id, not its server path
    with statements(db) as sent:
        again = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()
        client.get(f"/v1/jobs/{job_id}/logs", headers=tenant.headers)
    assert again["config"] == first["config"]
    # A job's display never changes (its config and its uploads' names are written once): kept a while.
    assert not [s for s in sent if " files" in s], sent
