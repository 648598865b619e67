"""One job in every dialect (issue 14, "What it must show" 3): a job made through each of Felix, Fusion,
002, Archetype and OpenAI is the same job in /v1/jobs and in the console (its list and its page), and
ended through another dialect (stop, pause, cancel, 002's DELETE) it reads as ended, in its own words,
in the dialect that made it, in /v1 and in the console."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines, ready_dataset, upload
from tuneyard.settings import Settings
from tuneyard.store import uuids
from tuneyard.store.engine import Database

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

ORIGIN = {"Origin": "http://testserver"}
HTML = {"Accept": "text/html"}
Made = dict[str, Any]  # the dialect's answer, and "native": the job's native id


@pytest.fixture
def data(client: TestClient, tenant: Tenant, api_settings: Settings) -> dict[str, str]:
    """What each dialect names its data by: a ready dataset (name, id), an uploaded file, a file under 002's root."""
    dataset = ready_dataset(client, tenant, name="chats")
    root = api_settings.resolved_dataset_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "alpaca.jsonl").write_bytes(chat_lines(12))
    file_id = upload(client, tenant, chat_lines(8))["id"]
    return {"dataset_name": "chats", "dataset_id": dataset["id"], "file_id": file_id}


def _post(client: TestClient, tenant: Tenant, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, headers=tenant.headers, json=body)
    assert response.status_code in (200, 201), (path, response.text)
    answer: dict[str, Any] = response.json()
    return answer


# Each dialect: how it makes a job (its answer), and how it reads the job's status.
CREATE: dict[str, Callable[[TestClient, Tenant, dict[str, str]], dict[str, Any]]] = {
    "felix": lambda c, t, d: _post(c, t, "/felix/training-jobs", {
        "base_model": "tiny-llama", "datasets": [{"name": d["dataset_name"]}], "name": "made-in-felix"}),
    "fusion": lambda c, t, d: _post(c, t, "/jobs", {
        "type": "finetune", "idempotency_key": "cross-dialect", "source_model_id": "tiny-llama",
        "dataset_id": d["dataset_id"], "hyperparams": {"steps": 5}}),
    "local_training": lambda c, t, d: _post(c, t, "/api/training/jobs", {
        "base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "run_name": "made-in-002"}),
    "archetype": lambda c, t, d: _post(c, t, "/v0.5/fine-tune/jobs", {"name": "made-in-archetype", "config": {
        "model": "tiny-llama", "datasets": [{"name": "set", "split": "train", "file_ids": [d["file_id"]]}]}}),
    "openai": lambda c, t, d: _post(c, t, "/v1/fine_tuning/jobs", {
        "model": "tiny-llama", "training_file": d["file_id"], "suffix": "made-in-openai"}),
}
SHOWN_ID = {"felix": "id", "fusion": "id", "local_training": "job_id", "archetype": "id", "openai": "id"}
"""The field of the dialect's answer that is its id for the job."""
STATUS: dict[str, Callable[[TestClient, Tenant, str], str]] = {
    "felix": lambda c, t, i: c.get(f"/felix/training-jobs/{i}", headers=t.headers).json()["status"],
    "fusion": lambda c, t, i: c.get(f"/jobs/{i}", headers=t.headers).json()["status"],
    "local_training": lambda c, t, i: c.get(f"/api/training/jobs/{i}", headers=t.headers).json()["status"],
    "archetype": lambda c, t, i: c.get(f"/v0.5/fine-tune/jobs/{i}", headers=t.headers).json()["status"],
    "openai": lambda c, t, i: c.get(f"/v1/fine_tuning/jobs/{i}", headers=t.headers).json()["status"],
}
# (the dialect that made the job, what ends it through another dialect (the native id given), the
# native status it ends in, that status in the maker's words)
ENDINGS = [
    ("felix", ("POST", "/v1/fine_tuning/jobs/{}/cancel"), "cancelled", "failed"),  # Felix has no cancelled
    ("fusion", ("DELETE", "/api/training/jobs/{}"), "cancelled", "cancelled"),
    ("local_training", ("POST", "/felix/training-jobs/{}/stop"), "stopped", "cancelled"),  # 002 has no stopped
    ("archetype", ("POST", "/v1/fine_tuning/jobs/{}/pause"), "stopped", "STOPPED"),
    ("openai", ("POST", "/v0.5/fine-tune/jobs/{}/cancel"), "cancelled", "cancelled"),
]
BEFORE = {"felix": "requested", "fusion": "queued", "local_training": "pending", "archetype": "REGISTERED",
          "openai": "queued"}


def native_of(db: Database, tenant: Tenant, answer: dict[str, Any], id_field: str) -> str:
    """The native id of the job a dialect answered with: by its id, or its UUID (Felix, Fusion, Archetype)."""
    ref = answer.get("uuid") or answer[id_field]
    return uuids.native_id(db, tenant.org_id, "job", ref)


def console_page(client: TestClient, tenant: Tenant, path: str) -> str:
    # No Authorization header and text/html: the console's page, even on a path Fusion shares (/jobs).
    response = client.get(path, headers=HTML)
    assert response.status_code == 200, (path, response.text[:300])
    assert "<html" in response.text
    return response.text


def test_a_job_made_in_each_dialect_is_one_job_and_its_end_elsewhere_is_seen_by_its_maker(
    client: TestClient, db: Database, tenant: Tenant, data: dict[str, str]
) -> None:
    answers = {name: CREATE[name](client, tenant, data) for name, *_ in ENDINGS}
    made = {name: answer[SHOWN_ID[name]] for name, answer in answers.items()}
    natives = {name: {"id": native_of(db, tenant, answer, SHOWN_ID[name])} for name, answer in answers.items()}
    assert len({n["id"] for n in natives.values()}) == len(ENDINGS)
    listed = {j["id"]: j for j in client.get("/v1/jobs", headers=tenant.headers, params={"limit": 100}).json()["data"]}
    for name, shown in made.items():
        native = client.get(f"/v1/jobs/{natives[name]['id']}", headers=tenant.headers).json()
        assert native["status"] == "queued" and STATUS[name](client, tenant, shown) == BEFORE[name], name
        assert listed[native["id"]]["status"] == "queued"

    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": "/jobs"}, headers=ORIGIN)
    assert signed_in.status_code == 200, signed_in.text[:300]
    listing = console_page(client, tenant, "/jobs")
    for native in natives.values():
        assert f'data-job="{native["id"]}"' in listing and f'href="/jobs/{native["id"]}"' in listing

    for maker, (method, path), status, in_words in ENDINGS:
        job_id = natives[maker]["id"]
        ended = client.request(method, path.format(job_id), headers=tenant.headers)
        assert ended.status_code == 200, (maker, path, ended.text)
        assert STATUS[maker](client, tenant, made[maker]) == in_words, maker
        assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()["status"] == status, maker
        page = console_page(client, tenant, f"/jobs/{job_id}")
        assert f'data-job-id="{job_id}" data-status="{status}"' in page, maker
    listing = console_page(client, tenant, "/jobs")
    for maker, _end, status, _words in ENDINGS:
        row = listing.split(f'data-job="{natives[maker]["id"]}"', 1)[1].split("</li>", 1)[0]
        assert f'data-status="{status}"' in row, maker


def test_the_console_does_not_show_a_job_deleted_through_a_dialect(
    client: TestClient, db: Database, tenant: Tenant, data: dict[str, str]
) -> None:
    answer = CREATE["felix"](client, tenant, data)
    shown, job_id = answer["id"], native_of(db, tenant, answer, "id")
    assert client.post(f"/felix/training-jobs/{shown}/stop", headers=tenant.headers).status_code == 200
    assert client.delete(f"/felix/training-jobs/{shown}", headers=tenant.headers).status_code == 204
    client.post("/sign-in", data={"api_key": tenant.key, "next": "/jobs"}, headers=ORIGIN)
    assert job_id not in console_page(client, tenant, "/jobs")
    assert client.get(f"/jobs/{job_id}", headers=HTML).status_code == 404
    assert client.get(f"/v1/fine_tuning/jobs/{job_id}", headers=tenant.headers).status_code == 404
