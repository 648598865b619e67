"""Archetype (document 004) in-process on both databases: bad requests (400 INVALID_REQUEST naming the
field, nothing created), job ids of 1–64 characters, the record exactly as documented, ids in every
form, cancel seen by /v1, and the inference config once a job has a model. The documented request
replayed against a live server training tiny-llama: tests/e2e/test_dialect_archetype.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support import api
from tests.support.api import Tenant, chat_lines, finished_job, upload
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.tables import Dataset, Job

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

JOBS = "/v0.5/fine-tune/jobs"
RECORD_FIELDS = ["name", "id", "uuid", "org_uuid", "status", "config", "created_at", "updated_at",
                 "inference_config_path"]
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def body(file_id: str, **changes: Any) -> dict[str, Any]:
    sent: dict[str, Any] = {"name": "my-finetune-run", "config": {"model": "tiny-llama", "datasets": [
        {"name": "training-set", "split": "train", "file_ids": [file_id]}]}}
    sent.update(changes)
    return {k: v for k, v in sent.items() if v is not ...}


def config(file_id: str, **changes: Any) -> dict[str, Any]:
    shown: dict[str, Any] = {"model": "tiny-llama",
                             "datasets": [{"name": "training-set", "split": "train", "file_ids": [file_id]}]}
    shown.update(changes)
    return {k: v for k, v in shown.items() if v is not ...}


def counts(db: Database) -> tuple[int, int]:
    with db.read() as session:
        return (int(session.scalar(select(func.count()).select_from(Job)) or 0),
                int(session.scalar(select(func.count()).select_from(Dataset)) or 0))


def one(file_id: str, **changes: Any) -> dict[str, Any]:
    return {"name": "set", "split": "train", "file_ids": [file_id], **changes}


# (what is wrong, the body given our file id F and another organization's file id O, the field named)
BAD_BODIES: list[tuple[str, Any, str]] = [
    ("no name", lambda f, o: body(f, name=...), "name"),
    ("no config", lambda f, o: body(f, config=...), "config"),
    ("an unknown field", lambda f, o: body(f, project="x"), "project"),
    ("a name with a space", lambda f, o: body(f, name="my run"), "name"),
    ("a name too long for a 64-character id", lambda f, o: body(f, name="a" * 52), "name"),
    ("a name as a number", lambda f, o: body(f, name=7), "name"),
    ("no model", lambda f, o: body(f, config=config(f, model=...)), "config.model"),
    ("a model nobody has", lambda f, o: body(f, config=config(f, model="Newton::c2_4_7b_251215a172f6d7")),
     "config.model"),
    ("no datasets", lambda f, o: body(f, config=config(f, datasets=[])), "config.datasets"),
    ("datasets as an object", lambda f, o: body(f, config=config(f, datasets=one(f))), "config.datasets"),
    ("a split Archetype has not", lambda f, o: body(f, config=config(f, datasets=[one(f, split="eval")])),
     "config.datasets.0.split"),
    ("no train split", lambda f, o: body(f, config=config(f, datasets=[one(f, split="validation")])),
     "config.datasets"),
    ("no file ids", lambda f, o: body(f, config=config(f, datasets=[one(f, file_ids=[])])),
     "config.datasets.0.file_ids"),
    ("a file id nobody has", lambda f, o: body(f, config=config(f, datasets=[one("file-abc123")])),
     "config.datasets.0.file_ids.0"),
    ("another organization's file", lambda f, o: body(f, config=config(f, datasets=[one(o)])),
     "config.datasets.0.file_ids.0"),
    ("a file id as a number", lambda f, o: body(f, config=config(f, datasets=[one(f, file_ids=[12])])),
     "config.datasets.0.file_ids.0"),
    ("an unknown field in a dataset", lambda f, o: body(f, config=config(f, datasets=[one(f, rows=3)])),
     "config.datasets.0.rows"),
    ("an unknown field in config", lambda f, o: body(f, config=config(f, epochs=3)), "config.epochs"),
]


@pytest.mark.parametrize(("case", "make", "field"), BAD_BODIES, ids=[c for c, _, _ in BAD_BODIES])
def test_a_bad_request_is_400_naming_the_field_and_creates_nothing(
    client: TestClient, db: Database, tenant: Tenant, other: Tenant, case: str, make: Any, field: str
) -> None:
    mine = upload(client, tenant, chat_lines(8))["id"]
    theirs = upload(client, other, chat_lines(8))["id"]
    before = counts(db)
    answer = client.post(JOBS, headers=tenant.headers, json=make(mine, theirs))
    assert answer.status_code == 400, (case, answer.text)
    error = answer.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert field in [p["field"] for p in error["details"]["problems"]], (case, error)
    assert counts(db) == before


def test_job_ids_of_1_to_64_characters(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    for too_long in ("f" * 65, "ftj-" + "a" * 60 + "-0a1b2c3d"):
        answer = client.get(f"{JOBS}/{too_long}", headers=tenant.headers)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "INVALID_REQUEST"
        assert answer.json()["error"]["details"]["problems"][0]["field"] == "path.job_id"
    file_id = upload(client, tenant, chat_lines(8))["id"]
    made = client.post(JOBS, headers=tenant.headers, json=body(file_id)).json()
    for missing in ("ftj-my-finetune-run-3de60a5c", "ftj-other-name-" + made["uuid"][:8], "x", made["uuid"][:-1]):
        assert client.get(f"{JOBS}/{missing}", headers=tenant.headers).status_code == 404, missing
    for ref in (made["id"], made["uuid"]):
        assert client.get(f"{JOBS}/{ref}", headers=other.headers).status_code == 404
        assert client.post(f"{JOBS}/{ref}/cancel", headers=other.headers).status_code == 404
    assert client.get(f"{JOBS}/{made['id']}").status_code == 401


def test_the_record_as_documented_by_every_id_and_its_cancel_seen_by_v1(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    train = upload(client, tenant, chat_lines(8))
    held_out = upload(client, tenant, chat_lines(4), filename="eval.jsonl")
    sent = body(train["id"], config=config(train["id"], datasets=[
        one(train["id"], name="training-set"), one(held_out["uuid"], name="eval-set", split="validation")]))
    created = client.post(JOBS, headers=tenant.headers, json=sent)
    assert created.status_code == 201, created.text
    job = created.json()
    assert list(job) == RECORD_FIELDS
    assert re.fullmatch(r"ftj-my-finetune-run-[0-9a-f]{8}", job["id"]) and job["id"].endswith(job["uuid"][:8])
    assert job["name"] == "my-finetune-run" and job["status"] == "REGISTERED"
    assert job["config"] == sent["config"] and job["inference_config_path"] is None
    assert ISO_Z.match(job["created_at"]) and ISO_Z.match(job["updated_at"])
    native = client.get(f"/v1/jobs/{job['uuid']}", headers=tenant.headers).json()
    assert [d["split"] for d in native["config"]["datasets"]] == ["train", "eval"]  # validation is the eval set
    for ref in (job["id"], job["uuid"], native["id"]):
        assert client.get(f"{JOBS}/{ref}", headers=tenant.headers).json() == job
    listed = client.get(JOBS, headers=tenant.headers).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    cancelled = client.post(f"{JOBS}/{job['id']}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"
    assert client.get(f"/v1/jobs/{native['id']}", headers=tenant.headers).json()["status"] == "cancelled"
    again = client.post(f"{JOBS}/{job['id']}/cancel", headers=tenant.headers)
    assert again.status_code == 409 and "CANCELLED" in again.json()["error"]["message"]
    # The same files again: the dataset made for them is reused, not made twice.
    datasets_before = counts(db)[1]
    assert client.post(JOBS, headers=tenant.headers, json=sent).status_code == 201
    assert counts(db)[1] == datasets_before


def test_a_job_made_elsewhere_has_an_archetype_record_and_its_inference_config(
    client: TestClient, db: Database, api_settings: Settings, tenant: Tenant
) -> None:
    done = finished_job(client, db, api_settings, tenant)
    native = client.get(f"/v1/jobs/{done['job_id']}", headers=tenant.headers).json()
    record = client.get(f"{JOBS}/{done['job_id']}", headers=tenant.headers).json()
    assert list(record) == RECORD_FIELDS and record["status"] == "COMPLETED"
    assert record["id"] == f"ftj-job-{record['uuid'][:8]}" and native["name"] is None
    assert record["config"]["datasets"] == [{"name": record["config"]["datasets"][0]["name"], "split": "train",
                                             "file_ids": [done["file_id"]]}]
    url = record["inference_config_path"]
    assert url.endswith(f"{JOBS}/{record['id']}/inference-config")
    answer = client.get(url, headers=tenant.headers)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/yaml")
    inference = yaml.safe_load(answer.text)
    assert inference["model"]["id"] == done["model_id"] and inference["model"]["kind"] == "adapter"
    assert inference["base_model"] == "tiny-llama" and inference["adapter"] == {"type": "lora", "merged": False}
    assert "{%" in inference["chat_template"] and set(inference["generation"]) == {"max_tokens", "temperature",
                                                                                    "top_p"}
    assert str(api_settings.data_dir) not in answer.text  # no server path
    assert client.get(inference["model"]["location"], headers=tenant.headers).status_code == 200
