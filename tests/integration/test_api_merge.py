"""Merge jobs over the API: from a LoRA job (POST /v1/jobs/{id}/merge) or a trained LoRA model, and
every input that is not a LoRA adapter refused with a 422 naming its field before anything is queued."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, finished_job, ready_dataset
from tuneyard.settings import Settings
from tuneyard.store.jobs import load_job
from tuneyard.store.tables import TrainedModel

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def problems(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    details: list[dict[str, Any]] = response.json()["error"]["details"]["problems"]
    return details


def test_merge_route_queues_a_merge_of_the_jobs_adapter(
    client: TestClient, db, api_settings: Settings, tenant: Tenant
) -> None:
    done = finished_job(client, db, api_settings, tenant)
    # Its adapter names its base by the service's id (here another job's trained model), as a trained
    # adapter names a registered base: the service gives the runner that base's folder.
    base = finished_job(client, db, api_settings, tenant)
    final = api_settings.data_dir / "runs" / done["job_id"] / "final"
    (final / "adapter_config.json").write_text(json.dumps({"r": 8, "base_model_name_or_path": base["model_id"]}))
    response = client.post(f"/v1/jobs/{done['job_id']}/merge", headers=tenant.headers, json={"name": "merged"})
    assert response.status_code == 201, response.text
    merge = response.json()
    assert merge["type"] == "merge" and merge["status"] == "queued" and merge["name"] == "merged"
    assert merge["spec"]["base_model"] == done["model_id"]
    assert merge["config"]["datasets"] == [] and "hyperparams" not in merge["config"]
    stored = load_job(db, merge["id"]).config
    assert stored["base_model"] == str(final)
    assert stored["adapter_base"] == str(api_settings.data_dir / "runs" / base["job_id"] / "final")

    listed = client.get("/v1/jobs", headers=tenant.headers, params={"type": "merge"}).json()["data"]
    assert [j["id"] for j in listed] == [merge["id"]]
    direct = client.post("/v1/jobs", headers=tenant.headers, json={"type": "merge", "base_model": done["model_id"]})
    assert direct.status_code == 201, direct.text


def test_merge_refuses_what_is_not_a_lora_adapter(client: TestClient, db, api_settings: Settings,
                                                  tenant: Tenant, other: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    with db.write() as session:  # the same job as if it had fine-tuned every weight
        model = session.get(TrainedModel, done["model_id"])
        model.kind = "full"
        final = api_settings.data_dir / "runs" / done["job_id"] / "final"
    (final / "adapter_config.json").unlink()
    (final / "config.json").write_text('{"model_type": "llama"}')

    route = client.post(f"/v1/jobs/{done['job_id']}/merge", headers=tenant.headers)
    assert [p["field"] for p in problems(route)] == ["job_id"] and "not a LoRA adapter" in route.text
    full = client.post("/v1/jobs", headers=tenant.headers, json={"type": "merge", "base_model": done["model_id"]})
    assert [p["field"] for p in problems(full)] == ["base_model"]
    builtin = client.post("/v1/jobs", headers=tenant.headers, json={"type": "merge", "base_model": "tiny-llama"})
    assert [p["field"] for p in problems(builtin)] == ["base_model"]
    dataset = ready_dataset(client, tenant, name="more")
    with_data = client.post("/v1/jobs", headers=tenant.headers, json={
        "type": "merge", "base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}], "hyperparams": {}})
    assert {p["field"] for p in problems(with_data)} >= {"datasets", "hyperparams"}

    queued = create_job(client, tenant, dataset["id"])
    early = client.post(f"/v1/jobs/{queued['id']}/merge", headers=tenant.headers)
    assert [p["field"] for p in problems(early)] == ["job_id"] and "no trained model" in early.text
    assert client.post(f"/v1/jobs/{queued['id']}/merge", headers=other.headers).status_code == 404
    assert client.get("/v1/jobs", headers=tenant.headers, params={"type": "merge"}).json()["data"] == []
