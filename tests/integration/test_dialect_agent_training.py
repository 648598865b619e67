"""Document 003's jobs and models on /api/training, in process, on both databases: a job from 003's
body (recognised beside 002's; a body mixing both is 400 naming the fields), its dataset the newest
built from trajectories or built from at most `maxTrajectories`, the backend checked against what
this server trains on, cancel, the model list, the Ollama import (loopback only, no connection made
otherwise), the newest benchmark, and 002's /estimate. Every bad request is its status and code
with nothing made."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.integration.test_api_exports import completed_gguf_export
from tests.support import api
from tests.support.api import Tenant, chat_lines, finished_job, make_tenant, trajectory_body
from tests.support.ollama_standin import OllamaStandIn, ollama_standin
from tuneyard.scheduler import capacity
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.tables import Dataset, File, Job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

PRINTED = {"datasetId": "dataset-2024-06-10", "backend": "mlx", "model": "eliza-1-2b", "iterations": 100,
           "batchSize": 4, "learningRate": 1e-5}
"""003's printed job body, as printed (its ids are substituted per test)."""
HOST_DEVICE = capacity.host_device()
MISSING_JOB = "job_000000000000000000000000"
MISSING_MODEL = "model_000000000000000000000000"


def made(db: Database, org_id: str) -> tuple[int, int, int]:
    """(jobs, files, datasets) of the organization."""
    with db.read() as session:
        return tuple(len(session.scalars(select(table.id).where(table.org_id == org_id)).all())  # type: ignore[return-value]
                     for table in (Job, File, Dataset))


def ingest(client: TestClient, tenant: Tenant, n: int, first: int = 0) -> None:
    for i in range(first, first + n):
        body = trajectory_body(calls=2)
        body["startTime"] = 1718000000000 + i * 1000
        body["endTime"] = body["startTime"] + 500
        for j, call in enumerate(body["llmCalls"]):
            call["messages"][0]["content"] = f"Trajectory {i}, question {j}: what is {i} plus {j}?"
            call["response"] = f"{i + j}."
        answer = client.post("/v1/trajectories", headers=tenant.headers, json=body)
        assert answer.status_code == 201, answer.text


def build(client: TestClient, tenant: Tenant, **filters: Any) -> dict[str, Any]:
    answer = client.post("/v1/dataset-builds", headers=tenant.headers, json=filters)
    assert answer.status_code == 201, answer.text
    built: dict[str, Any] = answer.json()
    return built


def submit(client: TestClient, tenant: Tenant, body: Any) -> Any:
    return client.post("/api/training/jobs", headers=tenant.headers, json=body)


def test_003s_printed_body_is_a_job_on_its_dataset_with_both_documents_fields(
        client: TestClient, tenant: Tenant) -> None:
    ingest(client, tenant, 3)
    older = build(client, tenant, limit=2)
    newest = build(client, tenant)
    asked = {**PRINTED, "datasetId": older["id"], "backend": HOST_DEVICE, "model": "tiny-llama"}
    answer = submit(client, tenant, asked)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "pending" and body["config"] == asked
    job = body["job"]
    assert job["id"] == body["job_id"] and job["status"] == "queued" and job["datasetId"] == older["id"]
    assert job["backend"] == HOST_DEVICE and job["model"] == "tiny-llama" and isinstance(job["createdAt"], int)
    native = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()
    hyperparams = native["config"]["hyperparams"]
    assert (hyperparams["max_steps"], hyperparams["batch_size"], hyperparams["learning_rate"]) == (100, 4, 1e-5)
    assert hyperparams["eval_split"] == 0.1 and native["config"]["method"] == "lora"

    # datasetId omitted: the newest dataset built from trajectories; backend omitted: native.
    latest = submit(client, tenant, {"model": "tiny-llama", "iterations": 5}).json()
    assert latest["job"]["datasetId"] == newest["id"] and latest["job"]["backend"] == "native"
    one = client.get(f"/api/training/jobs/{latest['job_id']}", headers=tenant.headers).json()
    assert one["job"]["totalIterations"] is None and one["job"]["progress"] is None and one["status"] == "pending"
    listed = client.get("/api/training/jobs", headers=tenant.headers).json()["jobs"]
    assert [j["id"] for j in listed] == [latest["job_id"], body["job_id"]]


def test_max_trajectories_trains_on_a_dataset_of_at_most_that_many(client: TestClient, tenant: Tenant,
                                                                    db: Database) -> None:
    ingest(client, tenant, 4)
    answer = submit(client, tenant, {"model": "tiny-llama", "maxTrajectories": 3, "iterations": 5})
    assert answer.status_code == 201, answer.text
    dataset_id = answer.json()["job"]["datasetId"]
    lineage = client.get(f"/v1/dataset-builds/{dataset_id}", headers=tenant.headers).json()
    assert lineage["trajectoryCount"] == 3 and lineage["exampleCount"] == 6
    again = submit(client, tenant, {"model": "tiny-llama", "maxTrajectories": 3, "iterations": 5}).json()
    assert again["job"]["datasetId"] == dataset_id  # the same content: the same dataset, not another
    whole = build(client, tenant)
    capped = submit(client, tenant, {"datasetId": whole["id"], "maxTrajectories": 3, "model": "tiny-llama"})
    assert capped.status_code == 400 and "4 trajectories" in capped.text
    assert submit(client, tenant, {"datasetId": whole["id"], "maxTrajectories": 4, "model": "tiny-llama"}) \
        .status_code == 201


def test_the_default_model_and_a_body_curl_sends(client: TestClient, tenant: Tenant) -> None:
    ingest(client, tenant, 1)
    build(client, tenant)
    form = {**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"}
    answer = client.post("/api/training/jobs", headers=form, content=json.dumps({"iterations": 3}))
    assert answer.status_code == 201, answer.text
    assert answer.json()["job"]["model"] == "smollm2-135m-instruct"


def test_cancel_a_queued_job_then_an_ended_one(client: TestClient, tenant: Tenant, db: Database,
                                               api_settings: Settings) -> None:
    ingest(client, tenant, 1)
    build(client, tenant)
    job_id = submit(client, tenant, {"model": "tiny-llama"}).json()["job_id"]
    cancelled = client.post(f"/api/training/jobs/{job_id}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["job"]["id"] == job_id and cancelled.json()["job"]["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()["status"] == "cancelled"
    again = client.post(f"/api/training/jobs/{job_id}/cancel", headers=tenant.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "CONFLICT"


def test_models_import_and_the_newest_benchmark(client: TestClient, db: Database, tenant: Tenant,
                                                api_settings: Settings) -> None:
    done = finished_job(client, db, api_settings, tenant)
    models = client.get("/api/training/models", headers=tenant.headers).json()["models"]
    assert [(m["id"], m["jobId"], m["active"]) for m in models] == [(done["model_id"], done["job_id"], False)]
    assert models[0]["name"] == f"tiny-llama-{done['model_id']}" and isinstance(models[0]["createdAt"], int)

    base = f"/api/training/models/{done['model_id']}"
    without = client.post(f"{base}/import-ollama", headers=tenant.headers, json={"ollamaUrl": "http://127.0.0.1:9"})
    assert without.status_code == 409 and "gguf" in without.text  # a failed export only: nothing to push
    export_id, _gguf = completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    with ollama_standin() as ollama:
        answer = client.post(f"{base}/import-ollama", headers=tenant.headers,
                             json={"modelName": "eliza-v1", "baseModel": "eliza-1-2b", "ollamaUrl": ollama.url})
        assert answer.status_code == 200, answer.text
        model = answer.json()["model"]
        assert model["id"] == done["model_id"] and model["ollamaName"] == "eliza-v1"
        assert isinstance(model["importedAt"], int) and model["exportId"] == export_id
        assert [c["model"] for c in ollama.created] == ["eliza-v1"] and len(ollama.blobs) == 1

    # The newest benchmark is the evaluation finished_job completed: its measured scores, as stored.
    latest = client.get(f"{base}/benchmark", headers=tenant.headers).json()
    assert latest["modelId"] == done["model_id"] and latest["evaluationId"] == done["evaluation_id"]
    assert latest["scores"] == {"coherence": 0.5, "consistency": 0.5, "helpfulness": 0.4}
    assert latest["method"] == "reference" and isinstance(latest["completedAt"], int)
    # Its training job held nothing out, so a new benchmark has nothing to measure on: 400, no job.
    jobs_before = made(db, tenant.org_id)[0]
    refused = client.post(f"{base}/benchmark", headers=tenant.headers, params={"wait": 0})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_REQUEST"
    assert made(db, tenant.org_id)[0] == jobs_before


def test_002s_estimate_answers_memory_time_and_cost_and_keeps_nothing(
        client: TestClient, db: Database, tenant: Tenant, api_settings: Settings) -> None:
    root = api_settings.resolved_dataset_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "alpaca.jsonl").write_bytes(chat_lines(20))
    body = {"base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "method": "lora", "num_epochs": 3,
            "batch_size": 4, "lora_rank": 16, "eval_split": 0.1}
    answer = client.post("/api/training/estimate", headers=tenant.headers, json=body)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["base_model"] == "tiny-llama" and found["method"] == "lora"
    assert found["config"] == {**body, "distributed": False, "num_nodes": 1}  # as 002's POST answers it
    assert found["memory"]["peak_bytes"] > 0 and found["run"]["steps"] == 3 * 5  # 18 examples kept, 4 a step
    assert {"seconds", "calibrated"} <= set(found["time"]) and "usd" in found["cost"]
    assert made(db, tenant.org_id) == (0, 0, 0)
    bad = client.post("/api/training/estimate", headers=tenant.headers, json={**body, "dataset_path": "../x.jsonl"})
    assert bad.status_code == 400 and [p["field"] for p in bad.json()["error"]["details"]["problems"]] == [
        "dataset_path"]


@dataclass(frozen=True)
class World:
    """What a bad request may name: the tenant's built dataset, trained model and ended job, and
    another organization's dataset, model and job."""

    dataset_id: str
    model_id: str
    other_dataset_id: str
    other_model_id: str
    other_job_id: str


@pytest.fixture
def world(client: TestClient, db: Database, tenant: Tenant, api_settings: Settings) -> Iterator[World]:
    done = finished_job(client, db, api_settings, tenant)
    completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    stranger = make_tenant(db, "initech")
    theirs = finished_job(client, db, api_settings, stranger)
    yield World(done["build_id"], done["model_id"], theirs["build_id"], theirs["model_id"], theirs["job_id"])


Bad = tuple[str, str, str, Any, int, str, list[str]]
"""(what is wrong, method, path, JSON body, status, code, fields named)."""
JOBS = "/api/training/jobs"
OLLAMA = "/api/training/models/{model_id}/import-ollama"
NON_LOOPBACK = ["http://0.0.0.0:{port}", "http://[::]:{port}", "http://localhost.evil.invalid:{port}",
                "http://user@127.0.0.1:{port}", "http://127.0.0.1:{port}@evil.invalid", "http://2130706433:{port}",
                "http://0x7f000001:{port}", "http://0177.0.0.1:{port}", "http://127.1:{port}",
                "http://[::ffff:127.0.0.1]:{port}", "http://10.0.0.1:{port}", "file:///etc/passwd",
                "http://127.0.0.1:{port}/api"]
BAD: list[Bad] = [
    ("a body mixing both documents", "POST", JOBS, {"base_model": "tiny-llama", "datasetId": "{dataset_id}"},
     400, "INVALID_REQUEST", ["base_model", "datasetId"]),
    ("a backend this host lacks (mlx)", "POST", JOBS, {"datasetId": "{dataset_id}", "backend": "mlx"},
     400, "INVALID_REQUEST", ["backend"]),
    ("an unknown backend", "POST", JOBS, {"backend": "tpu"}, 400, "INVALID_REQUEST", ["backend"]),
    ("an unknown dataset", "POST", JOBS, {"datasetId": "ds_000000000000000000000000"}, 400, "INVALID_REQUEST",
     ["datasetId"]),
    ("another organization's dataset", "POST", JOBS, {"datasetId": "{other_dataset_id}"}, 400, "INVALID_REQUEST",
     ["datasetId"]),
    ("zero iterations", "POST", JOBS, {"iterations": 0}, 400, "INVALID_REQUEST", ["iterations"]),
    ("a batch size that is a word", "POST", JOBS, {"batchSize": "four"}, 400, "INVALID_REQUEST", ["batchSize"]),
    ("a negative learning rate", "POST", JOBS, {"learningRate": -1}, 400, "INVALID_REQUEST", ["learningRate"]),
    ("maxTrajectories 0", "POST", JOBS, {"maxTrajectories": 0}, 400, "INVALID_REQUEST", ["maxTrajectories"]),
    ("a model that is not there", "POST", JOBS, {"datasetId": "{dataset_id}", "model": "no-such-model"}, 400,
     "INVALID_REQUEST", ["model"]),
    ("a field neither document has", "POST", JOBS, {"epochs": 3}, 400, "INVALID_REQUEST", ["epochs"]),
    ("a body that is a list", "POST", JOBS, [{"datasetId": "x"}], 400, "INVALID_REQUEST", ["(body)"]),
    ("cancel an unknown job", "POST", JOBS + "/" + MISSING_JOB + "/cancel", None, 404, "NOT_FOUND", []),
    ("cancel another organization's job", "POST", JOBS + "/{other_job_id}/cancel", None, 404, "NOT_FOUND", []),
    ("import an unknown model", "POST", OLLAMA.replace("{model_id}", MISSING_MODEL), {"ollamaUrl": "{ollama}"},
     404, "NOT_FOUND", []),
    ("import another organization's model", "POST", OLLAMA.replace("{model_id}", "{other_model_id}"),
     {"ollamaUrl": "{ollama}"}, 404, "NOT_FOUND", []),
    ("an ollamaUrl that is a number", "POST", OLLAMA, {"ollamaUrl": 11434}, 400, "INVALID_REQUEST", ["ollamaUrl"]),
    ("an import field 003 does not have", "POST", OLLAMA, {"url": "{ollama}"}, 400, "INVALID_REQUEST", ["url"]),
    ("a model name Ollama refuses", "POST", OLLAMA, {"modelName": "bad name/..", "ollamaUrl": "{ollama}"}, 400,
     "INVALID_REQUEST", ["modelName"]),
    ("activate another organization's model", "POST", "/api/training/models/{other_model_id}/activate", {}, 404,
     "NOT_FOUND", []),
    ("a providerModel that is a number", "POST", "/api/training/models/{model_id}/activate", {"providerModel": 7},
     400, "INVALID_REQUEST", ["providerModel"]),
    ("a providerModel shaped as a model id", "POST", "/api/training/models/{model_id}/activate",
     {"providerModel": "model_x"}, 400, "INVALID_REQUEST", ["providerModel"]),
    ("benchmark another organization's model", "POST", "/api/training/models/{other_model_id}/benchmark", None,
     404, "NOT_FOUND", []),
    ("a benchmark wait past its bound", "POST", "/api/training/models/{model_id}/benchmark?wait=9999", None, 400,
     "INVALID_REQUEST", ["query.wait"]),
    ("an estimate in 003's words", "POST", "/api/training/estimate", {"datasetId": "{dataset_id}"}, 400,
     "INVALID_REQUEST", ["base_model", "dataset_path", "datasetId"]),
] + [(f"ollamaUrl {url}", "POST", OLLAMA, {"ollamaUrl": url}, 400, "INVALID_REQUEST", ["ollamaUrl"])
     for url in NON_LOOPBACK]


def _filled(value: Any, names: dict[str, str]) -> Any:
    text = json.dumps(value)
    for name, replacement in names.items():
        text = text.replace("{" + name + "}", replacement)
    return json.loads(text)


@pytest.mark.parametrize("row", BAD, ids=[row[0] for row in BAD])
def test_a_bad_request_is_its_status_and_code_and_nothing_is_made_or_connected(
        client: TestClient, db: Database, tenant: Tenant, world: World, row: Bad) -> None:
    _what, method, path, body, status, code, fields = row
    with ollama_standin() as ollama:
        names = {**{k: str(v) for k, v in vars(world).items()}, "ollama": ollama.url, "port": str(ollama.port)}
        before = made(db, tenant.org_id)
        answer = client.request(method, _filled(path, names), headers=tenant.headers,
                                json=_filled(body, names) if body is not None else None)
        _no_connection(ollama)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == code
    if fields:
        assert sorted({p["field"] for p in error["details"]["problems"]}) == sorted(fields), error
    assert made(db, tenant.org_id) == before


def _no_connection(ollama: OllamaStandIn) -> None:
    assert ollama.connections == 0 and ollama.requests == []


def test_no_key_not_json_and_the_routes_are_documented(client: TestClient, tenant: Tenant) -> None:
    assert client.post("/api/training/jobs", json={"iterations": 1}).status_code == 401
    assert client.get("/api/training/models").status_code == 401
    assert client.post(f"/api/training/jobs/{MISSING_JOB}/cancel").status_code == 401
    for path in ("/api/training/jobs", "/api/training/estimate"):
        answer = client.post(path, headers=tenant.headers, content=b"{nope")
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_REQUEST"
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/api/training/jobs/{job_id}/cancel", "/api/training/models",
                 "/api/training/models/{model_id}/import-ollama", "/api/training/models/{model_id}/activate",
                 "/api/training/models/{model_id}/benchmark", "/api/training/estimate"):
        assert path in paths, path

