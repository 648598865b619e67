"""Conditional job lists: a page's weak ETag names its jobs' ids and revisions in order, whether more
follow, the request and the caller's organization; a 304 reads only those columns and renders nothing,
and every change a reader of the page would see (a job's status, a job created or deleted, another
filter) is a 200 with a new ETag. Native, the console's live refresh, and the dialects' lists."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_api_conditional import statements
from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tuneyard.scheduler import claim
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

FULL_ROW = ("jobs.spec", "jobs.config", "jobs.progress", "jobs.result", "jobs.labels")
"""Columns a rendered job needs and its list's validator must not read."""


def tag_of(client: TestClient, tenant: Tenant, url: str) -> str:
    answer = client.get(url, headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["ETag"].startswith('W/"') and answer.headers["Cache-Control"] == "private, no-cache"
    return answer.headers["ETag"]


def assert_unchanged(client: TestClient, tenant: Tenant, url: str, tag: str) -> None:
    answer = client.get(url, headers={**tenant.headers, "If-None-Match": tag})
    assert answer.status_code == 304 and answer.content == b"" and answer.headers["ETag"] == tag, url


def assert_changed(client: TestClient, tenant: Tenant, url: str, tag: str) -> str:
    answer = client.get(url, headers={**tenant.headers, "If-None-Match": tag})
    assert answer.status_code == 200 and answer.headers["ETag"] != tag, (url, answer.status_code)
    return answer.headers["ETag"]


def read_columns(sent: list[str]) -> str:
    return " ".join(sent).lower()


def test_an_unchanged_list_answers_304_reading_only_ids_and_revisions(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    dataset_id = ready_dataset(client, tenant)["id"]
    for _ in range(3):
        create_job(client, tenant, dataset_id)
    url = "/v1/jobs?limit=2"
    tag = tag_of(client, tenant, url)
    with statements(db) as sent:
        assert_unchanged(client, tenant, url, tag)
    read = read_columns(sent)
    assert "jobs.revision" in read and not [c for c in FULL_ROW if c in read], sent
    with statements(db) as sent:  # the check above means something: a 200 reads the rows it renders
        assert client.get(url, headers=tenant.headers).status_code == 200
    assert "jobs.config" in read_columns(sent)


def test_the_lists_etag_moves_with_a_status_a_new_job_a_deletion_and_the_filter(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    dataset_id = ready_dataset(client, tenant)["id"]
    first = create_job(client, tenant, dataset_id)["id"]
    url = "/v1/jobs"
    tag = tag_of(client, tenant, url)
    claimed = claim(db, "w1", 60)
    assert claimed is not None and claimed.job_id == first
    tag = assert_changed(client, tenant, url, tag)
    lifecycle.start(db, first, claimed.attempt)
    tag = assert_changed(client, tenant, url, tag)
    assert_unchanged(client, tenant, url, tag)
    second = create_job(client, tenant, dataset_id)["id"]
    tag = assert_changed(client, tenant, url, tag)
    queued = f"{url}?status=queued"
    assert_changed(client, tenant, queued, tag)  # another filter is another answer
    queued_tag = tag_of(client, tenant, queued)
    assert client.delete(f"/v1/jobs/{second}", headers=tenant.headers).status_code == 204
    tag = assert_changed(client, tenant, url, tag)
    assert client.get(queued, headers=tenant.headers).json()["data"] == []
    assert_changed(client, tenant, queued, queued_tag)
    assert client.post(f"/v1/jobs/{first}/cancel", headers=tenant.headers).status_code == 200
    assert_changed(client, tenant, url, tag)


def test_a_page_moves_when_whether_more_follow_does(client: TestClient, db: Database, tenant: Tenant) -> None:
    dataset_id = ready_dataset(client, tenant)["id"]
    older, newer = (create_job(client, tenant, dataset_id)["id"] for _ in range(2))
    url = "/v1/jobs?status=queued&limit=1"
    first = client.get(url, headers=tenant.headers)
    assert [j["id"] for j in first.json()["data"]] == [newer] and first.json()["has_more"] is True
    claimed = claim(db, "w1", 60)  # the older job leaves the filter: the page holds the same row, and no more
    assert claimed is not None and claimed.job_id == older
    after = client.get(url, headers={**tenant.headers, "If-None-Match": first.headers["ETag"]})
    assert after.status_code == 200 and after.json()["has_more"] is False


def test_another_organizations_key_never_gets_a_304_for_its_tag(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    create_job(client, tenant, ready_dataset(client, tenant)["id"])
    tag = tag_of(client, tenant, "/v1/jobs")
    stranger = client.get("/v1/jobs", headers={**other.headers, "If-None-Match": tag})
    assert stranger.status_code == 200 and stranger.json()["data"] == [] and stranger.headers["ETag"] != tag
    # Two empty pages hold the same jobs (none) and still name two organizations' answers.
    empty = tag_of(client, tenant, "/v1/jobs?status=failed")
    theirs = client.get("/v1/jobs?status=failed", headers={**other.headers, "If-None-Match": empty})
    assert theirs.status_code == 200 and theirs.headers["ETag"] != empty


def sign_in(client: TestClient, tenant: Tenant) -> None:
    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": "/jobs"},
                            headers={"Origin": "http://testserver"})
    assert signed_in.status_code == 200, signed_in.text


def test_the_consoles_live_refresh_answers_304_until_a_row_or_a_queue_position_moves(
    client: TestClient, db: Database, tenant: Tenant, other: Tenant
) -> None:
    theirs = create_job(client, other, ready_dataset(client, other)["id"])["id"]  # ahead in the one queue
    dataset_id = ready_dataset(client, tenant)["id"]
    ours = [create_job(client, tenant, dataset_id)["id"] for _ in range(2)]
    sign_in(client, tenant)
    url = f"/console/jobs.json?ids={ours[0]}&ids={ours[1]}&ids=job_000000000000000000000000"
    first = client.get(url)
    assert first.status_code == 200 and first.headers["Cache-Control"] == "private, no-cache"
    rows = {row["id"]: row for row in first.json()["data"]}
    assert [rows[j]["queue_position"] for j in ours] == [2, 3] and len(rows) == 3
    tag = first.headers["ETag"]
    with statements(db) as sent:
        again = client.get(url, headers={"If-None-Match": tag})
    assert again.status_code == 304 and again.content == b""
    assert not [c for c in FULL_ROW if c in read_columns(sent)], sent
    claimed = claim(db, "w1", 60)  # another organization's job leaves the queue: ours move up, rows unchanged
    assert claimed is not None and claimed.job_id == theirs
    moved = client.get(url, headers={"If-None-Match": tag})
    assert moved.status_code == 200 and moved.headers["ETag"] != tag
    assert [row["queue_position"] for row in moved.json()["data"][:2]] == [1, 2]
    tag = moved.headers["ETag"]
    assert client.delete(f"/v1/jobs/{ours[1]}", headers=tenant.headers).status_code == 204
    gone = client.get(url, headers={"If-None-Match": tag})
    assert gone.status_code == 200 and gone.json()["data"][1] == {"id": ours[1], "status": "deleted"}


# Each dialect's list of jobs that is a plain page of them (Archetype's is not conditional: see its list_jobs).
DIALECT_LISTS = {
    "felix": "/felix/training-jobs",
    "fusion": "/jobs?limit=5",
    "openai": "/v1/fine_tuning/jobs?limit=5",
    "openai_metadata": "/v1/fine_tuning/jobs?metadata[team]=a",
    "local_and_agent_training": "/api/training/jobs",
}


@pytest.mark.parametrize("dialect", DIALECT_LISTS)
def test_a_dialects_list_answers_304_until_one_of_its_jobs_changes(
    dialect: str, client: TestClient, db: Database, tenant: Tenant, other: Tenant
) -> None:
    url = DIALECT_LISTS[dialect]
    dataset_id = ready_dataset(client, tenant)["id"]
    job_id = create_job(client, tenant, dataset_id)["id"]
    tag = tag_of(client, tenant, url)
    with statements(db) as sent:
        assert_unchanged(client, tenant, url, tag)
    read = read_columns(sent)
    assert not [c for c in FULL_ROW if c in read], sent
    stranger = client.get(url, headers={**other.headers, "If-None-Match": tag})
    assert stranger.status_code == 200 and stranger.headers["ETag"] != tag
    claimed = claim(db, "w1", 60)
    assert claimed is not None
    tag = assert_changed(client, tenant, url, tag)
    create_job(client, tenant, dataset_id)
    tag = assert_changed(client, tenant, url, tag)
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=tenant.headers).status_code == 200
    assert_changed(client, tenant, url, tag)


def test_openais_metadata_filter_moves_when_a_jobs_metadata_comes_to_match(
    client: TestClient, tenant: Tenant
) -> None:
    file_id = _openai_file(client, tenant)
    url = "/v1/fine_tuning/jobs?metadata[team]=a"
    body: dict[str, Any] = {"model": "tiny-llama", "training_file": file_id}
    assert client.post("/v1/fine_tuning/jobs", headers=tenant.headers, json={**body, "metadata": {"team": "b"}}
                       ).status_code == 200
    tag = tag_of(client, tenant, url)
    assert client.get(url, headers=tenant.headers).json()["data"] == []
    made = client.post("/v1/fine_tuning/jobs", headers=tenant.headers, json={**body, "metadata": {"team": "a"}})
    assert made.status_code == 200, made.text
    changed = client.get(url, headers={**tenant.headers, "If-None-Match": tag})
    assert changed.status_code == 200 and [j["id"] for j in changed.json()["data"]] == [made.json()["id"]]


def _openai_file(client: TestClient, tenant: Tenant) -> str:
    file_id: str = api.upload(client, tenant, api.chat_lines(4))["id"]
    return file_id
