"""Document 002 (a local Training API on /api/training) in process, on both databases: a job from a file
under the dataset root, its token stored and answered nowhere, every bad body a 400 naming its field
with nothing made (no job, no file, no dataset), and a finished job's logs, output, resume and merge."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support import api
from tests.support.api import Tenant, chat_lines, finished_job
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.tables import Dataset, File, Job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

TOKEN = "hf_fusionTestToken0123456789abcdefXYZ"
PRINTED = {"base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "method": "lora", "num_epochs": 3,
           "batch_size": 4, "lora_rank": 16, "eval_split": 0.1}
"""002's printed submission, with its base model substituted by one this server has."""


@pytest.fixture
def dataset_file(api_settings: Settings) -> Path:
    root = api_settings.resolved_dataset_root
    root.mkdir(parents=True, exist_ok=True)
    path = root / "alpaca.jsonl"
    path.write_bytes(chat_lines(12))
    return path


def made(db: Database, org_id: str) -> tuple[int, int, int]:
    """(jobs, files, datasets) of the organization."""
    with db.read() as session:
        return tuple(len(session.scalars(select(table.id).where(table.org_id == org_id)).all())  # type: ignore[return-value]
                     for table in (Job, File, Dataset))


def test_the_printed_submission_is_a_pending_job_with_its_config(client: TestClient, db: Database, tenant: Tenant,
                                                                  dataset_file: Path) -> None:
    response = client.post("/api/training/jobs", headers=tenant.headers,
                           json={**PRINTED, "hf_token": TOKEN, "run_name": "alpaca-7b-run1"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending" and body["job_id"].startswith("job_")
    assert body["config"]["base_model"] == "tiny-llama" and body["config"]["method"] == "lora"
    assert body["config"]["num_epochs"] == 3 and "hf_token" not in body["config"]
    assert body["job"]["id"] == body["job_id"] and body["job"]["status"] == "queued"
    job = client.get(f"/v1/jobs/{body['job_id']}", headers=tenant.headers).json()
    assert job["name"] == "alpaca-7b-run1" and job["config"]["hyperparams"]["epochs"] == 3
    assert job["config"]["hyperparams"]["lora_rank"] == 16 and job["config"]["hyperparams"]["eval_split"] == 0.1
    one = client.get(f"/api/training/jobs/{body['job_id']}", headers=tenant.headers).json()
    assert one["status"] == "pending" and one["job"]["progress"] is None and one["config"] == body["config"]
    listed = client.get("/api/training/jobs", headers=tenant.headers).json()["jobs"]
    assert [j["job_id"] for j in listed] == [body["job_id"]]


def test_a_distributed_run_is_a_ddp_job_on_one_node(client: TestClient, tenant: Tenant, dataset_file: Path) -> None:
    response = client.post("/api/training/jobs", headers=tenant.headers, json={**PRINTED, "distributed": True})
    assert response.status_code == 201, response.text
    job = client.get(f"/v1/jobs/{response.json()['job_id']}", headers=tenant.headers).json()
    assert job["config"]["distributed"] == {"strategy": "ddp", "num_processes": 2, "num_nodes": 1}


def test_a_body_sent_as_curl_sends_it_is_read_as_json(client: TestClient, tenant: Tenant, dataset_file: Path) -> None:
    form = {**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"}
    response = client.post("/api/training/jobs", headers=form, content=json.dumps(PRINTED))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database file is grepped
def test_the_token_is_nowhere(client: TestClient, db: Database, tenant: Tenant, api_settings: Settings,
                              dataset_file: Path) -> None:
    answers = [client.post("/api/training/jobs", headers=tenant.headers, json={**PRINTED, "hf_token": TOKEN})]
    job_id = answers[0].json()["job_id"]
    answers += [client.get(path, headers=tenant.headers) for path in (
        "/api/training/jobs", f"/api/training/jobs/{job_id}", f"/v1/jobs/{job_id}", "/v1/jobs",
        f"/v1/jobs/{job_id}/events", f"/api/training/jobs/{job_id}/logs")]
    for answer in answers:
        assert answer.status_code in (200, 201), answer.text
        assert TOKEN not in answer.text
    for path in api_settings.data_dir.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN.encode() not in Path(db.engine.url.database or "").read_bytes()


Row = tuple[str, Callable[[dict[str, Any]], Any], list[str]]
"""(what is wrong, the body (from 002's printed one), the fields the 400 names)."""


def _with(**fields: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda printed: {**printed, **fields}


def _without(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda printed: {k: v for k, v in printed.items() if k != field}


BAD_BODIES: list[Row] = [
    ("no base model", _without("base_model"), ["base_model"]),
    ("no dataset path", _without("dataset_path"), ["dataset_path"]),
    ("a dataset path climbing out", _with(dataset_path="../../etc/passwd"), ["dataset_path"]),
    ("an absolute path elsewhere", _with(dataset_path="/etc/passwd"), ["dataset_path"]),
    ("a symlink out of the folder", _with(dataset_path="outside.jsonl"), ["dataset_path"]),
    ("a file that is not there", _with(dataset_path="missing.jsonl"), ["dataset_path"]),
    ("a dataset path with a NUL", _with(dataset_path="a\x00.jsonl"), ["dataset_path"]),
    ("an unknown method", _with(method="dpo-ish"), ["method"]),
    ("zero epochs", _with(num_epochs=0), ["num_epochs"]),
    ("a batch size that is a word", _with(batch_size="four"), ["batch_size"]),
    ("a negative learning rate", _with(learning_rate=-1), ["learning_rate"]),
    ("a LoRA rank of 0", _with(lora_rank=0), ["lora_rank"]),
    ("an eval split of 1.5", _with(eval_split=1.5), ["eval_split"]),
    ("two nodes", _with(num_nodes=2), ["num_nodes"]),
    ("a distributed run over two nodes", _with(distributed=True, num_nodes=2), ["num_nodes"]),
    ("a field 002 does not have", _with(epochs=3), ["epochs"]),
    ("a token that is a number", _with(hf_token=12345), ["hf_token"]),
    ("a run name with a control character", _with(run_name="run\x07"), ["run_name"]),
    ("an unknown base model", _with(base_model="no-such-model-anywhere"), ["base_model"]),
    ("a body that is a list", lambda printed: [printed], ["(body)"]),
]


@pytest.mark.parametrize("row", BAD_BODIES, ids=[row[0] for row in BAD_BODIES])
def test_a_bad_body_is_a_400_naming_its_field_and_nothing_is_made(client: TestClient, db: Database, tenant: Tenant,
                                                                  dataset_file: Path, tmp_path: Path,
                                                                  row: Row) -> None:
    _what, make, fields = row
    secret = tmp_path / "secret.jsonl"
    secret.write_bytes(chat_lines(4))
    os.symlink(secret, dataset_file.parent / "outside.jsonl")
    response = client.post("/api/training/jobs", headers=tenant.headers, json=make(dict(PRINTED)))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert sorted({p["field"] for p in error["details"]["problems"]}) == sorted(fields), error
    assert made(db, tenant.org_id) == (0, 0, 0)


def test_not_json_without_a_key_and_unknown_jobs(client: TestClient, tenant: Tenant) -> None:
    assert client.post("/api/training/jobs", json=PRINTED).status_code == 401
    bad = client.post("/api/training/jobs", headers=tenant.headers, content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_REQUEST"
    missing = client.get("/api/training/jobs/job_000000000000000000000000", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


def test_a_finished_jobs_logs_output_resume_and_merge(client: TestClient, db: Database, tenant: Tenant,
                                                      api_settings: Settings) -> None:
    done = finished_job(client, db, api_settings, tenant)
    base = f"/api/training/jobs/{done['job_id']}"
    logs = client.get(f"{base}/logs", headers=tenant.headers, params={"tail": 2}).json()
    assert logs["lines"] == ["line 4", "line 5"]

    output = client.get(f"{base}/output", headers=tenant.headers).json()
    assert output["status"] == "completed" and output["total_files"] == 2 == len(output["files"])
    names = sorted(f["name"] for f in output["files"])
    assert names == ["adapter_config.json", "adapter_model.safetensors"]
    assert output["total_size_mb"] == round(sum(f["size_mb"] for f in output["files"]), 2)
    for item in output["files"]:
        fetched = client.get(item["download_url"], headers=tenant.headers)
        assert fetched.status_code == 200 and len(fetched.content) > 0
    for escape in ("..%2Fspec.json", "..%2F..%2Ftuneyard.db", "%2Fetc%2Fpasswd"):
        assert client.get(f"{base}/output/{escape}", headers=tenant.headers).status_code == 404

    unknown = client.post(f"{base}/resume", headers=tenant.headers, json={"checkpoint": "checkpoint-7"})
    assert unknown.status_code == 400 and "checkpoint-2" in unknown.text
    as_curl = {**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"}  # 002's printed curl
    known = client.post(f"{base}/resume", headers=as_curl, content='{"checkpoint": "checkpoint-2"}')
    assert known.status_code == 409  # found it (step 2); a completed job is not resumed

    merged = client.post(f"{base}/merge", headers=tenant.headers)
    assert merged.status_code == 201, merged.text
    merge_job = client.get(f"/api/training/jobs/{merged.json()['merge_job_id']}", headers=tenant.headers).json()
    assert merge_job["status"] == "pending"
    assert client.delete(f"/api/training/jobs/{merge_job['job_id']}", headers=tenant.headers).json()["status"] == (
        "cancelled")


def test_templates_and_stats(client: TestClient, tenant: Tenant) -> None:
    saved = client.post("/api/training/templates", headers=tenant.headers,
                        json={"name": "my-lora", "spec": {"method": "lora", "hyperparams": {"lora_rank": 8}}})
    assert saved.status_code == 201, saved.text
    names = [t["name"] for t in client.get("/api/training/templates", headers=tenant.headers).json()["templates"]]
    assert "my-lora" in names and len(names) > 1  # the built-ins, then ours
    counters = client.get("/api/training/stats", headers=tenant.headers).json()
    assert counters["total_jobs"] == 0 and {"jobs", "models", "datasets", "queue_depth"} <= set(counters)
