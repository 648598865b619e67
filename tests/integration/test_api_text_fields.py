"""Every name, key, id and reference a request carries is checked before the store sees it: NUL, control
characters, lone surrogates, blanks and overlong values are a 422 naming the field, on SQLite and on
PostgreSQL (which refuses NUL in text: these were 500s there), and nothing is created."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines, finished_job, job_body, ready_dataset, upload
from tuneyard.settings import Settings
from tuneyard.training.data.reading import TOO_DEEP

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

BAD_TEXT = {
    "nul": "a\x00b", "crlf": "a\r\nb", "esc": "\x1b[31mred", "del": "a\x7f", "c1": "a\x85b", "tab": "a\tb",
    "empty": "", "blank": "   ", "overlong": "n" * 256,
}
BAD_IDS = {**BAD_TEXT, "slash": "a/b", "dots": "..", "space": "a b", "overlong": "i" * 129}
JSON = {"Content-Type": "application/json"}


def cases(ids: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any], str]]:
    """(label, method, url, request kwargs, the field the 422 must name)."""
    good = job_body(ids["dataset"])
    out: list[tuple[str, str, str, dict[str, Any], str]] = []
    for kind, bad in BAD_TEXT.items():
        out += [
            (f"job name {kind}", "POST", "/v1/jobs", {"json": {**good, "name": bad}}, "name"),
            (f"body key {kind}", "POST", "/v1/jobs", {"json": {**good, "idempotency_key": bad}}, "idempotency_key"),
            (f"base_model {kind}", "POST", "/v1/jobs", {"json": {**good, "base_model": bad}}, "base_model"),
            (f"dataset ref name {kind}", "POST", "/v1/jobs", {"json": {**good, "datasets": [{"name": bad}]}},
             "datasets.0"),
            (f"dataset name {kind}", "POST", "/v1/datasets", {"json": {"name": bad, "file_ids": [ids["file"]]}},
             "name"),
            (f"base model name {kind}", "POST", "/v1/base-models",
             {"json": {"source": "tiny-llama", "name": bad}, "admin": True}, "name"),
        ]
        if kind not in ("empty", "blank"):  # an empty header is no header to the client; checked below
            header = {"Idempotency-Key": bad.encode()}  # bytes: httpx sends only ASCII from a str
            out.append((f"header key {kind}", "POST", "/v1/jobs", {"json": good, "headers": header}, "Idempotency-Key"))
    for kind, bad in BAD_IDS.items():
        out += [
            (f"body project {kind}", "POST", "/v1/jobs", {"json": {**good, "project_id": bad}}, "project_id"),
            (f"query project {kind}", "GET", "/v1/jobs", {"params": {"project_id": bad}}, "project_id"),
            (f"dataset ref id {kind}", "POST", "/v1/jobs", {"json": {**good, "datasets": [{"id": bad}]}},
             "datasets.0"),
            (f"file id {kind}", "POST", "/v1/datasets", {"json": {"name": "d", "file_ids": [bad]}}, "file_ids.0"),
            (f"checkpoint {kind}", "POST", f"/v1/jobs/{ids['job']}/resume", {"json": {"checkpoint": bad}},
             "checkpoint"),
        ]
    surrogate = json.dumps({**good, "name": "PLACEHOLDER"}).replace("PLACEHOLDER", "\\ud800").encode()
    out += [
        ("job name lone surrogate", "POST", "/v1/jobs", {"content": surrogate, "headers": JSON}, "name"),
        ("description esc", "POST", "/v1/base-models",
         {"json": {"source": "tiny-llama", "description": "a\x1bb"}, "admin": True}, "description"),
        ("upload name esc", "POST", "/v1/files", multipart("a\x1b[2J.jsonl"), "file.filename"),
        ("upload name nul", "POST", "/v1/files", multipart("a\x00.jsonl"), "file.filename"),
        ("upload name c1", "POST", "/v1/files", multipart("a\u0085.jsonl"), "file.filename"),
    ]
    return out


def multipart(filename: str) -> dict[str, Any]:
    """A form upload with the file name's bytes as given (httpx would percent-encode controls)."""
    body = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="' + filename.encode()
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + chat_lines(1) + b"\r\n--b0undary--\r\n")
    return {"content": body, "headers": {"Content-Type": "multipart/form-data; boundary=b0undary"}}


@pytest.fixture
def ids(client: TestClient, db, api_settings: Settings, tenant: Tenant) -> dict[str, str]:
    finished = finished_job(client, db, api_settings, tenant)
    return {"dataset": finished["dataset_id"], "file": finished["file_id"], "job": finished["job_id"]}


def inventory(client: TestClient, tenant: Tenant) -> dict[str, list[str]]:
    urls = {"jobs": "/v1/jobs", "datasets": "/v1/datasets", "files": "/v1/files", "base_models": "/v1/base-models"}
    return {name: sorted(i["id"] for i in client.get(url, headers=tenant.headers).json()["data"])
            for name, url in urls.items()}


def test_bad_names_keys_and_ids_are_422_naming_the_field(
    client: TestClient, tenant: Tenant, ids: dict[str, str]
) -> None:
    before = inventory(client, tenant)
    table = cases(ids)
    assert len(table) >= 100
    failures = []
    for label, method, url, kwargs, field in table:
        auth = tenant.admin_headers if kwargs.pop("admin", False) else tenant.headers
        response = client.request(method, url, **{**kwargs, "headers": {**auth, **kwargs.get("headers", {})}})
        error = response.json().get("error", {}) if response.headers.get("content-type") == "application/json" else {}
        named = [p["field"] for p in error.get("details", {}).get("problems", [])]
        if response.status_code != 422 or error.get("code") != "INVALID_REQUEST" or not any(
                f == field or f.startswith(f"{field}.") or f.endswith(f".{field}") for f in named):
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)
    assert inventory(client, tenant) == before


def test_good_names_and_keys_still_pass(client: TestClient, tenant: Tenant, ids: dict[str, str]) -> None:
    body = job_body(ids["dataset"], name="Ünïcode name / with: punctuation (v2) — ok", idempotency_key="k-1:ü")
    created = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == body["name"]
    again = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert again.status_code == 200 and again.json()["id"] == created.json()["id"]
    dataset = ready_dataset(client, tenant, name="naïve data v2.1")
    assert dataset["name"] == "naïve data v2.1"


def test_a_blank_idempotency_key_header_is_refused(client: TestClient, tenant: Tenant, ids: dict[str, str]) -> None:
    response = client.post("/v1/jobs", headers={**tenant.headers, "Idempotency-Key": " "},
                           json=job_body(ids["dataset"]))
    assert response.status_code == 422
    assert response.json()["error"]["details"]["problems"][0]["field"] == "Idempotency-Key"


def test_a_dataset_line_nested_too_deep_is_that_lines_error(client: TestClient, tenant: Tenant) -> None:
    content = chat_lines(2) + b"[" * 10_000 + b"]" * 10_000 + b"\n" + chat_lines(1)
    file = upload(client, tenant, content)
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": "deep", "file_ids": [file["id"]]})
    assert response.status_code == 201
    dataset = response.json()
    assert dataset["status"] == "invalid"
    assert dataset["errors"] == [{"file_index": 0, "line": 3, "message": TOO_DEEP}]
