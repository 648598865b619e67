"""contract jobs over the API: queued without data, and a ratio out of range refused naming its field."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant
from tuneyard.store.jobs import load_job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings


def test_contract_job_is_queued_and_bad_ratios_refused(client: TestClient, db, tenant: Tenant) -> None:
    body = {"type": "contract", "base_model": "tiny-llama", "contraction_ratio": 0.25}
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    config = load_job(db, response.json()["id"]).config
    assert (config["contraction_ratio"], config["num_layers_to_contract"], config["datasets"]) == (0.25, 8, [])

    for ratio in (1.5, 0, -0.1):
        refused = client.post("/v1/jobs", headers=tenant.headers, json={**body, "contraction_ratio": ratio})
        assert refused.status_code == 422, refused.text
        assert [p["field"] for p in refused.json()["error"]["details"]["problems"]] == ["contraction_ratio"]
    listed = client.get("/v1/jobs", headers=tenant.headers, params={"type": "contract"}).json()["data"]
    assert [j["id"] for j in listed] == [response.json()["id"]]
