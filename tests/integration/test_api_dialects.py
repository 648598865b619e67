"""A dialect mounted beside the native API, the way the reference-API dialects will be: its errors
in its own shape, its upload path under the upload limit, its requests reaching the same services
and the same job, its ids and fields kept, and its secrets stored nowhere."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from sqlalchemy import select

from tests.support import api
from tests.support.api import Tenant, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.api.deps import Caller, Context
from tuneyard.api.dialects import Dialect, registered
from tuneyard.api.dialects.translate import renamed, split_secrets
from tuneyard.api.errors import ApiError
from tuneyard.api.limits import JSON_BODY_LIMIT
from tuneyard.errors import PlatformError
from tuneyard.services import jobs
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.submission import JobRequest
from tuneyard.settings import Settings
from tuneyard.store import labels
from tuneyard.store.engine import Database
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Base
from tuneyard.store.tenancy import Principal

app, tenant, api_settings = api.app, api.tenant, api.api_settings

NAME = "example"
FIELD_NAMES = {"base_model": "model", "datasets": "dataset", "hyperparams.max_steps": "steps"}
STATUS_WORDS = {s: "done" if s is JobStatus.COMPLETED else "over" if s.is_terminal() else "busy" for s in JobStatus}
SECRET = "sk-example-0123456789-secret"


class ExampleJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    dataset: str
    steps: int = Field(5, ge=1)
    tag: str | None = None
    hf_token: SecretStr | None = None  # a secret the runner gets (services/job_secrets.RUNNER_ENVIRONMENT)


def render(_request: Request, error: ApiError) -> Response:
    """Its own shape, and 400 where the native API says 422 (as the /api/training documents do)."""
    problems = [p["field"] for p in error.details.get("problems", [])]
    body = {"failure": {"kind": error.code.lower(), "text": error.message, "fields": problems}}
    return JSONResponse(body, status_code=400 if error.status == 422 else error.status, headers=error.headers)


router = APIRouter(prefix="/example")


@router.post("/jobs", status_code=201)
def create_job(body: ExampleJob, context: Context, caller: Caller) -> dict[str, Any]:
    _, secrets = split_secrets(body)
    request = JobRequest(
        spec={"base_model": body.model, "datasets": [{"name": body.dataset}], "hyperparams": {"max_steps": body.steps}},
        dialect=NAME, labels={"tag": body.tag} if body.tag else {}, secrets=secrets,
    )
    try:
        job = jobs.submit_job(context.db, context.settings, caller, request).job
    except InvalidRequest as refused:
        raise renamed(refused, FIELD_NAMES) from None
    external_id = f"ex-{job.id}"
    labels.add_alias(context.db, caller.org_id, NAME, external_id, job.id)
    return {"id": external_id, "state": STATUS_WORDS[job.status], "tag": job.labels.get(NAME, {}).get("tag")}


@router.get("/jobs/{external_id}")
def get_job(external_id: str, context: Context, caller: Caller) -> dict[str, Any]:
    job_id = labels.resolve_alias(context.db, caller.org_id, NAME, external_id)
    job = jobs.get_job(context.db, context.settings, caller.org_id, job_id)
    return {"id": external_id, "state": STATUS_WORDS[job.status], "native_id": job.id}


@router.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    return {"bytes": len(await request.body())}


def example() -> Dialect:
    return Dialect(NAME, ("/example",), router, render, STATUS_WORDS, upload_paths=("/example/upload",))


@pytest.fixture
def client(api_settings: Settings, db: Database) -> Iterator[TestClient]:
    dialects = registered()
    dialects.register(example())
    with TestClient(create_app(api_settings, db, dialects=dialects)) as test_client:
        yield test_client


def test_errors_take_the_shape_of_the_dialect_whose_path_they_are_on(client: TestClient, tenant: Tenant) -> None:
    mine = client.get("/example/nothing", headers=tenant.headers)
    assert mine.status_code == 404 and mine.json()["failure"]["kind"] == "not_found"
    unauthorized = client.post("/example/jobs", json={"model": "tiny-llama", "dataset": "chats"})
    assert unauthorized.status_code == 401 and unauthorized.json()["failure"]["kind"] == "unauthorized"
    for path in ("/v1/nothing", "/nothing"):  # the native API's, and no dialect's: the native envelope
        native = client.get(path, headers=tenant.headers)
        assert native.status_code == 404 and native.json()["error"]["code"] == "NOT_FOUND"


def test_its_own_schema_and_the_services_problems_both_name_its_fields(client: TestClient, tenant: Tenant) -> None:
    own = client.post("/example/jobs", headers=tenant.headers,
                      json={"model": "tiny-llama", "dataset": "chats", "steps": 0, "colour": "red"})
    assert own.status_code == 400 and set(own.json()["failure"]["fields"]) == {"steps", "colour"}
    service = client.post("/example/jobs", headers=tenant.headers, json={"model": "gpt-99", "dataset": "nope"})
    assert service.status_code == 400 and set(service.json()["failure"]["fields"]) == {"model", "dataset.0"}
    assert client.get("/v1/jobs", headers=tenant.headers).json()["data"] == []


def test_a_job_made_in_a_dialect_is_one_job_with_its_id_and_fields_kept(
    client: TestClient, tenant: Tenant, db: Database
) -> None:
    ready_dataset(client, tenant)
    made = client.post("/example/jobs", headers=tenant.headers,
                       json={"model": "tiny-llama", "dataset": "chats", "tag": "blue"})
    assert made.status_code == 201, made.text
    assert made.json()["state"] == "busy" and made.json()["tag"] == "blue"
    native_id = client.get(f"/example/jobs/{made.json()['id']}", headers=tenant.headers).json()["native_id"]
    native = client.get(f"/v1/jobs/{native_id}", headers=tenant.headers).json()
    assert native["status"] == "queued" and native["config"]["hyperparams"]["max_steps"] == 5
    assert labels.get_labels(db, tenant.org_id, native_id, NAME) == {"tag": "blue"}
    assert labels.aliases_of(db, tenant.org_id, native_id) == {NAME: [made.json()["id"]]}
    client.post(f"/v1/jobs/{native_id}/cancel", headers=tenant.headers)
    assert client.get(f"/example/jobs/{made.json()['id']}", headers=tenant.headers).json()["state"] == "over"


def test_a_field_marked_secret_is_stored_nowhere(
    client: TestClient, tenant: Tenant, db: Database, api_settings: Settings
) -> None:
    ready_dataset(client, tenant)
    made = client.post("/example/jobs", headers=tenant.headers,
                       json={"model": "tiny-llama", "dataset": "chats", "tag": "t", "hf_token": SECRET})
    assert made.status_code == 201, made.text
    assert SECRET not in everything_stored(db)
    if db.dialect == "sqlite":  # and not in the file's free pages or write-ahead log either
        path = Path(str(db.engine.url.database))
        for stored in (path, path.with_name(path.name + "-wal")):
            assert not stored.exists() or SECRET.encode() not in stored.read_bytes()


def test_a_request_that_would_store_its_secret_is_refused_and_nothing_is_made(
    client: TestClient, tenant: Tenant, db: Database, api_settings: Settings
) -> None:
    ready_dataset(client, tenant)
    caller = Principal(tenant.org_id, tenant.key_id, False)
    leaky = JobRequest(spec={"base_model": "tiny-llama", "datasets": [{"name": "chats"}]}, dialect=NAME,
                       labels={"note": f"key={SECRET}"}, secrets={"hf_token": SECRET})
    with pytest.raises(PlatformError, match="would have stored its secret hf_token") as refused:
        jobs.submit_job(db, api_settings, caller, leaky)
    assert SECRET not in str(refused.value)
    assert SECRET not in everything_stored(db)
    assert client.get("/v1/jobs", headers=tenant.headers).json()["data"] == []


def test_every_dialects_upload_paths_get_the_upload_limit(client: TestClient, tenant: Tenant) -> None:
    body = b"x" * (JSON_BODY_LIMIT + 10_000)  # over the JSON limit, under the upload limit
    assert client.post("/example/upload", headers=tenant.headers, content=body).json() == {"bytes": len(body)}
    refused = client.post("/example/jobs", headers={**tenant.headers, "Content-Type": "application/json"},
                          content=body)
    assert refused.status_code == 413 and refused.json()["failure"]["kind"] == "invalid_request"


def test_the_native_api_keeps_its_paths(app: FastAPI) -> None:
    """Paths a client may have been written against are never lost (new ones may come)."""
    assert set(app.openapi()["paths"]) >= {
        "/v1/base-models", "/v1/base-models/{model_id}", "/v1/models", "/v1/models/{model_id}", "/v1/files",
        "/v1/files/{file_id}", "/v1/datasets", "/v1/datasets/{dataset_id}", "/v1/datasets/{dataset_id}/preview",
        "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/stop", "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/resume", "/v1/jobs/{job_id}/events", "/v1/jobs/{job_id}/metrics",
        "/v1/jobs/{job_id}/logs", "/v1/jobs/{job_id}/checkpoints", "/v1/jobs/{job_id}/stream",
        "/v1/jobs/{job_id}/result", "/v1/jobs/{job_id}/artifacts", "/v1/jobs/{job_id}/artifacts/{path}",
        "/v1/jobs/{job_id}/download", "/v1/keys", "/v1/keys/{key_id}", "/v1/stats", "/healthz", "/metrics",
    }



def everything_stored(db: Database) -> str:
    """Every row of every table, as text."""
    with db.read() as session:
        rows = [list(row) for table in Base.metadata.sorted_tables for row in session.execute(select(table))]
    return json.dumps(rows, default=str)
