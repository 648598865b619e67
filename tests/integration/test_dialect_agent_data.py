"""Document 003's data endpoints at /api/training on both databases: its status counters, trajectories
(listed, read, and posted: the extension issue 15 asks for), datasets built from them and the
auto-training config, each the same object the native /v1 routes show, and every bad request a
400 INVALID_REQUEST (or 404, 401, 409, 413) naming its field with nothing made."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, finished_job, ready_dataset, trajectory_body
from tuneyard.scheduler import claim
from tuneyard.scheduler.workers import register_worker, set_worker_state
from tuneyard.settings import Settings
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

ITEM = {"id", "source", "status", "llmCallCount", "startTime", "endTime"}
DATASET = {"id", "createdAt", "trajectoryCount", "exampleCount"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends


def post(client: TestClient, tenant: Tenant, body: Any, path: str = "/api/training/trajectories") -> Any:
    return client.post(path, headers=tenant.headers, json=body)


def trajectory(trajectory_id: str, start: int, **kwargs: Any) -> dict[str, Any]:
    return {**trajectory_body(trajectory_id, **kwargs), "startTime": start, "endTime": start + 10_000}


def test_status_counts_jobs_in_003s_words_and_says_whether_a_worker_can_train(
        client: TestClient, db: Database, api_settings: Settings, tenant: Tenant, other: Tenant) -> None:
    empty = client.get("/api/training/status", headers=tenant.headers)
    assert empty.status_code == 200 and empty.json() == {
        "runningJobs": 0, "queuedJobs": 0, "completedJobs": 0, "failedJobs": 0, "modelCount": 0, "datasetCount": 0,
        "runtimeAvailable": False}
    finished_job(client, db, api_settings, tenant)  # a completed job and its evaluation, a model, one built dataset
    dataset = ready_dataset(client, tenant, name="more")["id"]
    running, failed, cancelled, queued = (create_job(client, tenant, dataset)["id"] for _ in range(4))
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == running
    lifecycle.start(db, running, claimed.attempt)
    lifecycle.fail(db, failed, "user_error", "a job that failed")
    assert client.post(f"/v1/jobs/{cancelled}/cancel", headers=tenant.headers).status_code == 200
    create_job(client, other, ready_dataset(client, other)["id"])  # another organization's: counted for it alone

    counts = client.get("/api/training/status", headers=tenant.headers).json()
    assert counts == {"runningJobs": 1, "queuedJobs": 1, "completedJobs": 2, "failedJobs": 1, "modelCount": 1,
                      "datasetCount": 1, "runtimeAvailable": False}
    native = client.get("/v1/stats", headers=tenant.headers).json()
    assert native["models"] == counts["modelCount"] and native["jobs_by_status"]["queued"] == 1
    assert len(client.get("/api/training/datasets", headers=tenant.headers).json()["datasets"]) == 1
    assert client.get(f"/v1/jobs/{queued}", headers=tenant.headers).json()["status"] == "queued"

    register_worker(db, "live-worker")
    assert client.get("/api/training/status", headers=tenant.headers).json()["runtimeAvailable"] is True
    set_worker_state(db, "live-worker", "stopped")
    assert client.get("/api/training/status", headers=tenant.headers).json()["runtimeAvailable"] is False


def test_trajectories_posted_here_are_the_native_ones_and_back(client: TestClient, tenant: Tenant,
                                                               other: Tenant) -> None:
    first = post(client, tenant, {**trajectory("t-1", 1718000000000, task="support", calls=2),
                                  "providerAccesses": [{"provider": "openai", "n": [1, 2]}], "metadata": {"a": 1}})
    assert first.status_code == 201 and first.json() == {"created": ["t-1"], "existing": [], "autoTraining": []}
    retry = client.post("/api/training/trajectories", headers={**tenant.headers, **FORM},
                        content=json.dumps(trajectory("t-1", 1718000000000, task="support", calls=2) | {
                            "providerAccesses": [{"provider": "openai", "n": [1, 2]}], "metadata": {"a": 1}}))
    assert retry.status_code == 200 and retry.json()["existing"] == ["t-1"]  # idempotent, read whatever the type
    batch = post(client, tenant, {"trajectories": [trajectory(f"t-{i}", 1718000000000 + i) for i in (2, 3)]})
    assert batch.status_code == 201 and batch.json()["created"] == ["t-2", "t-3"]
    native = post(client, tenant, trajectory("t-4", 1718000000004, status="failed"), path="/v1/trajectories")
    assert native.status_code == 201, native.text

    listed = client.get("/api/training/trajectories", headers=tenant.headers).json()
    assert listed["available"] is True and listed["total"] == 4
    assert [t["id"] for t in listed["trajectories"]] == ["t-4", "t-3", "t-2", "t-1"]  # newest first
    assert all(set(t) == ITEM for t in listed["trajectories"])
    assert listed["trajectories"][0] == {"id": "t-4", "source": "chat", "status": "failed", "llmCallCount": 1,
                                         "startTime": 1718000000004, "endTime": 1718000010004}
    page = client.get("/api/training/trajectories", headers=tenant.headers, params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 4 and [t["id"] for t in page["trajectories"]] == ["t-3", "t-2"]
    assert client.get("/v1/trajectories", headers=tenant.headers).json()["total"] == 4

    one = client.get("/api/training/trajectories/t-1", headers=tenant.headers)
    assert one.status_code == 200
    detail = one.json()["trajectory"]
    assert set(detail) == ITEM | {"task", "llmCalls", "providerAccesses", "metadata"}
    assert detail["providerAccesses"] == [{"provider": "openai", "n": [1, 2]}] and detail["metadata"] == {"a": 1}
    assert detail["llmCalls"][1] == {"model": "tiny-llama", "response": "2.",
                                     "messages": [{"role": "user", "content": "What is 1 plus 1?"}]}
    assert detail["llmCalls"] == client.get("/v1/trajectories/t-1", headers=tenant.headers).json()["llmCalls"]
    failed = client.get("/api/training/trajectories/t-4", headers=tenant.headers).json()["trajectory"]
    assert failed["status"] == "failed" and failed["task"] is None
    assert client.get("/api/training/trajectories", headers=other.headers).json() == {
        "available": True, "total": 0, "trajectories": []}


def test_datasets_built_here_are_native_datasets_and_builds(client: TestClient, tenant: Tenant) -> None:
    post(client, tenant, {"trajectories": [trajectory("a", 1718000000001, task="support", calls=2),
                                           trajectory("b", 1718000000002, task="support", calls=1),
                                           trajectory("d", 1718000000004, calls=3, status="failed")]})
    other_answers = trajectory("c", 1718000000003, task="other", calls=3)
    for i, llm_call in enumerate(other_answers["llmCalls"]):
        llm_call["response"] = f"{i + 1}, surely."
    post(client, tenant, other_answers, path="/v1/trajectories")

    two = client.post("/api/training/datasets/build", headers=tenant.headers,
                      json={"limit": 100, "minLlmCallsPerTrajectory": 2})
    assert two.status_code == 201, two.text
    built = two.json()["dataset"]
    assert set(built) == DATASET and built["trajectoryCount"] == 2 and built["exampleCount"] == 5  # a and c
    latest = client.post("/api/training/datasets/build", headers={**tenant.headers, **FORM},
                         content=json.dumps({"limit": 1, "minLlmCallsPerTrajectory": 2})).json()["dataset"]
    assert latest["trajectoryCount"] == 1 and latest["exampleCount"] == 3  # c: the latest to start
    support = client.post("/api/training/datasets/build", headers=tenant.headers,
                          json={"task": "support", "status": ["completed", "failed"]}).json()["dataset"]
    assert support["trajectoryCount"] == 2 and support["exampleCount"] == 2  # b's one call is a's first: dropped
    again = client.post("/api/training/datasets/build", headers=tenant.headers,
                        json={"limit": 100, "minLlmCallsPerTrajectory": 2})
    assert again.status_code == 200 and again.json()["dataset"] == built  # the same content: the same dataset

    listed = client.get("/api/training/datasets", headers=tenant.headers).json()["datasets"]
    assert [d["id"] for d in listed] == [support["id"], latest["id"], built["id"]]  # newest first
    assert listed[-1] == built and all(set(d) == DATASET for d in listed)
    native = {b["id"]: b for b in client.get("/v1/dataset-builds", headers=tenant.headers).json()["datasets"]}
    assert set(native) == {d["id"] for d in listed}
    assert sorted(native[built["id"]]["trajectoryIds"]) == ["a", "c"]  # lineage: exactly those that matched
    assert native[built["id"]]["filters"] == {"limit": 100, "minLlmCallsPerTrajectory": 2, "status": ["completed"]}

    by_native = client.post("/v1/dataset-builds", headers=tenant.headers, json={"name": "from-v1", "source": "chat"})
    assert by_native.status_code == 201, by_native.text
    assert client.get("/api/training/datasets", headers=tenant.headers).json()["datasets"][0]["id"] == \
        by_native.json()["id"]
    assert client.get("/api/training/status", headers=tenant.headers).json()["datasetCount"] == 4

    dataset = client.get(f"/v1/datasets/{built['id']}", headers=tenant.headers).json()
    assert dataset["status"] == "ready" and dataset["format"] == "chat"
    job = create_job(client, tenant, built["id"])  # the id is a normal dataset's: a job trains on it
    assert job["status"] == "queued" and job["spec"]["datasets"] == [{"id": built["id"]}]


def test_the_auto_training_config_is_the_native_one_and_a_partial_put_keeps_the_rest(
        client: TestClient, tenant: Tenant) -> None:
    defaults = client.get("/api/training/auto/config", headers=tenant.headers).json()
    assert {k: defaults[k] for k in ("threshold", "cooldownHours", "enabled")} == {
        "threshold": 100, "cooldownHours": 24.0, "enabled": False}
    put = client.put("/api/training/auto/config", headers=tenant.headers, json={"threshold": 200, "cooldownHours": 12})
    assert put.status_code == 200 and put.json()["ok"] is True
    assert put.json()["config"] == {"threshold": 200, "cooldownHours": 12.0, "enabled": False, "jobTemplate": {},
                                         "activateIfBetter": False}
    native = client.get("/v1/auto-training", headers=tenant.headers).json()
    assert native["threshold"] == 200 and native["cooldownHours"] == 12.0 and native["enabled"] is False

    template = {"base_model": "tiny-llama", "method": "lora", "hyperparams": {"max_steps": 5}}
    set_natively = client.put("/v1/auto-training", headers=tenant.headers, json={
        "enabled": True, "threshold": 300, "cooldownHours": 6, "jobTemplate": template})
    assert set_natively.status_code == 200, set_natively.text
    seen = client.get("/api/training/auto/config", headers=tenant.headers).json()
    assert seen["enabled"] is True and seen["threshold"] == 300 and seen["jobTemplate"] == template

    off = client.put("/api/training/auto/config", headers={**tenant.headers, **FORM}, content='{"enabled": false}')
    assert off.status_code == 200 and off.json()["config"]["enabled"] is False
    kept = client.get("/v1/auto-training", headers=tenant.headers).json()
    assert kept["threshold"] == 300 and kept["cooldownHours"] == 6.0 and kept["jobTemplate"] == template


def test_every_route_wants_a_key(client: TestClient) -> None:
    for method, path in (("GET", "/api/training/status"), ("GET", "/api/training/trajectories"),
                         ("GET", "/api/training/trajectories/t-1"), ("POST", "/api/training/trajectories"),
                         ("GET", "/api/training/datasets"), ("POST", "/api/training/datasets/build"),
                         ("GET", "/api/training/auto/config"), ("PUT", "/api/training/auto/config")):
        response = client.request(method, path, json={})
        assert response.status_code == 401, (method, path)
        assert response.json()["error"]["code"] == "UNAUTHORIZED", (method, path)


def call(**changes: Any) -> dict[str, Any]:
    return {**trajectory_body("bad")["llmCalls"][0], **changes}


TRAJECTORIES = "/api/training/trajectories"
BUILD = "/api/training/datasets/build"
CONFIG = "/api/training/auto/config"
BAD: list[tuple[str, str, str, dict[str, Any], int, str, str | None]] = [
    # (label, method, path, request, status, code, a field the problems name)
    ("no llmCalls", "POST", TRAJECTORIES, {"json": {"startTime": 1}}, 400, "INVALID_REQUEST", "llmCalls"),
    ("no startTime", "POST", TRAJECTORIES, {"json": {"llmCalls": []}}, 400, "INVALID_REQUEST", "startTime"),
    ("an extra field", "POST", TRAJECTORIES, {"json": {**trajectory_body("bad"), "colour": "red"}}, 400,
     "INVALID_REQUEST", "colour"),
    ("startTime a string", "POST", TRAJECTORIES, {"json": {**trajectory_body("bad"), "startTime": "yesterday"}}, 400,
     "INVALID_REQUEST", "startTime"),
    ("an unknown role", "POST", TRAJECTORIES, {"json": {**trajectory_body("bad"), "llmCalls": [
        call(messages=[{"role": "wizard", "content": "hi"}])]}}, 400, "INVALID_REQUEST", "llmCalls.0.messages.0.role"),
    ("a call without response", "POST", TRAJECTORIES, {"json": {**trajectory_body("bad"), "llmCalls": [
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}]}}, 400, "INVALID_REQUEST",
     "llmCalls.0.response"),
    ("ends before it starts", "POST", TRAJECTORIES, {"json": {**trajectory_body("bad"), "endTime": 1}}, 400,
     "INVALID_REQUEST", None),
    ("a bad status", "POST", TRAJECTORIES, {"json": {**trajectory_body("bad"), "status": "done"}}, 400,
     "INVALID_REQUEST", "status"),
    ("an empty batch", "POST", TRAJECTORIES, {"json": {"trajectories": []}}, 400, "INVALID_REQUEST", "trajectories"),
    ("a batch of 101", "POST", TRAJECTORIES, {"json": {"trajectories": [trajectory_body(f"b{i}") for i in range(101)]}},
     400, "INVALID_REQUEST", "trajectories"),
    ("one bad of a batch", "POST", TRAJECTORIES, {"json": {"trajectories": [
        trajectory_body("good"), {**trajectory_body("bad"), "source": ""}]}}, 400, "INVALID_REQUEST",
     "trajectories.1.source"),
    ("not JSON", "POST", TRAJECTORIES, {"content": b"{not json"}, 400, "INVALID_REQUEST", "(body)"),
    ("no body", "POST", TRAJECTORIES, {}, 400, "INVALID_REQUEST", None),
    ("over 1 MiB", "POST", TRAJECTORIES, {"json": {**trajectory_body("big"), "llmCalls": [
        call(response="x" * (1024 * 1024 + 1))]}}, 413, "INVALID_REQUEST", None),
    ("the id stored with other content", "POST", TRAJECTORIES, {"json": {**trajectory_body("mine"), "source": "cli"}},
     409, "CONFLICT", None),
    ("limit 0", "GET", TRAJECTORIES, {"params": {"limit": 0}}, 400, "INVALID_REQUEST", "query.limit"),
    ("limit 1001", "GET", TRAJECTORIES, {"params": {"limit": 1001}}, 400, "INVALID_REQUEST", "query.limit"),
    ("offset -1", "GET", TRAJECTORIES, {"params": {"offset": -1}}, 400, "INVALID_REQUEST", "query.offset"),
    ("limit a word", "GET", TRAJECTORIES, {"params": {"limit": "ten"}}, 400, "INVALID_REQUEST", "query.limit"),
    ("an unknown id", "GET", f"{TRAJECTORIES}/nobody", {}, 404, "NOT_FOUND", None),
    ("another organization's id", "GET", f"{TRAJECTORIES}/theirs", {}, 404, "NOT_FOUND", None),
    ("an id no id could be", "GET", f"{TRAJECTORIES}/..%20x", {}, 404, "NOT_FOUND", None),
    ("build limit 0", "POST", BUILD, {"json": {"limit": 0}}, 400, "INVALID_REQUEST", "limit"),
    ("build min calls a string", "POST", BUILD, {"json": {"minLlmCallsPerTrajectory": "2"}}, 400, "INVALID_REQUEST",
     "minLlmCallsPerTrajectory"),
    ("build an extra field", "POST", BUILD, {"json": {"limit": 5, "colour": "red"}}, 400, "INVALID_REQUEST", "colour"),
    ("build a bad status", "POST", BUILD, {"json": {"status": ["done"]}}, 400, "INVALID_REQUEST", "status.0"),
    ("build until before since", "POST", BUILD, {"json": {"since": 5, "until": 1}}, 400, "INVALID_REQUEST", "until"),
    ("build matching nothing", "POST", BUILD, {"json": {"task": "nothing-has-this"}}, 400, "INVALID_REQUEST",
     "(filters)"),
    ("build from the other's source only", "POST", BUILD, {"json": {"source": "theirs"}}, 400, "INVALID_REQUEST",
     "(filters)"),
    ("build a list body", "POST", BUILD, {"json": [1]}, 400, "INVALID_REQUEST", None),
    ("config threshold 0", "PUT", CONFIG, {"json": {"threshold": 0}}, 400, "INVALID_REQUEST", "threshold"),
    ("config cooldown a string", "PUT", CONFIG, {"json": {"cooldownHours": "12"}}, 400, "INVALID_REQUEST",
     "cooldownHours"),
    ("config enabled a word", "PUT", CONFIG, {"json": {"enabled": "yes"}}, 400, "INVALID_REQUEST", "enabled"),
    ("config enabled without a job", "PUT", CONFIG, {"json": {"enabled": True}}, 400, "INVALID_REQUEST",
     "jobTemplate"),
    ("config an extra field", "PUT", CONFIG, {"json": {"colour": "red"}}, 400, "INVALID_REQUEST", "colour"),
    ("config a list body", "PUT", CONFIG, {"json": [1]}, 400, "INVALID_REQUEST", "(body)"),
    ("config not JSON", "PUT", CONFIG, {"content": b"threshold=5"}, 400, "INVALID_REQUEST", "(body)"),
    ("config no body", "PUT", CONFIG, {}, 400, "INVALID_REQUEST", "(body)"),
]


def state(client: TestClient, tenant: Tenant) -> tuple[Any, ...]:
    """What a refused request must leave as it was: trajectories, builds, datasets, files, the config."""
    get = lambda path: client.get(path, headers=tenant.headers).json()  # noqa: E731
    return (get("/v1/trajectories")["total"], len(get("/v1/dataset-builds")["datasets"]),
            len(get("/v1/datasets")["data"]), len(get("/v1/files")["data"]), get("/v1/auto-training"))


def test_bad_requests_are_refused_naming_the_field_with_nothing_made(client: TestClient, tenant: Tenant,
                                                                      other: Tenant) -> None:
    assert post(client, tenant, trajectory_body("mine")).status_code == 201
    theirs = {**trajectory_body("theirs"), "source": "theirs"}
    assert post(client, other, theirs).status_code == 201
    assert client.put(CONFIG, headers=tenant.headers, json={"threshold": 7}).status_code == 200
    before = state(client, tenant)
    assert len(BAD) >= 15
    failures = []
    for label, method, path, request, status, code, field in BAD:
        response = client.request(method, path, headers=tenant.headers, **request)
        error = response.json().get("error", {}) if response.headers["content-type"] == "application/json" else {}
        fields = [p["field"] for p in error.get("details", {}).get("problems", [])]
        if response.status_code != status or error.get("code") != code or (field is not None and field not in fields):
            failures.append(f"{label}: {response.status_code} {response.text[:300]}")
        if state(client, tenant) != before:
            failures.append(f"{label}: changed what is stored")
    assert not failures, "\n".join(failures)
    assert client.get(f"{TRAJECTORIES}/theirs", headers=other.headers).status_code == 200  # it is there, for them


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_document_says_what_each_route_answers(app: Any) -> None:
    paths = app.openapi()["paths"]
    assert set(paths["/api/training/trajectories"]["post"]["responses"]) >= {"200", "201", "400", "401", "409", "413"}
    assert set(paths["/api/training/datasets/build"]["post"]["responses"]) >= {"200", "201", "400", "401"}
    assert "400" in paths["/api/training/auto/config"]["put"]["responses"]
    assert "400" in paths["/api/training/trajectories"]["get"]["responses"]
    for path, method in (("/api/training/status", "get"), ("/api/training/datasets", "get")):
        assert "422" not in paths[path][method]["responses"] and "400" not in paths[path][method]["responses"]
    status_schema = paths["/api/training/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert status_schema["$ref"].endswith("/TrainingStatus")
