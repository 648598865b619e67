"""A table of bad requests: each gets the right 4xx with the error envelope, and nothing is created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import UPLOAD_LIMIT, Tenant, chat_lines, finished_job, job_body, ready_dataset, upload
from tuneyard.settings import Settings

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

JSON = {"Content-Type": "application/json"}


def cases(ids: dict[str, str]) -> list[tuple[str, str, str, dict[str, Any], int]]:
    """(label, method, url, request kwargs, expected status)."""
    good = job_body(ids["dataset"])
    traversal = "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"
    admin = {"Authorization": f"Bearer {ids['admin_key']}"}  # registering a base model takes an admin key
    return [
        ("malformed json job", "POST", "/v1/jobs", {"content": b'{"base_model": ', "headers": JSON}, 400),
        ("malformed json dataset", "POST", "/v1/datasets", {"content": b"{name: x}", "headers": JSON}, 400),
        ("json array as job", "POST", "/v1/jobs", {"json": [good]}, 422),
        ("unknown field", "POST", "/v1/jobs", {"json": {**good, "colour": "red"}}, 422),
        ("unknown hyperparam", "POST", "/v1/jobs", {"json": {**good, "hyperparams": {"learning_rat": 1}}}, 422),
        ("wrong type", "POST", "/v1/jobs", {"json": {**good, "hyperparams": {"max_steps": "ten"}}}, 422),
        ("datasets not a list", "POST", "/v1/jobs", {"json": {**good, "datasets": "chats"}}, 422),
        ("negative steps", "POST", "/v1/jobs", {"json": {**good, "hyperparams": {"max_steps": -5}}}, 422),
        ("missing dataset id", "POST", "/v1/jobs", {"json": {**good, "datasets": [{"id": "ds_missing"}]}}, 422),
        ("missing dataset name", "POST", "/v1/jobs", {"json": {**good, "datasets": [{"name": "nope"}]}}, 422),
        ("invalid dataset", "POST", "/v1/jobs", {"json": {**good, "datasets": [{"id": ids["invalid"]}]}}, 422),
        ("other org's dataset", "POST", "/v1/jobs", {"json": job_body(ids["foreign"])}, 422),
        ("server path as dataset", "POST", "/v1/jobs", {"json": {**good, "datasets": [{"path": "/etc/passwd"}]}}, 422),
        ("unknown base model", "POST", "/v1/jobs", {"json": {**good, "base_model": "/etc"}}, 422),
        ("unsupported method", "POST", "/v1/jobs", {"json": {**good, "method": "qlora"}}, 422),
        ("oversized json", "POST", "/v1/jobs", {"json": {**good, "name": "x" * 2_000_000}}, 413),
        ("oversized upload", "POST", "/v1/files", {"files": {"file": ("big.jsonl", b"x" * (UPLOAD_LIMIT + 1))}}, 413),
        ("upload way over", "POST", "/v1/files", {"files": {"file": ("b.jsonl", b"x" * (UPLOAD_LIMIT * 40))}}, 413),
        ("traversal filename", "POST", "/v1/files", {"files": {"file": ("../../evil.jsonl", b"{}")}}, 422),
        ("backslash filename", "POST", "/v1/files", {"files": {"file": ("..\\evil.jsonl", b"{}")}}, 422),
        ("dotdot filename", "POST", "/v1/files", {"files": {"file": ("..", b"{}")}}, 422),
        ("no file part", "POST", "/v1/files", {"data": {"purpose": "fine-tune"}}, 422),
        ("dataset unknown field", "POST", "/v1/datasets", {"json": {"name": "d", "file_ids": [ids["file"]], "x": 1}},
         422),
        ("dataset missing file", "POST", "/v1/datasets", {"json": {"name": "d", "file_ids": ["file_nope"]}}, 422),
        ("dataset no files", "POST", "/v1/datasets", {"json": {"name": "d", "file_ids": []}}, 422),
        ("dataset slash name", "POST", "/v1/datasets", {"json": {"name": "../d", "file_ids": [ids["file"]]}}, 422),
        ("model root escape", "POST", "/v1/base-models",
         {"json": {"source": "../../../../etc", "kind": "local"}, "headers": admin}, 422),
        ("model outside roots", "POST", "/v1/base-models",
         {"json": {"source": "/etc", "kind": "local"}, "headers": admin}, 422),
        ("artifact traversal", "GET", f"/v1/jobs/{ids['job']}/artifacts/{traversal}", {}, 404),
        ("artifact absolute", "GET", f"/v1/jobs/{ids['job']}/artifacts//etc/passwd", {}, 404),
        ("artifact missing", "GET", f"/v1/jobs/{ids['job']}/artifacts/final/nope.bin", {}, 404),
        ("bad job id", "GET", "/v1/jobs/not-an-id", {}, 404),
        ("bad dataset id", "GET", "/v1/datasets/%00", {}, 404),
        ("bad limit", "GET", "/v1/jobs?limit=0", {}, 422),
        ("limit not a number", "GET", "/v1/jobs?limit=many", {}, 422),
        ("since_step not a number", "GET", f"/v1/jobs/{ids['job']}/metrics?since_step=x", {}, 422),
        ("bad stream position", "GET", f"/v1/jobs/{ids['job']}/stream", {"headers": {"Last-Event-ID": "zz"}}, 422),
        ("resume unknown field", "POST", f"/v1/jobs/{ids['job']}/resume", {"json": {"checkpoint_id": "c"}}, 422),
        ("unknown route", "GET", "/v1/nothing-here", {}, 404),
        ("wrong method", "PUT", "/v1/jobs", {"json": good}, 405),
    ]


def inventory(client: TestClient, tenant: Tenant, settings: Settings) -> dict[str, Any]:
    def ids(url: str) -> list[str]:
        return sorted(item["id"] for item in client.get(url, headers=tenant.headers).json()["data"])

    files_dir = settings.data_dir / "files"
    return {"jobs": ids("/v1/jobs"), "datasets": ids("/v1/datasets"), "files": ids("/v1/files"),
            "base_models": ids("/v1/base-models"), "blobs": sorted(p.name for p in files_dir.iterdir())}


@pytest.fixture
def ids(client: TestClient, db, api_settings: Settings, tenant: Tenant, other: Tenant) -> dict[str, str]:
    finished = finished_job(client, db, api_settings, tenant)
    bad = upload(client, tenant, b'{"messages": []}\nnot json\n')
    invalid = client.post("/v1/datasets", headers=tenant.headers, json={"name": "bad", "file_ids": [bad["id"]]})
    assert invalid.json()["status"] == "invalid"
    return {"dataset": finished["dataset_id"], "file": finished["file_id"], "job": finished["job_id"],
            "invalid": invalid.json()["id"], "foreign": ready_dataset(client, other)["id"],
            "admin_key": tenant.admin_key}


def test_bad_inputs_get_4xx_envelopes_and_create_nothing(
    client: TestClient, tenant: Tenant, ids: dict[str, str], api_settings: Settings
) -> None:
    before = inventory(client, tenant, api_settings)
    failures = []
    for label, method, url, kwargs, expected in cases(ids):
        headers = {**tenant.headers, **kwargs.pop("headers", {})}
        response = client.request(method, url, headers=headers, **kwargs)
        try:
            error = response.json()["error"]
            ok = response.status_code == expected and set(error) == {"code", "message", "details"} and error["message"]
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            failures.append(f"{label}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)
    assert inventory(client, tenant, api_settings) == before


def test_every_problem_is_reported_at_once(client: TestClient, tenant: Tenant, ids: dict[str, str]) -> None:
    body = {"base_model": "no-such-model", "datasets": [{"id": "ds_missing"}, {"name": "bad"}], "colour": "red",
            "hyperparams": {"max_steps": -1, "learning_rate": "fast"}, "project_id": "proj_nope"}
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    fields = {p["field"] for p in error["details"]["problems"]}
    assert {"colour", "hyperparams.max_steps", "hyperparams.learning_rate", "base_model", "datasets.0", "datasets.1",
            "project_id"} <= fields


def test_dataset_files_are_stored_under_names_of_our_making(client: TestClient, tenant: Tenant,
                                                            api_settings: Settings) -> None:
    stored = upload(client, tenant, chat_lines(2), filename="my data (v2).jsonl")
    assert stored["filename"] == "my data (v2).jsonl"
    blobs = list((api_settings.data_dir / "files").iterdir())
    assert [p.name for p in blobs] == [f"{stored['id']}.jsonl"]
    assert Path(blobs[0]).stat().st_mode & 0o777 == 0o600
