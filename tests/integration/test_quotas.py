"""Per-organization quotas (issue 17, F10): each refusal names its quota and limit, other
organizations are untouched, and concurrent creations never overshoot (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import UPLOAD_LIMIT, Tenant, chat_lines, job_body, ready_dataset, upload
from tuneyard.services.base_models import BaseModelRegistration, register_base_model
from tuneyard.settings import Settings
from tuneyard.store import jobs, lifecycle
from tuneyard.store.admission import admit_job
from tuneyard.store.engine import Database
from tuneyard.store.errors import QuotaExceeded
from tuneyard.store.quotas import Quotas

app, client, tenant, other = api.app, api.client, api.tenant, api.other

QUOTAS = {"quota_files": 4, "quota_file_bytes": 3 * UPLOAD_LIMIT // 2, "quota_datasets": 2,
          "quota_base_models": 2, "quota_active_jobs": 2}


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_overrides(max_upload_bytes=UPLOAD_LIMIT, **QUOTAS)


def _refusal(response: Any, status: int, quota: str, limit: int) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["details"]["quota"] == quota and error["details"]["limit"] == limit
    assert f"quota {quota}" in error["message"] and str(limit) in error["message"]
    assert f"TUNEYARD_QUOTA_{quota.upper()}" in error["message"]


def test_files_past_the_count_quota_are_429_and_other_orgs_are_untouched(
    client: TestClient, tenant: Tenant, other: Tenant, api_settings: Settings,
) -> None:
    for _ in range(4):
        upload(client, tenant, b"{}\n")
    response = client.post("/v1/files", headers=tenant.headers, files={"file": ("x.jsonl", b"{}\n")})
    _refusal(response, 429, "files", 4)
    assert "Retry-After" not in response.headers  # waiting does not help; deleting does
    assert len(list((api_settings.data_dir / "files").iterdir())) == 4  # nothing kept of the refused one
    upload(client, other, b"{}\n")


def test_an_upload_past_the_bytes_quota_is_413_and_stops_early(
    client: TestClient, tenant: Tenant, api_settings: Settings,
) -> None:
    upload(client, tenant, b"a" * UPLOAD_LIMIT)
    response = client.post("/v1/files", headers=tenant.headers, files={"file": ("x.jsonl", b"b" * UPLOAD_LIMIT)})
    _refusal(response, 413, "file_bytes", 3 * UPLOAD_LIMIT // 2)
    upload(client, tenant, b"c" * (UPLOAD_LIMIT // 2))  # exactly up to the quota fits
    assert len(list((api_settings.data_dir / "files").iterdir())) == 2


def test_datasets_past_the_quota_are_429(client: TestClient, tenant: Tenant) -> None:
    file = upload(client, tenant, chat_lines(2))
    for name in ("a", "b"):
        response = client.post("/v1/datasets", headers=tenant.headers, json={"name": name, "file_ids": [file["id"]]})
        assert response.status_code == 201
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": "c", "file_ids": [file["id"]]})
    _refusal(response, 429, "datasets", 2)
    dataset_id = client.get("/v1/datasets", headers=tenant.headers).json()["data"][0]["id"]
    assert client.delete(f"/v1/datasets/{dataset_id}", headers=tenant.headers).status_code == 204
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": "c", "file_ids": [file["id"]]})
    assert response.status_code == 201  # deleting one made room


def test_queued_and_running_jobs_past_the_quota_are_429_until_one_ends(
    client: TestClient, tenant: Tenant, db: Database,
) -> None:
    dataset = ready_dataset(client, tenant)
    created = [client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"])) for _ in range(2)]
    assert [r.status_code for r in created] == [201, 201]
    refused = client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"]))
    _refusal(refused, 429, "active_jobs", 2)
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    # A replay of an admitted request is its job, not a refusal.
    replay = job_body(dataset["id"], idempotency_key="k1")
    lifecycle.request_cancel(db, tenant.org_id, created[0].json()["id"])
    assert client.post("/v1/jobs", headers=tenant.headers, json=replay).status_code == 201
    assert client.post("/v1/jobs", headers=tenant.headers, json=replay).status_code == 200


def test_a_resume_back_into_a_full_queue_is_429_and_leaves_the_job_stopped(
    client: TestClient, tenant: Tenant, db: Database,
) -> None:
    dataset = ready_dataset(client, tenant)
    first, second = (client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"])).json()
                     for _ in range(2))
    assert client.post(f"/v1/jobs/{first['id']}/stop", headers=tenant.headers).json()["status"] == "stopped"
    third = client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"]))
    assert third.status_code == 201  # the stopped job holds only disk: room for one more
    refused = client.post(f"/v1/jobs/{first['id']}/resume", headers=tenant.headers)
    _refusal(refused, 429, "active_jobs", 2)
    assert client.get(f"/v1/jobs/{first['id']}", headers=tenant.headers).json()["status"] == "stopped"
    lifecycle.request_cancel(db, tenant.org_id, second["id"])
    resumed = client.post(f"/v1/jobs/{first['id']}/resume", headers=tenant.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    # A resume the state refuses says so (409), whatever the quota.
    assert client.post(f"/v1/jobs/{first['id']}/resume", headers=tenant.headers).status_code == 409


def test_a_quota_refusal_spends_no_rate_limit(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    answers = [client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"])) for _ in range(5)]
    assert [r.status_code for r in answers] == [201, 201, 429, 429, 429]
    assert answers[1].headers["X-RateLimit-Remaining"] == "18"


def test_registered_base_models_past_the_quota_are_refused(db: Database, api_settings: Settings,
                                                           tenant: Tenant, other: Tenant) -> None:
    def register(org_id: str, name: str) -> Any:
        return register_base_model(db, api_settings, org_id, BaseModelRegistration(f"acme/{name}", kind="hub"))

    register(tenant.org_id, "one")
    register(tenant.org_id, "two")
    with pytest.raises(QuotaExceeded) as refused:
        register(tenant.org_id, "three")
    assert refused.value.quota == "base_models" and refused.value.limit == 2
    register(other.org_id, "one")


def test_a_quota_of_zero_is_no_quota(db: Database, settings: Settings, tenant: Tenant) -> None:
    for i in range(3):
        register_base_model(db, settings.with_overrides(quota_base_models=0), tenant.org_id,
                            BaseModelRegistration(f"acme/m{i}", kind="hub"))


def test_concurrent_admissions_never_overshoot_the_job_quota(
    open_db: Callable[[], Database], db: Database, tenant: Tenant,
) -> None:
    """Twelve requests from twelve keys (no rate limit between them) through their own engines,
    as API processes would: exactly the quota's number of jobs is made."""
    quotas = Quotas(active_jobs=3)

    def admit(i: int) -> str:
        new = jobs.NewJob(org_id=tenant.org_id, type="finetune", spec={"i": i}, config={})
        try:
            admit_job(open_db(), new, f"hash-{i}", subject=f"key-{i}", limit=100, quotas=quotas)
        except QuotaExceeded:
            return "refused"
        return "admitted"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(admit, range(12)))
    assert outcomes.count("admitted") == 3 and outcomes.count("refused") == 9
    assert len(jobs.list_jobs(db, jobs.JobQuery(tenant.org_id, limit=50)).items) == 3
