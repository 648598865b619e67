"""Fixtures and helpers for API tests: a real app on the test's database, tenants with keys.

Used from tests/integration (whose conftest gives `settings` and `db`, on SQLite and PostgreSQL):
a test module binds the fixtures it needs by name, e.g. `client = api.client`.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tuneyard.api.app import create_app
from tuneyard.api.server import server_config
from tuneyard.scheduler import claim
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store import exports, lifecycle, telemetry, tenancy
from tuneyard.store.engine import Database

UPLOAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Tenant:
    """An organization with a member key (`headers`: jobs and data) and an admin key (`admin_headers`)."""

    org_id: str
    key_id: str
    key: str
    admin_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}


def make_tenant(db: Database, name: str) -> Tenant:
    org = tenancy.create_org(db, name)
    key, plaintext = tenancy.create_api_key(db, org.id, f"{name}-key")
    _admin, admin_plaintext = tenancy.create_api_key(db, org.id, f"{name}-admin", is_admin=True)
    return Tenant(org.id, key.id, plaintext, admin_plaintext)


def chat_lines(n: int) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                          {"role": "assistant", "content": f"{i + 1}."}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    roots = tmp_path / "models"
    roots.mkdir()
    return settings.with_overrides(max_upload_bytes=UPLOAD_LIMIT, model_roots=(roots,))


@pytest.fixture
def app(api_settings: Settings, db: Database) -> FastAPI:
    return create_app(api_settings, db, stream_poll_seconds=0.02)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db, "acme")


@pytest.fixture
def other(db: Database) -> Tenant:
    return make_tenant(db, "globex")


def upload(client: TestClient, tenant: Tenant, content: bytes, filename: str = "chats.jsonl") -> dict[str, Any]:
    response = client.post("/v1/files", headers=tenant.headers, files={"file": (filename, content)})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ready_dataset(client: TestClient, tenant: Tenant, name: str = "chats", examples: int = 8) -> dict[str, Any]:
    file = upload(client, tenant, chat_lines(examples))
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": name, "file_ids": [file["id"]]})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "ready", body
    return body


def trajectory_body(trajectory_id: str | None = None, *, task: str | None = None, calls: int = 1,
                    status: str = "completed") -> dict[str, Any]:
    """A trajectory of `calls` LLM calls (an id is made by the service when none is given)."""
    body: dict[str, Any] = {
        "source": "chat", "status": status, "startTime": 1718000000000, "endTime": 1718000010000,
        "llmCalls": [{"model": "tiny-llama", "messages": [{"role": "user", "content": f"What is {i} plus 1?"}],
                      "response": f"{i + 1}."} for i in range(calls)]}
    if trajectory_id is not None:
        body["id"] = trajectory_id
    if task is not None:
        body["task"] = task
    return body


def chat_log_line() -> bytes:
    """One OpenAI-style chat log line, new each call (its content names a fresh uuid)."""
    question = f"Say {uuid.uuid4().hex[:8]}"
    return (json.dumps({"model": "tiny-llama", "messages": [{"role": "user", "content": question},
                                                          {"role": "assistant", "content": "Said."}]}) + "\n").encode()


def job_body(dataset_id: str, **extra: Any) -> dict[str, Any]:
    return {"base_model": "tiny-llama", "datasets": [{"id": dataset_id}], "hyperparams": {"max_steps": 5}, **extra}


def create_job(client: TestClient, tenant: Tenant, dataset_id: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset_id, **extra))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(app, app.state.context.settings, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def finished_job(client: TestClient, db: Database, settings: Settings, tenant: Tenant) -> dict[str, Any]:
    """A job taken through a fake worker's writes to `completed`: metrics, logs, a checkpoint, a model.

    No runner runs: the run folder gets a small final/ and checkpoint folder written here.
    """
    dataset = ready_dataset(client, tenant, name=f"ds-{time.monotonic_ns()}")
    job = create_job(client, tenant, dataset["id"])
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == job["id"]
    job_id, attempt = job["id"], claimed.attempt
    lifecycle.start(db, job_id, attempt)
    folder = run_dir(settings, job_id)
    (folder / "checkpoints" / "step-000002" / "model").mkdir(parents=True)
    (folder / "final").mkdir()
    (folder / "final" / "adapter_model.safetensors").write_bytes(b"\x00weights" * 100)
    (folder / "final" / "adapter_config.json").write_text('{"r": 8}')
    (folder / "runner.log").write_text("started\n")
    telemetry.record_metrics(db, job_id, attempt, [
        telemetry.MetricIn(step=s, values={"loss": 3.0 - s * 0.5, "total_steps": 4}, epoch=0.25 * s)
        for s in (1, 2, 3, 4)
    ] + [telemetry.MetricIn(step=2, values={"eval_loss": 2.5}, kind="eval")])
    telemetry.append_logs(db, job_id, attempt, [telemetry.LogIn(f"line {i}") for i in range(1, 6)])
    checkpoint = telemetry.add_checkpoint(db, job_id, attempt, 2, "checkpoints/step-000002", {"loss": 2.0})
    lifecycle.finalize(db, job_id, attempt)
    result = {"ppl_baseline": 30.0, "ppl_final": 12.0}
    model = lifecycle.NewTrainedModel(kind="adapter", path=str(folder / "final"), base_model="tiny-llama",
                                     datasets=[dataset["id"]])
    done = lifecycle.complete(db, job_id, attempt, result, model)
    assert done.output_model_id is not None
    return {"job_id": job_id, "dataset_id": dataset["id"], "file_id": dataset["file_ids"][0],
            "checkpoint_id": checkpoint.id, "model_id": done.output_model_id, "result": result,
            **built_objects(client, tenant),
            "evaluation_id": completed_evaluation(client, db, tenant, done.output_model_id, dataset["id"]),
            "export_id": failed_export(db, tenant.org_id, done.output_model_id, settings)}


def completed_evaluation(client: TestClient, db: Database, tenant: Tenant, model_id: str, dataset_id: str) -> str:
    """An evaluation of the model on the dataset, completed through a fake worker's writes (no runner)."""
    response = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers, json={"dataset": dataset_id})
    assert response.status_code == 201, response.text
    evaluation_id: str = response.json()["id"]
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == evaluation_id
    lifecycle.start(db, evaluation_id, claimed.attempt)
    lifecycle.finalize(db, evaluation_id, claimed.attempt)
    figures = {"loss": 1.0, "perplexity": 2.72, "token_accuracy": 0.5, "exact_match": 0.0, "rouge_l": 0.4}
    lifecycle.complete(db, evaluation_id, claimed.attempt, {
        "method": "reference", "scores": {"coherence": 0.5, "consistency": 0.5, "helpfulness": 0.4,
                                          "method": "reference"},
        "base": figures, "trained": figures, "samples": [], "examples": 1}, None)
    return evaluation_id


def failed_export(db: Database, org_id: str, model_id: str, settings: Settings) -> str:
    """An export of the model that ran and failed: a row to read, never one a started app would run."""
    row = exports.create_export(db, org_id, model_id, format="gguf", quantization="q8_0", variant="merged",
                                exports_dir=str(settings.data_dir / "exports"))
    assert exports.claim(db, row.id)
    exports.finish(db, row.id, error={"error_type": "user_error", "message": "a fake export that failed",
                                      "details": {}})
    return row.id


def built_objects(client: TestClient, tenant: Tenant) -> dict[str, Any]:
    """A trajectory of the tenant's and a dataset built from it: {trajectory_id} and {build_id}."""
    trajectory_id = f"traj_{uuid.uuid4().hex[:24]}"
    ingested = client.post("/v1/trajectories", headers=tenant.headers, json=trajectory_body(trajectory_id))
    assert ingested.status_code == 201, ingested.text
    built = client.post("/v1/dataset-builds", headers=tenant.headers, json={"name": f"built-{trajectory_id}"})
    assert built.status_code == 201, built.text
    return {"trajectory_id": trajectory_id, "build_id": built.json()["id"]}


def fill(path: str, objects: dict[str, Any]) -> str:
    """An OpenAPI path template with each {parameter} replaced by the test's object of that name
    ({model_id} is the registered base model under /v1/base-models, the trained model elsewhere)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "model_id":
            return str(objects["base_model_id"] if path.startswith("/v1/base-models") else objects["model_id"])
        if name == "path":
            return "final/adapter_config.json"
        assert name in objects, f"teach this test how to fill {{{name}}} in {path}"
        return str(objects[name])

    return re.sub(r"\{([^}]+)\}", value, path)
