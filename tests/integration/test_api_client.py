"""The Python client against a real app: every call lands on its route, errors come back typed."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines, finished_job
from tuneyard.client import NoApiKey, TuneyardAPIError, TuneyardClient
from tuneyard.settings import Settings

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

BASE = "http://testserver"


@pytest.fixture
def ty(client: TestClient, tenant: Tenant) -> Iterator[TuneyardClient]:
    yield TuneyardClient(BASE, tenant.key, http=client)


def test_data_and_job_lifecycle(ty: TuneyardClient, tmp_path: Path) -> None:
    source = tmp_path / "chats.jsonl"
    source.write_bytes(chat_lines(6))
    file = ty.upload_file(source)
    assert file["filename"] == "chats.jsonl" and ty.get_file(file["id"])["bytes"] == source.stat().st_size
    dataset = ty.wait_dataset(ty.create_dataset("chats", [file["id"]])["id"])
    assert dataset["status"] == "ready" and len(ty.preview_dataset(dataset["id"], limit=2)) == 2
    assert ty.list_base_models()[0]["id"] == "tiny-llama"

    spec = {"base_model": "tiny-llama", "datasets": [{"name": "chats"}], "hyperparams": {"max_steps": 3}}
    job = ty.create_job(spec, idempotency_key="once")
    assert ty.create_job(spec, idempotency_key="once")["id"] == job["id"]
    second = ty.create_job(spec, name="two")
    assert [j["id"] for j in ty.iter_jobs(limit=1)] == [second["id"], job["id"]]
    assert ty.list_jobs(status="queued")["has_more"] is False

    assert ty.stop_job(job["id"])["status"] == "stopped"
    assert ty.wait(job["id"], timeout=5)["status"] == "stopped"
    assert ty.resume_job(job["id"])["status"] == "queued"
    assert ty.cancel_job(job["id"])["status"] == "cancelled"
    with pytest.raises(TuneyardAPIError) as refused:
        ty.resume_job(job["id"])
    assert (refused.value.status, refused.value.code) == (409, "CONFLICT")
    assert refused.value.details["current_status"] == "cancelled"
    ty.delete_job(job["id"])
    with pytest.raises(TuneyardAPIError) as gone:
        ty.get_job(job["id"])
    assert (gone.value.status, gone.value.code) == (404, "NOT_FOUND")
    ty.delete_dataset(dataset["id"])
    assert ty.list_datasets() == []


def test_outputs_stream_and_download(ty: TuneyardClient, client: TestClient, db, api_settings: Settings,
                                     tenant: Tenant, tmp_path: Path) -> None:
    done = finished_job(client, db, api_settings, tenant)
    job_id = done["job_id"]
    items = list(ty.stream(job_id))
    assert items[-1].event == "end" and items[-1].data == {"status": "completed"}
    resumed = list(ty.follow(job_id, last_event_id=items[3].id))
    assert [(i.event, i.data) for i in resumed] == [(i.event, i.data) for i in items[4:]]

    assert [e["type"] for e in ty.events(job_id)][-1] == "completed"
    assert [m["step"] for m in ty.metrics(job_id, since_step=3)] == [4]
    assert [line["message"] for line in ty.logs(job_id, tail=1)] == ["line 5"]
    assert ty.checkpoints(job_id)[0]["id"] == done["checkpoint_id"]
    assert ty.result(job_id) == done["result"]
    assert {a["path"] for a in ty.artifacts(job_id)} >= {"final/adapter_config.json"}
    assert ty.get_artifact(job_id, "final/adapter_config.json") == b'{"r": 8}'
    archive = ty.download(job_id, tmp_path)
    with tarfile.open(archive) as tar:
        assert f"{done['model_id']}/adapter_config.json" in tar.getnames()
    assert ty.get_model(done["model_id"])["lineage"]["job_id"] == job_id
    assert [m["id"] for m in ty.list_models()] == [done["model_id"]]
    assert ty.stats()["models"] == 1
    assert ty.health()["status"] == "ok"
    with pytest.raises(TuneyardAPIError) as refused:  # a member key; /metrics is the operator's
        ty.prometheus_metrics()
    assert (refused.value.status, refused.value.code) == (403, "FORBIDDEN")
    admin = TuneyardClient(BASE, tenant.admin_key, http=client)
    assert "tuneyard_queue_depth" in admin.prometheus_metrics()
    ty.delete_model(done["model_id"])
    assert ty.list_models() == []


def test_errors_are_typed_and_the_key_is_found_in_the_data_folder(
    app: FastAPI, client: TestClient, tenant: Tenant, tmp_path: Path
) -> None:
    with pytest.raises(NoApiKey):
        TuneyardClient(BASE, data_dir=tmp_path)
    (tmp_path / "admin.key").write_text(tenant.key + "\n")
    ty = TuneyardClient(BASE, data_dir=tmp_path, http=client)
    assert ty.list_jobs()["data"] == []
    with pytest.raises(TuneyardAPIError) as bad:
        ty.create_job({"base_model": "tiny-llama", "datasets": [{"id": "ds_x"}], "hyperparams": {"max_steps": 0}})
    assert bad.value.status == 422 and len(bad.value.details["problems"]) == 2
    with pytest.raises(TuneyardAPIError) as unauthorized:
        TuneyardClient(BASE, "ty_wrong", http=client).stats()
    assert (unauthorized.value.status, unauthorized.value.code) == (401, "UNAUTHORIZED")
