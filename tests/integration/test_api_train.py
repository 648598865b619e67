"""train (grow, then train) jobs over the API: queued with their growth and Fusion's knobs, and every
request they cannot run refused with a 422 naming each field involved before anything is queued."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, ready_dataset
from tuneyard.settings import Settings
from tuneyard.store.jobs import load_job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings


def train_body(dataset_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "train", "base_model": "tiny-llama", "datasets": [{"id": dataset_id}], **fields}


def fields_of(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [p["field"] for p in response.json()["error"]["details"]["problems"]]


def test_train_job_is_queued_with_its_growth(client: TestClient, db, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    body = train_body(dataset["id"], growth={"depth_factor": 2}, hyperparams={"turns": 2, "output_name": "big"})
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    config = load_job(db, response.json()["id"]).config
    assert config["type"] == "train" and config["growth"] == {"depth_factor": 2.0, "width_factor": 1.0}
    assert config["hyperparams"]["turns"] == 2 and config["hyperparams"]["train_scope"] == "all"
    assert config["price_per_device_hour"] == 0.0 and len(config["datasets"]) == 1
    listed = client.get("/v1/jobs", headers=tenant.headers, params={"type": "train"}).json()["data"]
    assert [j["id"] for j in listed] == [response.json()["id"]]


def test_train_requests_it_cannot_run_are_refused(client: TestClient, tenant: Tenant, api_settings: Settings) -> None:
    dataset = ready_dataset(client, tenant)

    def post(**fields: Any) -> Any:
        return client.post("/v1/jobs", headers=tenant.headers, json=train_body(dataset["id"], **fields))

    assert sorted(fields_of(post(growth={"depth_factor": 2}, target_params=10**7))) == ["growth", "target_params"]
    assert sorted(fields_of(post(hyperparams={"cycles": 3}))) == ["hyperparams.cycles", "hyperparams.steps_per_cycle"]
    assert fields_of(post(growth={"depth_factor": 0.5})) == ["growth.depth_factor"]
    too_long = post(hyperparams={"cycles": 100, "steps_per_cycle": 200_000})  # each within its bound, not together
    assert fields_of(too_long) == ["hyperparams.turns", "hyperparams.cycles", "hyperparams.steps_per_cycle"]
    assert fields_of(post(hyperparams={"train_scope": "some"})) == ["hyperparams.train_scope"]
    assert fields_of(post(method="lora")) == ["method"]

    folder = api_settings.model_roots[0] / "my-gpt2"  # an architecture growth does not know
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_positions": 1024}))
    registered = client.post("/v1/base-models", headers=tenant.admin_headers, json={"source": "my-gpt2"})
    assert registered.status_code == 201, registered.text
    refused = post(base_model=registered.json()["id"])
    assert fields_of(refused) == ["base_model"] and "gpt2" in refused.text
    assert client.get("/v1/jobs", headers=tenant.headers, params={"type": "train"}).json()["data"] == []
