"""Jobs over HTTP: create, read, list with filters and pages, and the user's transitions."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, job_body, live_server, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.scheduler import claim
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.spec import JOB_TYPES
from tuneyard.store import tenancy
from tuneyard.store.lifecycle import finish_cancel

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def test_create_and_get_job(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    job = create_job(client, tenant, dataset["id"], name="first")
    assert job["status"] == "queued"
    assert job["name"] == "first"
    assert job["retries"] == 0 and job["last_checkpoint_step"] is None and job["output_model_id"] is None
    assert job["config"]["hyperparams"]["max_steps"] == 5
    # The runner reads the upload's path on the server; a client sees the name it uploaded and its id.
    assert job["config"]["datasets"][0]["path"] == f"chats.jsonl ({dataset['file_ids'][0]})"
    origins = job["config"]["origins"]  # the runner keeps them: spec.json and the model card say who chose what
    assert origins["hyperparams.max_steps"] == "user" and origins["hyperparams.learning_rate"] == "base_model"
    assert origins["hyperparams.seed"] == "default"
    got = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers)
    assert got.status_code == 200
    assert got.json()["id"] == job["id"]
    assert got.json()["progress"] == {"step": None, "total_steps": None, "epoch": None, "percent": None, "eta_s": None}


def test_list_newest_first_with_pages_and_filters(client: TestClient, tenant: Tenant, other: Tenant, db) -> None:
    dataset = ready_dataset(client, tenant)
    ids = [create_job(client, tenant, dataset["id"], name=f"j{i}")["id"] for i in range(5)]
    project = tenancy.create_project(db, tenant.org_id, "p1")
    in_project = create_job(client, tenant, dataset["id"], project_id=project.id)["id"]
    client.post(f"/v1/jobs/{ids[0]}/cancel", headers=tenant.headers)

    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/jobs", headers=tenant.headers, params=params).json()
        seen += [j["id"] for j in page["data"]]
        cursor = page["next_cursor"]
        assert page["has_more"] == (cursor is not None)
        if cursor is None:
            break
    assert seen == [in_project, *reversed(ids)]

    def ids_for(**params: object) -> list[str]:
        return [j["id"] for j in client.get("/v1/jobs", headers=tenant.headers, params=params).json()["data"]]

    assert ids_for(status="cancelled") == [ids[0]]
    assert ids_for(project_id=project.id) == [in_project]
    assert ids_for(type="merge") == []
    assert client.get("/v1/jobs", headers=other.headers).json()["data"] == []
    assert client.get("/v1/jobs", headers=tenant.headers, params={"cursor": "garbage!"}).status_code == 422
    assert client.get("/v1/jobs", headers=tenant.headers, params={"status": "sleeping"}).status_code == 422


def test_transitions_and_409_naming_the_status(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    job_id = create_job(client, tenant, dataset["id"])["id"]
    url = f"/v1/jobs/{job_id}"

    refused = client.post(f"{url}/resume", headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "CONFLICT"
    assert "queued" in refused.json()["error"]["message"]
    assert refused.json()["error"]["details"]["current_status"] == "queued"

    assert client.post(f"{url}/stop", headers=tenant.headers).json()["status"] == "stopped"
    resumed = client.post(f"{url}/resume", headers=tenant.headers, json={})
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert client.post(f"{url}/cancel", headers=tenant.headers).json()["status"] == "cancelled"
    for action in ("stop", "cancel", "resume"):
        again = client.post(f"{url}/{action}", headers=tenant.headers)
        assert again.status_code == 409, action
        assert again.json()["error"]["details"]["current_status"] == "cancelled"
    bad_checkpoint = client.post(f"{url}/resume", headers=tenant.headers, json={"checkpoint": "ckpt_nope", "x": 1})
    assert bad_checkpoint.status_code == 422

    assert client.delete(url, headers=tenant.headers).status_code == 204
    assert client.get(url, headers=tenant.headers).status_code == 404


def test_delete_refuses_a_held_job_and_removes_the_run_folder(
    client: TestClient, tenant: Tenant, db, api_settings: Settings
) -> None:
    dataset = ready_dataset(client, tenant)
    job_id = create_job(client, tenant, dataset["id"])["id"]
    claimed = claim(db, "w1", 30)
    assert claimed is not None and claimed.job_id == job_id
    folder = run_dir(api_settings, job_id)
    (folder / "checkpoints" / "step-000001").mkdir(parents=True)
    (folder / "runner.log").write_text("hello\n")

    refused = client.delete(f"/v1/jobs/{job_id}", headers=tenant.headers)
    assert refused.status_code == 409 and refused.json()["error"]["details"]["current_status"] == "starting"
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=tenant.headers).json()["status"] == "cancelling"
    finish_cancel(db, job_id, claimed.attempt)
    assert client.delete(f"/v1/jobs/{job_id}", headers=tenant.headers).status_code == 204
    assert not folder.exists()


def test_idempotency_key_in_body_or_header(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], idempotency_key="k-1")
    first = client.post("/v1/jobs", headers=tenant.headers, json=body)
    again = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]

    changed = client.post("/v1/jobs", headers=tenant.headers, json={**body, "name": "other"})
    assert changed.status_code == 409 and changed.json()["error"]["code"] == "CONFLICT"

    headers = {**tenant.headers, "Idempotency-Key": "k-2"}
    by_header = [client.post("/v1/jobs", headers=headers, json=job_body(dataset["id"])) for _ in range(2)]
    assert [r.status_code for r in by_header] == [201, 200]
    assert by_header[0].json()["id"] == by_header[1].json()["id"] != first.json()["id"]
    mismatch = client.post("/v1/jobs", headers=headers, json=job_body(dataset["id"], idempotency_key="k-3"))
    assert mismatch.status_code == 422
    total = client.get("/v1/jobs", headers=tenant.headers).json()["data"]
    assert len(total) == 2


def test_fifty_concurrent_identical_posts_make_one_job(app: FastAPI, client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], idempotency_key="same-key")
    with live_server(app) as base_url:
        def post(_: int) -> tuple[int, str]:
            response = httpx.post(f"{base_url}/v1/jobs", headers=tenant.headers, json=body, timeout=60)
            return response.status_code, response.json()["id"]

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(post, range(50)))
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 49 + [201]
    assert len({job_id for _, job_id in results}) == 1
    assert len(client.get("/v1/jobs", headers=tenant.headers).json()["data"]) == 1


def test_rate_limit_holds_across_two_app_instances(
    api_settings: Settings, db, open_db, tenant: Tenant
) -> None:
    settings = api_settings.with_overrides(job_create_rate_per_minute=3)
    first, second = create_app(settings, db), create_app(settings, open_db())
    with TestClient(first) as one, TestClient(second) as two:
        dataset = ready_dataset(one, tenant)
        responses = [(one, two)[i % 2].post("/v1/jobs", headers=tenant.headers, json=job_body(dataset["id"]))
                     for i in range(4)]
    assert [r.status_code for r in responses] == [201, 201, 201, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    limited = responses[-1]
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert 0 < int(limited.headers["X-RateLimit-Reset"]) <= 60


def test_qlora_without_its_kernels_is_refused_at_submission(client: TestClient, tenant: Tenant,
                                                             api_settings: Settings) -> None:
    """Never queued to fail (and be retried) in a runner: on a host without CUDA and bitsandbytes,
    a model that may take qlora (a registered Hugging Face folder) still gets a 422 naming the method."""
    folder = api_settings.model_roots[0] / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    base = client.post("/v1/base-models", headers=tenant.admin_headers, json={"source": "my-llama", "name": "mine"})
    assert base.status_code == 201 and "qlora" in base.json()["methods"], base.text
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], base_model=base.json()["id"], method="qlora")
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 422, response.text
    problems = response.json()["error"]["details"]["problems"]
    assert [p["field"] for p in problems] == ["method"]
    assert "qlora" in problems[0]["message"] and "not available" in problems[0]["message"]
    assert client.get("/v1/jobs", headers=tenant.headers).json()["data"] == []


def test_a_type_without_a_runner_is_refused_at_submission(client: TestClient, tenant: Tenant,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # Every shipped type runs today: declare one as a type would be before its recipe lands.
    monkeypatch.setitem(JOB_TYPES._entries, "merge", dataclasses.replace(JOB_TYPES.get("merge"), runnable=False))
    response = client.post("/v1/jobs", headers=tenant.headers, json={"type": "merge", "base_model": "tiny-llama"})
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["error"]["details"]["problems"]}
    assert "merge jobs cannot run yet" in problems["type"]
    assert client.get("/v1/jobs", headers=tenant.headers).json()["data"] == []
    unknown = client.get("/v1/jobs", headers=tenant.headers, params={"type": "distill"})
    assert unknown.status_code == 422


def test_distributed_is_checked_at_submission_and_carried_to_the_runner(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    two_nodes = job_body(dataset["id"], distributed={"strategy": "fsdp", "num_processes": 2, "num_nodes": 2})
    response = client.post("/v1/jobs", headers=tenant.headers, json=two_nodes)
    assert response.status_code == 422, response.text
    problems = {p["field"]: p["message"] for p in response.json()["error"]["details"]["problems"]}
    assert set(problems) == {"distributed.strategy", "distributed.num_nodes"}, problems
    assert "fsdp shards full fine-tuning only" in problems["distributed.strategy"]
    assert "local executor runs a job on one node" in problems["distributed.num_nodes"]
    two_ranks = job_body(dataset["id"], distributed={"num_processes": 2})
    ddp = client.post("/v1/jobs", headers=tenant.headers, json=two_ranks)
    assert ddp.status_code == 201, ddp.text
    assert ddp.json()["config"]["distributed"] == {"strategy": "ddp", "num_processes": 2, "num_nodes": 1}
