"""Felix (document 000) in-process on both databases: bad requests (400 INVALID_REQUEST, 404, 409,
nothing created), one job seen through Felix and /v1 alike, the 20-a-minute limit across two API
processes' worth of apps on one database, and DELETE then 404 everywhere. The documented requests
replayed against a live server training tiny-llama: tests/e2e/test_dialect_felix.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support import api
from tests.support.api import Tenant, finished_job, ready_dataset, upload
from tuneyard.api.app import create_app
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.tables import Job

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

JOBS = "/felix/training-jobs"


def body(**changes: Any) -> dict[str, Any]:
    sent: dict[str, Any] = {"base_model": "tiny-llama", "datasets": [{"name": "chats"}], "name": "my-model",
                            "method": "lora", "epochs": 1, "learning_rate": 5e-5}
    sent.update(changes)
    return {k: v for k, v in sent.items() if v is not ...}


def job_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


# (what is wrong, the body, the field named)
BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no base_model", body(base_model=...), "base_model"),
    ("no datasets", body(datasets=...), "datasets"),
    ("no dataset at all", body(datasets=[]), "datasets"),
    ("a dataset without its name", body(datasets=[{}]), "datasets.0.name"),
    ("a dataset by id, not name", body(datasets=[{"id": "ds_x"}]), "datasets.0.id"),
    ("an unknown field", body(hyperparams={"epochs": 1}), "hyperparams"),
    ("a method Felix has not", body(method="qlora"), "method"),
    ("epochs as text", body(epochs="three"), "epochs"),
    ("zero epochs", body(epochs=0), "epochs"),
    ("a negative learning rate", body(learning_rate=-1), "learning_rate"),
    ("a learning rate as a list", body(learning_rate=[5e-5]), "learning_rate"),
    ("a base model nobody has", body(base_model="no-such-model"), "base_model"),
    ("a checkpoint UUID nobody has", body(base_model="00000000-0000-4000-8000-000000000000"), "base_model"),
    ("a dataset nobody has", body(datasets=[{"name": "nothing"}]), "datasets.0.name"),
    ("a name with control characters", body(name="a\x1bb"), "name"),
    ("a project nobody has", body(project_id="proj_nothing"), "project_id"),
    ("datasets as an object", body(datasets={"name": "chats"}), "datasets"),
]


@pytest.mark.parametrize(("case", "sent", "field"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_a_bad_request_is_400_naming_the_field_and_creates_nothing(
    client: TestClient, db: Database, tenant: Tenant, case: str, sent: dict[str, Any], field: str
) -> None:
    ready_dataset(client, tenant)
    before = job_count(db)
    answer = client.post(JOBS, headers=tenant.headers, json=sent)
    assert answer.status_code == 400, (case, answer.text)
    error = answer.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert field in [p["field"] for p in error["details"]["problems"]], (case, error)
    assert job_count(db) == before


def test_a_dataset_that_is_not_ready_is_400_naming_it(client: TestClient, db: Database, tenant: Tenant) -> None:
    broken = upload(client, tenant, b'{"not": "a chat"}\n')
    made = client.post("/v1/datasets", headers=tenant.headers, json={"name": "broken", "file_ids": [broken["id"]]})
    assert made.json()["status"] != "ready"
    answer = client.post(JOBS, headers=tenant.headers, json=body(datasets=[{"name": "broken"}]))
    assert answer.status_code == 400
    problem = answer.json()["error"]["details"]["problems"][0]
    assert problem["field"] == "datasets.0.name"
    assert "'broken'" in problem["message"] and "not ready" in problem["message"]
    assert job_count(db) == 0


def test_bodies_that_are_not_json_objects(client: TestClient, db: Database, tenant: Tenant) -> None:
    for raw in (b"{", b"[]", b'"text"', b"null x"):
        answer = client.post(JOBS, headers=tenant.headers, content=raw)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_REQUEST", raw
    assert client.post(JOBS, json=body()).status_code == 401
    assert client.post(JOBS, json=body(), headers={"Authorization": "Bearer nope"}).json()["error"]["code"] == (
        "UNAUTHORIZED")
    assert job_count(db) == 0


@pytest.mark.parametrize("path", ["", "/logs", "/checkpoints", "/download"])
def test_unknown_and_other_organizations_jobs_are_404(
    client: TestClient, tenant: Tenant, other: Tenant, path: str
) -> None:
    ready_dataset(client, tenant)
    mine = client.post(JOBS, headers=tenant.headers, json=body()).json()
    for ref in (mine["id"], "00000000-0000-4000-8000-000000000000", "job_nothing", "a%00b"):
        headers = other.headers if ref == mine["id"] else tenant.headers
        answer = client.get(f"{JOBS}/{ref}{path}", headers=headers)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "NOT_FOUND", (ref, answer.text)
    for verb in ("stop",):
        assert client.post(f"{JOBS}/{mine['id']}/{verb}", headers=other.headers).status_code == 404
    assert client.delete(f"{JOBS}/{mine['id']}", headers=other.headers).status_code == 404
    assert client.get(f"{JOBS}/{mine['id']}", headers=tenant.headers).status_code == 200


def test_list_filters_in_felix_words(client: TestClient, db: Database, tenant: Tenant) -> None:
    ready_dataset(client, tenant)
    project_id = tenancy.create_project(db, tenant.org_id, "p").id
    first = client.post(JOBS, headers=tenant.headers, json=body()).json()
    second = client.post(JOBS, headers=tenant.headers, json=body(project_id=project_id)).json()
    client.post(f"{JOBS}/{first['id']}/stop", headers=tenant.headers)  # queued: stopped at once
    listed = client.get(JOBS, headers=tenant.headers).json()["training_jobs"]
    assert [j["id"] for j in listed] == [second["id"], first["id"]]  # newest first
    stopped = client.get(JOBS, headers=tenant.headers, params={"status": "stopped"}).json()["training_jobs"]
    assert [j["id"] for j in stopped] == [first["id"]]
    requested = client.get(JOBS, headers=tenant.headers, params={"status": "requested"}).json()["training_jobs"]
    assert [j["id"] for j in requested] == [second["id"]]
    in_project = client.get(JOBS, headers=tenant.headers, params={"project_id": project_id})
    assert [j["id"] for j in in_project.json()["training_jobs"]] == [second["id"]]
    for bad in ("queued", "COMPLETE", "", "x" * 40):
        refused = client.get(JOBS, headers=tenant.headers, params={"status": bad})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_REQUEST", bad
    assert client.get(JOBS, headers=tenant.headers, params={"project_id": "a\x00"}).status_code == 400


def test_one_job_in_felix_and_v1(client: TestClient, tenant: Tenant) -> None:
    ready_dataset(client, tenant)
    created = client.post(JOBS, headers=tenant.headers, json=body())
    assert created.status_code == 201
    job = created.json()
    assert job["status"] == "requested" and job["name"] == "my-model" and "metrics" not in job
    native = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()  # /v1 takes the UUID too
    assert native["status"] == "queued" and native["name"] == "my-model"
    again = client.get(f"{JOBS}/{native['id']}", headers=tenant.headers).json()  # Felix takes the native id
    assert again["id"] == job["id"]
    assert client.post(f"/v1/jobs/{native['id']}/stop", headers=tenant.headers).json()["status"] == "stopped"
    assert client.get(f"{JOBS}/{job['id']}", headers=tenant.headers).json()["status"] == "stopped"
    download = client.get(f"{JOBS}/{job['id']}/download", headers=tenant.headers)
    assert download.status_code == 409 and download.json()["error"]["code"] == "CONFLICT"
    assert "stopped" in download.json()["error"]["message"]
    stop_again = client.post(f"{JOBS}/{job['id']}/stop", headers=tenant.headers)
    assert stop_again.status_code == 409 and "stopped" in stop_again.json()["error"]["message"]


def test_a_finished_native_job_through_felix_then_deleted_everywhere(
    client: TestClient, db: Database, api_settings: Settings, tenant: Tenant
) -> None:
    done = finished_job(client, db, api_settings, tenant)
    job = client.get(f"{JOBS}/{done['job_id']}", headers=tenant.headers).json()
    assert job["status"] == "complete" and job["metrics"] == {"ppl_baseline": 30.0, "ppl_final": 12.0}
    checkpoints = client.get(f"{JOBS}/{job['id']}/checkpoints", headers=tenant.headers).json()["checkpoints"]
    assert [c["step"] for c in checkpoints] == [2] and checkpoints[0]["training_job_id"] == job["id"]
    logs = client.get(f"{JOBS}/{job['id']}/logs", headers=tenant.headers).json()["logs"]
    assert [line["message"] for line in logs] == [f"line {i}" for i in range(1, 6)]
    url = client.get(f"{JOBS}/{job['id']}/download", headers=tenant.headers).json()["url"]
    archive = client.get(url, headers=tenant.headers)
    assert archive.status_code == 200 and archive.content[:2] == b"\x1f\x8b"  # gzip
    models = client.get("/felix/trained-models", headers=tenant.headers).json()["trained_models"]
    assert [m["training_job_id"] for m in models] == [job["id"]] and models[0]["base_model"] == "tiny-llama"
    # A new job from that checkpoint, named by its UUID.
    dataset = client.get(f"/v1/datasets/{done['dataset_id']}", headers=tenant.headers).json()
    from_checkpoint = client.post(JOBS, headers=tenant.headers,
                                  json=body(base_model=checkpoints[0]["id"], datasets=[{"name": dataset["name"]}]))
    assert from_checkpoint.status_code == 201, from_checkpoint.text
    assert from_checkpoint.json()["base_model"] == checkpoints[0]["id"]
    native = client.get(f"/v1/jobs/{from_checkpoint.json()['id']}", headers=tenant.headers).json()
    assert native["spec"]["base_model"] == checkpoints[0]["id"]
    assert client.delete(f"{JOBS}/{job['id']}", headers=tenant.headers).status_code == 204
    for path in (f"{JOBS}/{job['id']}", f"{JOBS}/{job['id']}/logs", f"{JOBS}/{job['id']}/checkpoints",
                 f"/v1/jobs/{done['job_id']}", f"/v1/jobs/{job['id']}"):
        assert client.get(path, headers=tenant.headers).status_code == 404, path
    assert client.delete(f"{JOBS}/{job['id']}", headers=tenant.headers).status_code == 404


def test_twenty_creations_a_minute_across_api_processes(
    client: TestClient, db: Database, api_settings: Settings, open_db: Callable[[], Database], tenant: Tenant
) -> None:
    ready_dataset(client, tenant)
    second = TestClient(create_app(api_settings, open_db()))  # another API process on the same database
    for i in range(20):
        answer = (client if i % 2 else second).post(JOBS, headers=tenant.headers, json=body())
        assert answer.status_code == 201, (i, answer.text)
    for c in (client, second):
        refused = c.post(JOBS, headers=tenant.headers, json=body())
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "RATE_LIMITED"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert job_count(db) == 20
