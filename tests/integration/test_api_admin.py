"""What admin keys do over the API: an organization's keys (/v1/keys) and the service's /metrics."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.settings import Settings

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def test_an_admin_manages_its_organizations_keys(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    made = client.post("/v1/keys", headers=tenant.admin_headers, json={"name": "ci"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["is_admin"] is False and key["key"].startswith(key["prefix"]) and key["revoked_at"] is None
    bearer = {"Authorization": f"Bearer {key['key']}"}
    assert client.get("/v1/jobs", headers=bearer).status_code == 200  # a member key: jobs and data
    assert client.get("/v1/keys", headers=bearer).json()["error"]["code"] == "FORBIDDEN"

    listed = client.get("/v1/keys", headers=tenant.admin_headers).json()["data"]
    assert [k["name"] for k in listed] == ["acme-key", "acme-admin", "ci"]
    assert all("key" not in k for k in listed)  # the plaintext is shown once, when made

    foreign = client.delete(f"/v1/keys/{key['id']}", headers=other.admin_headers)
    assert foreign.status_code == 404 and client.get("/v1/jobs", headers=bearer).status_code == 200
    assert client.delete(f"/v1/keys/{key['id']}", headers=tenant.admin_headers).status_code == 204
    assert client.get("/v1/jobs", headers=bearer).status_code == 401

    admin = client.post("/v1/keys", headers=tenant.admin_headers, json={"name": "ops", "is_admin": True}).json()
    assert client.get("/v1/keys", headers={"Authorization": f"Bearer {admin['key']}"}).status_code == 200
    bad = client.post("/v1/keys", headers=tenant.admin_headers, json={"name": "a\x00b"})
    assert bad.status_code == 422, bad.text


def test_metrics_take_an_admin_key_and_name_no_organization(client: TestClient, tenant: Tenant,
                                                            other: Tenant) -> None:
    create_job(client, tenant, ready_dataset(client, tenant)["id"])
    create_job(client, other, ready_dataset(client, other)["id"])
    anonymous = client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "UNAUTHORIZED"
    member = client.get("/metrics", headers=tenant.headers)
    assert member.status_code == 403 and member.json()["error"]["code"] == "FORBIDDEN"
    scraped = client.get("/metrics", headers=tenant.admin_headers)
    assert scraped.status_code == 200 and 'tuneyard_jobs{status="queued"} 2' in scraped.text
    assert "org" not in scraped.text and tenant.org_id not in scraped.text and other.org_id not in scraped.text


def test_metrics_by_organization_when_turned_on(db, api_settings: Settings, tenant: Tenant, other: Tenant) -> None:
    labelled = create_app(api_settings.with_overrides(metrics_org_labels=True), db)
    with TestClient(labelled) as client:
        create_job(client, tenant, ready_dataset(client, tenant)["id"])
        create_job(client, other, ready_dataset(client, other)["id"])
        text = client.get("/metrics", headers=other.admin_headers).text
    assert f'tuneyard_org_jobs{{org="{tenant.org_id}",status="queued"}} 1' in text
    assert f'tuneyard_org_jobs{{org="{other.org_id}",status="queued"}} 1' in text
