"""Job templates: built-ins listed (each saying whether its job type runs here), custom ones saved per
organization and used by a submission that overrides them, an unknown one a 422 naming it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, job_body, ready_dataset

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def problems(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 422, response.text
    found: list[dict[str, Any]] = response.json()["error"]["details"]["problems"]
    return found


def test_builtins_are_listed_and_marked_when_their_type_cannot_run(client: TestClient, tenant: Tenant) -> None:
    response = client.get("/v1/templates", headers=tenant.headers)
    assert response.status_code == 200, response.text
    listed = {t["name"]: t for t in response.json()["data"]}
    assert {"lora-chat", "full-finetune", "growth", "contraction", "dpo"} <= set(listed)
    assert listed["lora-chat"]["available"] and listed["lora-chat"]["builtin"]
    assert listed["lora-chat"]["spec"]["method"] == "lora"
    assert not listed["dpo"]["available"] and "dpo" in listed["dpo"]["unavailable_reason"]


def test_a_submission_names_a_template_and_overrides_it(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], template="lora-chat", hyperparams={"max_steps": 3, "lora_rank": 4})
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    job = client.get(f"/v1/jobs/{response.json()['id']}", headers=tenant.headers).json()
    hyperparams = job["config"]["hyperparams"]
    assert hyperparams["lora_rank"] == 4 and hyperparams["max_steps"] == 3  # the request's
    assert hyperparams["epochs"] == 3 and hyperparams["warmup_ratio"] == 0.03  # the template's
    assert job["spec"]["template"] == "lora-chat"  # the job's spec is what was submitted


def test_custom_templates_are_saved_per_organization_and_used(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    saved = client.post("/v1/templates", headers=tenant.headers, json={
        "name": "house-full", "description": "our full fine-tune",
        "spec": {"method": "full", "hyperparams": {"learning_rate": 1e-5, "max_steps": 2}}})
    assert saved.status_code == 201, saved.text
    assert saved.json()["builtin"] is False and saved.json()["available"]
    mine = {t["name"] for t in client.get("/v1/templates", headers=tenant.headers).json()["data"]}
    theirs = {t["name"] for t in client.get("/v1/templates", headers=other.headers).json()["data"]}
    assert "house-full" in mine and "house-full" not in theirs
    dataset = ready_dataset(client, tenant)
    estimate = client.post("/v1/estimate", headers=tenant.headers,
                           json=job_body(dataset["id"], template="house-full", hyperparams={}))
    assert estimate.status_code == 200, estimate.text
    assert estimate.json()["method"] == "full" and estimate.json()["run"]["steps"] == 2
    other_dataset = ready_dataset(client, other)
    refused = client.post("/v1/jobs", headers=other.headers, json=job_body(other_dataset["id"], template="house-full"))
    assert [p["field"] for p in problems(refused)] == ["template"]


def test_unknown_or_unusable_templates_are_a_422_naming_them(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    unknown = problems(client.post("/v1/jobs", headers=tenant.headers,
                                   json=job_body(dataset["id"], template="no-such", hyperparams={"batch_size": 0})))
    assert {p["field"] for p in unknown} == {"template", "hyperparams.batch_size"}
    assert "no-such" in next(p["message"] for p in unknown if p["field"] == "template")
    dpo = problems(client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"], template="dpo")))
    assert [p["field"] for p in dpo] == ["template"]


def test_a_template_must_hold_a_valid_partial_spec(client: TestClient, tenant: Tenant) -> None:
    bad = client.post("/v1/templates", headers=tenant.headers, json={
        "name": "lora-chat", "spec": {"name": "x", "hyperparams": {"batch_size": 0}}})
    assert {p["field"] for p in problems(bad)} == {"spec.name", "name"}
    bad = client.post("/v1/templates", headers=tenant.headers, json={
        "name": "mine", "spec": {"hyperparams": {"batch_size": 0}}})
    assert [p["field"] for p in problems(bad)] == ["spec.hyperparams.batch_size"]
    client.post("/v1/templates", headers=tenant.headers, json={"name": "twice", "spec": {}})
    again = client.post("/v1/templates", headers=tenant.headers, json={"name": "twice", "spec": {}})
    assert again.status_code == 409, again.text
