"""Every route is behind the key, and every id-taking route hides other organizations' objects.

Routes come from the app's own route table (as its OpenAPI document lists them: included routers
are resolved lazily in this FastAPI), so a route added later is covered without editing this
test; an id parameter nobody taught the test to fill fails it loudly.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, fill, finished_job
from tuneyard.settings import Settings
from tuneyard.store import tenancy

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

PUBLIC = {"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
# Routes whose answer for the owner depends on more than the object existing.
OWNER_STATUS = {
    ("GET", "/v1/models/{model_id}/exports/{export_id}/download"): 409,  # the fixture's export failed
    ("DELETE", "/api/training/jobs/{job_id}"): 409,  # 002's DELETE cancels, and the fixture's job is completed
}


def routes(app: FastAPI) -> list[tuple[str, str]]:
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in sorted(paths.items()) if path not in PUBLIC for method in ops]


@pytest.fixture
def owned(client: TestClient, db, api_settings: Settings, tenant: Tenant) -> dict[str, Any]:
    objects = finished_job(client, db, api_settings, tenant)
    registered = client.post("/v1/base-models", headers=tenant.admin_headers,
                             json={"source": "acme/tiny", "kind": "hub"})
    assert registered.status_code == 201, registered.text
    spare, _ = tenancy.create_api_key(db, tenant.org_id, "spare")
    return {**objects, "base_model_id": registered.json()["id"], "key_id": spare.id,
            "file": "adapter_config.json"}  # a file of the trained model (002's /output/{file})


def test_every_v1_route_needs_a_key(app: FastAPI, client: TestClient, owned: dict[str, Any]) -> None:
    checked = 0
    for method, path in routes(app):
        for headers in ({}, {"Authorization": "Bearer ty_not-a-key"}, {"Authorization": "Basic abc"}):
            response = client.request(method, fill(path, owned), headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
        checked += 1
    assert checked >= 25


def test_every_id_route_is_404_to_another_organization(
    app: FastAPI, client: TestClient, owned: dict[str, Any], tenant: Tenant, other: Tenant
) -> None:
    id_routes = [(m, p) for m, p in routes(app) if "{" in p]
    assert len(id_routes) >= 20
    for method, path in id_routes:  # an admin key reaches every route: what stops it is the organization
        url = fill(path, owned)
        response = client.request(method, url, headers=other.admin_headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"
    # ...while the owner reaches every one of them (read-only routes; the deletes come last).
    # A job is one job in every dialect: once one dialect's DELETE removed it, the others' find nothing.
    deleted: set[str] = set()
    for method, path in sorted(id_routes, key=lambda r: r[0] == "DELETE"):
        if method == "POST":
            continue  # stop/cancel/resume of a completed job: 409, covered in test_api_jobs
        response = client.request(method, fill(path, owned), headers=tenant.admin_headers)
        named = set(re.findall(r"\{(\w+)\}", path))
        expected = (OWNER_STATUS[method, path],) if (method, path) in OWNER_STATUS else (200, 204)
        if method == "DELETE" and named & deleted:
            expected = (404,)
        assert response.status_code in expected, (method, path, response.text)
        if method == "DELETE" and response.status_code in (200, 204):
            deleted |= named
