"""Files and datasets over HTTP: upload, validate into ready / invalid, preview, delete."""

from __future__ import annotations

import hashlib
import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines, upload
from tuneyard.api.app import create_app
from tuneyard.services import datasets
from tuneyard.settings import Settings
from tuneyard.store import datasets as store
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def test_upload_is_hashed_and_listed(client: TestClient, tenant: Tenant) -> None:
    content = chat_lines(3)
    stored = upload(client, tenant, content)
    assert stored["bytes"] == len(content)
    assert stored["sha256"] == hashlib.sha256(content).hexdigest()
    assert client.get(f"/v1/files/{stored['id']}", headers=tenant.headers).json()["filename"] == "chats.jsonl"
    assert [f["id"] for f in client.get("/v1/files", headers=tenant.headers).json()["data"]] == [stored["id"]]


def test_a_file_is_openais_file_object_and_the_list_its_page(client: TestClient, tenant: Tenant) -> None:
    """What the openai SDK's files.create / files.list read, beside the native fields."""
    before = int(time.time())
    chats = upload(client, tenant, chat_lines(2))
    response = client.post("/v1/files", headers=tenant.headers, data={"purpose": "eval"},
                           files={"file": ("held.jsonl", chat_lines(1))})
    held = response.json()
    assert response.status_code == 201 and held["purpose"] == "eval"
    assert {k: chats[k] for k in ("object", "purpose", "status", "filename", "expires_at")} == {
        "object": "file", "purpose": "fine-tune", "status": "processed", "filename": "chats.jsonl",
        "expires_at": None}
    assert isinstance(chats["created_at"], int) and before - 1 <= chats["created_at"] <= time.time() + 1
    assert len(chats["uuid"]) == 36
    page = client.get("/v1/files", headers=tenant.headers).json()
    assert page["object"] == "list" and page["has_more"] is False
    assert [f["id"] for f in page["data"]] == [held["id"], chats["id"]]  # newest first
    assert (page["first_id"], page["last_id"]) == (held["id"], chats["id"])
    only = client.get("/v1/files", headers=tenant.headers, params={"purpose": "fine-tune"}).json()
    assert [f["id"] for f in only["data"]] == [chats["id"]]
    assert client.get("/v1/files", headers=tenant.headers, params={"purpose": "nope"}).status_code == 422


def test_dataset_becomes_ready_with_stats(client: TestClient, tenant: Tenant) -> None:
    files = [upload(client, tenant, chat_lines(n)) for n in (3, 4)]
    response = client.post("/v1/datasets", headers=tenant.headers,
                           json={"name": "chats", "file_ids": [f["id"] for f in files]})
    assert response.status_code == 201
    dataset = response.json()
    assert dataset["status"] == "ready" and dataset["errors"] == []
    assert dataset["examples"] == 7
    assert dataset["bytes"] == sum(f["bytes"] for f in files)
    assert dataset["tokens_est"] > 0

    preview = client.get(f"/v1/datasets/{dataset['id']}/preview", headers=tenant.headers, params={"limit": 5})
    rows = preview.json()["data"]
    assert [(r["file_index"], r["line"]) for r in rows] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2)]
    assert rows[0]["example"]["messages"][0]["content"] == "What is 0 plus 1?"

    by_name = client.post("/v1/datasets", headers=tenant.headers, json={"name": "chats", "file_ids": [files[0]["id"]]})
    assert by_name.status_code == 409
    assert [d["id"] for d in client.get("/v1/datasets", headers=tenant.headers).json()["data"]] == [dataset["id"]]
    assert client.delete(f"/v1/datasets/{dataset['id']}", headers=tenant.headers).status_code == 204
    assert client.get(f"/v1/datasets/{dataset['id']}", headers=tenant.headers).status_code == 404


def test_invalid_dataset_lists_line_numbered_errors(client: TestClient, tenant: Tenant) -> None:
    good = upload(client, tenant, chat_lines(2))
    bad = upload(client, tenant, chat_lines(2) + b"not json\n" + b'{"messages": "nope"}\n' + b"[1, 2]\n")
    response = client.post("/v1/datasets", headers=tenant.headers,
                           json={"name": "mixed", "file_ids": [good["id"], bad["id"]], "format": "auto"})
    assert response.status_code == 201
    dataset = response.json()
    assert dataset["status"] == "invalid"
    assert [(e["file_index"], e["line"]) for e in dataset["errors"]] == [(1, 3), (1, 4), (1, 5)]
    assert "JSON" in dataset["errors"][0]["message"]
    assert all(set(e) == {"file_index", "line", "message"} for e in dataset["errors"])  # no server paths
    job = client.post("/v1/jobs", headers=tenant.headers,
                      json={"base_model": "tiny-llama", "datasets": [{"name": "mixed"}]})
    assert job.status_code == 422
    assert "invalid, not ready" in job.json()["error"]["details"]["problems"][0]["message"]


def test_large_dataset_is_validated_in_the_background(db: Database, tenant: Tenant, client: TestClient) -> None:
    stored = upload(client, tenant, chat_lines(5))
    request = datasets.DatasetCreate("later", [stored["id"]])
    created = datasets.create_dataset(db, tenant.org_id, request, inline_bytes=0)
    assert created.status == "validating"
    deadline = time.monotonic() + 10
    while (current := datasets.get_dataset(db, tenant.org_id, created.id)).status == "validating":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert current.status == "ready" and current.examples == 5


def test_a_dataset_left_validating_by_a_dead_process_is_validated_at_the_next_start(
    db: Database, tenant: Tenant, client: TestClient, app: FastAPI
) -> None:
    good, bad = upload(client, tenant, chat_lines(3)), upload(client, tenant, b'{"messages": 1}\n', "bad.jsonl")
    orphans = [store.create_dataset(db, tenant.org_id, name, [file["id"]]) for name, file in (("a", good), ("b", bad))]
    gone = upload(client, tenant, chat_lines(2), "gone.jsonl")
    orphans.append(store.create_dataset(db, tenant.org_id, "c", [gone["id"]]))
    store.delete_file(db, tenant.org_id, gone["id"])
    with TestClient(app):  # the next start
        deadline = time.monotonic() + 10
        while any(datasets.get_dataset(db, tenant.org_id, d.id).status == "validating" for d in orphans):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    a, b, c = (datasets.get_dataset(db, tenant.org_id, d.id) for d in orphans)
    assert (a.status, a.examples) == ("ready", 3)
    assert b.status == "invalid" and b.errors[0]["line"] == 1
    assert c.status == "invalid" and "deleted" in c.errors[0]["message"]


def test_an_api_process_that_does_not_recover_leaves_what_it_finds_unfinished_to_the_one_that_does(
    db: Database, tenant: Tenant, client: TestClient, api_settings: Settings
) -> None:
    # Of `serve --api-processes N`, one start recovers: what the others find may be a live sibling's work.
    orphan = store.create_dataset(db, tenant.org_id, "a", [upload(client, tenant, chat_lines(3))["id"]])
    with TestClient(create_app(api_settings, db, recover_unfinished=False)):
        time.sleep(0.5)
        assert datasets.get_dataset(db, tenant.org_id, orphan.id).status == "validating"
    with TestClient(create_app(api_settings, db)):
        deadline = time.monotonic() + 10
        while datasets.get_dataset(db, tenant.org_id, orphan.id).status == "validating":
            assert time.monotonic() < deadline
            time.sleep(0.02)
