"""Fusion (document 001) in process, on both databases: its three run types become their job types,
every bad request is a 400 naming its fields with nothing made, a finished job reads in its words,
and one job is the same job in /v1 and in Fusion. The live replay of the document is in
tests/e2e/test_dialect_fusion.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, finished_job, make_tenant, ready_dataset
from tuneyard.services.base_models import builtin_uuid
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.jobs import get_job, load_job
from tuneyard.store.tables import Job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

JOB_FIELDS = {"id", "type", "status", "retries", "last_checkpoint_step", "output_model_id", "created_at",
              "started_at", "finished_at"}
TINY = builtin_uuid("tiny-llama")


def post_run(client: TestClient, tenant: Tenant, body: Any) -> Any:
    return client.post("/jobs", headers=tenant.headers, json=body)


def stored(db: Database, tenant: Tenant, ref: str) -> Job:
    """The job row a Fusion id (its UUID) names."""
    return get_job(db, tenant.org_id, ref)


def native_jobs(client: TestClient, tenant: Tenant) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = client.get("/v1/jobs", headers=tenant.headers).json()["data"]
    return listed


def test_each_run_type_is_queued_as_its_job_type(client: TestClient, db: Database, tenant: Tenant) -> None:
    dataset = _fusion_dataset(client, tenant)
    train = post_run(client, tenant, {"type": "train", "idempotency_key": "run-1", "base_model_id": TINY,
                                      "dataset_id": dataset, "hyperparams": {"turns": 2, "output_name": "my-model"}})
    assert train.status_code == 201, train.text
    body = train.json()
    assert set(body) == JOB_FIELDS
    assert body["type"] == "train" and body["status"] == "queued" and body["retries"] == 0
    assert body["last_checkpoint_step"] == 0 and body["output_model_id"] is None
    assert body["started_at"] is None and body["finished_at"] is None and body["created_at"].endswith("Z")
    uuid.UUID(body["id"])
    job = stored(db, tenant, body["id"])
    assert job.config["hyperparams"]["turns"] == 2 and job.config["base_model"] == "tiny-llama"
    assert job.name == "my-model" and job.config["hyperparams"]["output_name"] == "my-model"

    finetune = post_run(client, tenant, {"type": "finetune", "idempotency_key": "ft-1", "source_model_id": TINY,
                                         "dataset_id": dataset,
                                         "hyperparams": {"lora_rank": 32, "steps": 2000, "output_name": "my-model"}})
    assert finetune.status_code == 201, finetune.text
    config = stored(db, tenant, finetune.json()["id"]).config
    assert config["method"] == "lora" and config["hyperparams"]["lora_rank"] == 32
    assert config["hyperparams"]["max_steps"] == 2000
    defaults = post_run(client, tenant, {"type": "finetune", "idempotency_key": "ft-2", "base_model_id": "tiny-llama",
                                         "dataset_id": dataset, "hyperparams": {"source_model_id": TINY}})
    assert defaults.status_code == 201, defaults.text  # the same model named twice is one model
    hyperparams = stored(db, tenant, defaults.json()["id"]).config["hyperparams"]
    assert (hyperparams["lora_rank"], hyperparams["max_steps"]) == (32, 2000)  # 001's defaults

    contract = post_run(client, tenant, {"type": "contract", "idempotency_key": "contract-1", "hyperparams": {
        "source_model_id": TINY, "contraction_ratio": 0.5, "num_layers_to_contract": 8}})
    assert contract.status_code == 201, contract.text
    config = stored(db, tenant, contract.json()["id"]).config
    assert (config["type"], config["contraction_ratio"], config["num_layers_to_contract"]) == ("contract", 0.5, 8)
    assert config["datasets"] == []

    listed = client.get("/jobs", headers=tenant.headers).json()["jobs"]
    assert [j["id"] for j in listed] == [contract.json()["id"], defaults.json()["id"], finetune.json()["id"],
                                         body["id"]]
    assert all(set(j) == JOB_FIELDS for j in listed)


def test_the_same_key_is_the_same_job_and_another_body_under_it_a_conflict(client: TestClient,
                                                                              tenant: Tenant) -> None:
    dataset = _fusion_dataset(client, tenant)
    run = {"type": "train", "idempotency_key": "run-1", "base_model_id": TINY, "dataset_id": dataset}
    first, again = post_run(client, tenant, run), post_run(client, tenant, run)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other = post_run(client, tenant, {**run, "hyperparams": {"turns": 3}})
    assert other.status_code == 409 and other.json()["error"]["code"] == "CONFLICT"
    assert len(native_jobs(client, tenant)) == 1


Row = tuple[str, Callable[[dict[str, Any]], Any], int, str, list[str]]
"""(what is wrong, the body from the test's objects, status, code, the fields the answer names)."""


def _train(o: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "train", "idempotency_key": "k", "base_model_id": TINY, "dataset_id": o["dataset"], **fields}


def _finetune(o: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"type": "finetune", "idempotency_key": "k", "source_model_id": TINY, "dataset_id": o["dataset"],
            **fields}


def _contract(**hyperparams: Any) -> dict[str, Any]:
    return {"type": "contract", "idempotency_key": "k", "hyperparams": {"source_model_id": TINY, **hyperparams}}


def _without(body: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != field}


BAD_RUNS: list[Row] = [
    ("no idempotency key", lambda o: _without(_train(o), "idempotency_key"), 400, "INVALID_REQUEST",
     ["idempotency_key"]),
    ("an empty idempotency key", lambda o: _train(o, idempotency_key=""), 400, "INVALID_REQUEST", ["idempotency_key"]),
    ("a number for the key", lambda o: _train(o, idempotency_key=7), 400, "INVALID_REQUEST", ["idempotency_key"]),
    ("no type", lambda o: _without(_train(o), "type"), 400, "INVALID_REQUEST", ["type"]),
    ("an unknown type", lambda o: _train(o, type="grow"), 400, "INVALID_REQUEST", ["type"]),
    ("a field 001 does not have", lambda o: _train(o, epochs=3), 400, "INVALID_REQUEST", ["epochs"]),
    ("a body that is a list", lambda o: [_train(o)], 400, "INVALID_REQUEST", ["(body)"]),
    ("hyperparams not an object", lambda o: _train(o, hyperparams=[2]), 400, "INVALID_REQUEST", ["hyperparams"]),
    ("train without a dataset", lambda o: _without(_train(o), "dataset_id"), 400, "INVALID_REQUEST", ["dataset_id"]),
    ("train without a model", lambda o: _without(_train(o), "base_model_id"), 400, "INVALID_REQUEST",
     ["base_model_id"]),
    ("train naming source_model_id", lambda o: _train(o, source_model_id=TINY), 400, "INVALID_REQUEST",
     ["source_model_id"]),
    ("an unknown model UUID", lambda o: _train(o, base_model_id=str(uuid.uuid4())), 400, "INVALID_REQUEST",
     ["base_model_id"]),
    ("an unknown dataset UUID", lambda o: _train(o, dataset_id=str(uuid.uuid4())), 400, "INVALID_REQUEST",
     ["dataset_id"]),
    ("another organization's dataset", lambda o: _train(o, dataset_id=o["other_dataset"]), 400, "INVALID_REQUEST",
     ["dataset_id"]),
    ("another organization's model", lambda o: _finetune(o, source_model_id=o["other_model"]), 400,
     "INVALID_REQUEST", ["source_model_id"]),
    ("an id with a NUL byte", lambda o: _train(o, dataset_id="ds_\x00"), 400, "INVALID_REQUEST", ["dataset_id"]),
    ("turns as a word", lambda o: _train(o, hyperparams={"turns": "two"}), 400, "INVALID_REQUEST",
     ["hyperparams.turns"]),
    ("cycles without steps_per_cycle", lambda o: _train(o, hyperparams={"cycles": 3}), 400, "INVALID_REQUEST",
     ["hyperparams.cycles", "hyperparams.steps_per_cycle"]),
    ("an unknown train knob", lambda o: _train(o, hyperparams={"warp": 9}), 400, "INVALID_REQUEST",
     ["hyperparams.warp"]),
    ("an output name with a control character", lambda o: _train(o, hyperparams={"output_name": "a\x07b"}), 400,
     "INVALID_REQUEST", ["hyperparams.output_name"]),
    ("finetune steps of 0", lambda o: _finetune(o, hyperparams={"steps": 0}), 400, "INVALID_REQUEST",
     ["hyperparams.steps"]),
    ("a negative finetune lr", lambda o: _finetune(o, hyperparams={"lr": -1}), 400, "INVALID_REQUEST",
     ["hyperparams.lr"]),
    ("a lora_rank that is a word", lambda o: _finetune(o, hyperparams={"lora_rank": "big"}), 400, "INVALID_REQUEST",
     ["hyperparams.lora_rank"]),
    ("two models that disagree", lambda o: _finetune(o, hyperparams={"source_model_id": o["dataset"]}), 400,
     "INVALID_REQUEST", ["source_model_id", "hyperparams.source_model_id"]),
    ("contract without a model", lambda o: {"type": "contract", "idempotency_key": "k"}, 400, "INVALID_REQUEST",
     ["hyperparams.source_model_id"]),
    ("a contraction ratio past 1", lambda o: _contract(contraction_ratio=1.5), 400, "INVALID_REQUEST",
     ["hyperparams.contraction_ratio"]),
    ("a knob contract does not have", lambda o: _contract(steps=10), 400, "INVALID_REQUEST", ["hyperparams.steps"]),
]


@pytest.mark.parametrize("row", BAD_RUNS, ids=[row[0] for row in BAD_RUNS])
def test_a_bad_run_is_refused_naming_its_fields_and_nothing_is_made(client: TestClient, db: Database,
                                                                     tenant: Tenant, row: Row) -> None:
    _what, make, status, code, fields = row
    other = make_tenant(db, "globex")
    objects = {"dataset": _fusion_dataset(client, tenant), "other_dataset": _fusion_dataset(client, other),
               "other_model": finished_job(client, db, api_settings_of(client), other)["model_id"]}
    before = len(native_jobs(client, tenant))
    response = post_run(client, tenant, make(objects))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert sorted(p["field"] for p in error["details"]["problems"]) == sorted(fields), error
    assert len(native_jobs(client, tenant)) == before


def api_settings_of(client: TestClient) -> Settings:
    settings: Settings = client.app.state.context.settings  # type: ignore[attr-defined]
    return settings


def test_without_a_key_or_with_a_body_that_is_not_json(client: TestClient, tenant: Tenant) -> None:
    assert client.post("/jobs", json={"type": "train"}).status_code == 401
    assert client.get("/jobs").status_code == 401
    bad = client.post("/jobs", headers={**tenant.headers, "Content-Type": "application/json"}, content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST"
    assert client.get("/jobs", headers=tenant.headers, params={"limit": 0}).status_code == 400
    assert client.get(f"/jobs/{uuid.uuid4()}", headers=tenant.headers).status_code == 404
    assert native_jobs(client, tenant) == []


def test_a_finished_job_in_fusions_words(client: TestClient, db: Database, api_settings: Settings,
                                         tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    job_uuid = load_job(db, done["job_id"]).uuid
    for ref in (job_uuid, done["job_id"]):  # the UUID Fusion shows, and the native id
        job = client.get(f"/jobs/{ref}", headers=tenant.headers).json()
        assert job["id"] == job_uuid and job["status"] == "completed" and job["last_checkpoint_step"] == 2
        assert job["output_model_id"] and job["output_model_id"] != done["model_id"]

    metrics = client.get(f"/jobs/{job_uuid}/metrics", headers=tenant.headers, params={"since_step": 2}).json()
    assert metrics["job_id"] == job_uuid and metrics["count"] == 2 and metrics["latest_step"] == 4
    assert [p["step"] for p in metrics["points"]] == [3, 4]  # training points only, steps > 2
    point = metrics["points"][0]
    assert set(point) == {"ts", "step", "cycle", "phase", "loss", "lr", "throughput", "vram_gb", "grad_norm"}
    assert point["loss"] == 1.5 and point["phase"] == "train" and point["cycle"] == 1
    empty = client.get(f"/jobs/{job_uuid}/metrics", headers=tenant.headers, params={"since_step": 4}).json()
    assert (empty["count"], empty["points"], empty["latest_step"]) == (0, [], 4)

    logs = client.get(f"/jobs/{job_uuid}/logs", headers=tenant.headers, params={"since": 3}).json()
    assert logs["job_id"] == job_uuid and logs["latest_seq"] == 5
    assert [(line["seq"], line["stream"], line["text"]) for line in logs["lines"]] == [
        (4, "stdout", "line 4"), (5, "stdout", "line 5")]

    events = client.get(f"/jobs/{job_uuid}/events", headers=tenant.headers).json()
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "created" and kinds[-1] == "completed" and {"running", "finalizing"} <= set(kinds)
    assert all(set(e) == {"ts", "kind", "payload"} for e in events)

    result = client.get(f"/jobs/{job_uuid}/result", headers=tenant.headers).json()
    assert result["job_id"] == job_uuid and (result["ppl_baseline"], result["ppl_final"]) == (30.0, 12.0)
    assert result["ppl_delta_pct"] == pytest.approx(-60.0)
    assert set(result) == {"job_id", "ppl_baseline", "ppl_final", "ppl_delta_pct", "loss_final", "params_before",
                           "params_after", "params_delta", "function_preservation", "gpu_seconds",
                           "tokens_processed", "cost_usd"}

    [model] = client.get("/models", headers=tenant.headers).json()["models"]
    assert model["id"] == job["output_model_id"] and model["job_id"] == job_uuid
    names = [d["name"] for d in client.get("/datasets", headers=tenant.headers).json()["datasets"]]
    assert len(names) == 2  # the job's and the one built from trajectories
    bases = client.get("/base-models", headers=tenant.headers).json()["base_models"]
    assert {"id": TINY, "name": "tiny-llama"}.items() <= next(b for b in bases if b["name"] == "tiny-llama").items()


def test_a_result_is_404_until_it_exists(client: TestClient, tenant: Tenant) -> None:
    run = post_run(client, tenant, _contract()).json()
    missing = client.get(f"/jobs/{run['id']}/result", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_recommend_with_ids_or_sizes(client: TestClient, tenant: Tenant) -> None:
    dataset = _fusion_dataset(client, tenant)
    named = client.post("/training/recommend", headers=tenant.headers,
                        json={"base_model_id": TINY, "dataset_id": dataset})
    assert named.status_code == 200, named.text
    body = named.json()
    assert {"model_params", "dataset_tokens_est", "recommended", "windows", "notes", "disclaimer"} <= set(body)
    assert {"turns", "lr", "cycles", "steps_per_cycle", "seq_len"} <= set(body["recommended"])
    sized = client.post("/training/recommend", headers=tenant.headers,
                        json={"params": 7_000_000_000, "dataset_tokens": 2_100_000}).json()
    assert sized["model_params"] == 7_000_000_000 and sized["dataset_tokens_est"] == 2_100_000
    unknown = client.post("/training/recommend", headers=tenant.headers, json={"base_model_id": str(uuid.uuid4())})
    assert unknown.status_code == 400
    assert {p["field"] for p in unknown.json()["error"]["details"]["problems"]} == {"base_model_id", "dataset_id"}


def test_one_job_in_both_apis_and_a_cancel_in_v1_is_seen_by_fusion(client: TestClient, db: Database,
                                                                    tenant: Tenant) -> None:
    run = post_run(client, tenant, _train({"dataset": _fusion_dataset(client, tenant)})).json()
    [native] = native_jobs(client, tenant)
    assert load_job(db, native["id"]).uuid == run["id"] and native["type"] == "train"
    assert client.post(f"/v1/jobs/{native['id']}/cancel", headers=tenant.headers).status_code == 200
    assert client.get(f"/jobs/{run['id']}", headers=tenant.headers).json()["status"] == "cancelled"


def test_a_browser_page_at_a_shared_path_is_the_consoles(client: TestClient, tenant: Tenant) -> None:
    page = client.get("/jobs", headers={"Accept": "text/html,application/xhtml+xml"}, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/sign-in")
    api_answer = client.get("/jobs", headers={**tenant.headers, "Accept": "text/html"})
    assert api_answer.status_code == 200 and api_answer.json() == {"jobs": [], "next_cursor": None}


def _fusion_dataset(client: TestClient, tenant: Tenant) -> str:
    """A ready dataset's UUID, as GET /datasets shows it."""
    made = ready_dataset(client, tenant, name=f"chats-{uuid.uuid4().hex[:8]}")
    [shown] = [d for d in client.get("/datasets", headers=tenant.headers).json()["datasets"]
               if d["name"] == made["name"]]
    assert shown["status"] == "ready"
    return str(shown["id"])
