"""/v1/files/{id}/content and DELETE /v1/files/{id}: OpenAI's files.content and files.delete on the
native route, and the rule that a file a dataset or an unfinished job reads cannot be deleted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines, create_job, live_server, upload
from tuneyard.settings import Settings

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def _blobs(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "files").iterdir())


def test_content_is_the_uploaded_bytes_by_id_or_uuid(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    content = chat_lines(3)
    stored = upload(client, tenant, content, filename="chats.jsonl")
    for ref in (stored["id"], stored["uuid"], stored["uuid"].upper()):
        response = client.get(f"/v1/files/{ref}/content", headers=tenant.headers)
        assert response.status_code == 200, response.text
        assert response.content == content
        assert response.headers["x-checksum-sha256"] == hashlib.sha256(content).hexdigest()
        assert 'filename="chats.jsonl"' in response.headers["content-disposition"]
    assert client.get(f"/v1/files/{stored['id']}/content", headers=other.headers).status_code == 404
    assert client.get(f"/v1/files/{stored['id']}/content").status_code == 401
    missing = client.get("/v1/files/file_nothing/content", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "NOT_FOUND"


def test_delete_answers_openais_object_and_removes_row_and_bytes(
    client: TestClient, tenant: Tenant, other: Tenant, api_settings: Settings
) -> None:
    kept = upload(client, tenant, chat_lines(1), filename="kept.jsonl")
    gone = upload(client, tenant, chat_lines(2), filename="gone.jsonl")
    assert len(_blobs(api_settings)) == 2
    assert client.delete(f"/v1/files/{gone['id']}", headers=other.headers).status_code == 404
    response = client.delete(f"/v1/files/{gone['uuid']}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": gone["id"], "object": "file", "deleted": True}
    for path in (f"/v1/files/{gone['id']}", f"/v1/files/{gone['id']}/content"):
        assert client.get(path, headers=tenant.headers).status_code == 404
    assert client.delete(f"/v1/files/{gone['id']}", headers=tenant.headers).status_code == 404
    assert [f["id"] for f in client.get("/v1/files", headers=tenant.headers).json()["data"]] == [kept["id"]]
    assert len(_blobs(api_settings)) == 1 and _blobs(api_settings)[0].name.startswith(kept["id"])


def test_a_file_in_use_is_409_naming_its_users_until_they_are_done(
    client: TestClient, tenant: Tenant, api_settings: Settings
) -> None:
    """Datasets and jobs read the upload itself (no copy): deleting it under them would lose a job's data."""
    file = upload(client, tenant, chat_lines(8))
    made = client.post("/v1/datasets", headers=tenant.headers, json={"name": "chats", "file_ids": [file["id"]]})
    dataset = made.json()
    job = create_job(client, tenant, dataset["id"])

    refused = client.delete(f"/v1/files/{file['id']}", headers=tenant.headers)
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "CONFLICT"
    assert "dataset 'chats'" in error["message"] and job["id"] in error["message"]
    assert error["details"]["datasets"] == ["chats"] and error["details"]["jobs"] == [job["id"]]

    # The dataset forgotten, the queued job still reads the file.
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=tenant.headers).status_code == 204
    refused = client.delete(f"/v1/files/{file['id']}", headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["details"] == {"id": file["id"], "datasets": [], "jobs": [job["id"]]}
    assert client.get(f"/v1/files/{file['id']}/content", headers=tenant.headers).content == chat_lines(8)

    # A cancelled job never runs again: the file is free.
    cancelled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=tenant.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()["status"] == "cancelled"
    assert client.delete(f"/v1/files/{file['id']}", headers=tenant.headers).status_code == 200
    assert _blobs(api_settings) == []


def test_the_openai_client_reads_and_deletes_a_file(app: FastAPI, client: TestClient, tenant: Tenant) -> None:
    """The official client, given only base_url=<server>/v1 and a key: files.content and files.delete."""
    with live_server(app) as url:
        ai = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant.key, max_retries=0, timeout=30)
        made = ai.files.create(file=("chats.jsonl", chat_lines(2)), purpose="fine-tune")
        assert ai.files.content(made.id).read() == chat_lines(2)
        deleted = ai.files.delete(made.id)
        assert (deleted.id, deleted.object, deleted.deleted) == (made.id, "file", True)
        with pytest.raises(openai.NotFoundError):
            ai.files.retrieve(made.id)
        used = ai.files.create(file=("chats.jsonl", chat_lines(8)), purpose="fine-tune")
        client.post("/v1/datasets", headers=tenant.headers, json={"name": "used", "file_ids": [used.id]})
        with pytest.raises(openai.ConflictError, match="dataset 'used'"):
            ai.files.delete(used.id)
