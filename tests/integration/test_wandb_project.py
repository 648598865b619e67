"""002's `wandb_project` reaches the runner's spec (the runner's W&B sink: tests/training/test_reporting_wandb.py);
where wandb is not installed the answer says so, and the job is made all the same."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines
from tuneyard.settings import Settings

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

BODY = {"base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "wandb_project": "alpaca-runs"}


@pytest.fixture(autouse=True)
def dataset_file(api_settings: Settings) -> None:
    root = api_settings.resolved_dataset_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "alpaca.jsonl").write_bytes(chat_lines(12))


def test_the_project_is_in_the_runners_spec(client: TestClient, tenant: Tenant) -> None:
    pytest.importorskip("wandb", reason="wandb is not installed (pip install -e '.[wandb]')")
    answer = client.post("/api/training/jobs", headers=tenant.headers, json=BODY)
    assert answer.status_code == 201, answer.text
    assert "warnings" not in answer.json() and answer.json()["config"]["wandb_project"] == "alpaca-runs"
    job = client.get(f"/v1/jobs/{answer.json()['job_id']}", headers=tenant.headers).json()
    assert job["config"]["wandb_project"] == "alpaca-runs"
    plain = client.post("/api/training/jobs", headers=tenant.headers, json={**BODY, "wandb_project": None})
    assert "wandb_project" not in client.get(f"/v1/jobs/{plain.json()['job_id']}", headers=tenant.headers).json()[
        "config"]


def test_without_wandb_the_answer_warns_and_the_job_is_made(client: TestClient, tenant: Tenant,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    found = importlib.util.find_spec

    def without_wandb(name: str, *args: Any) -> Any:  # this server as one where wandb is not installed
        return None if name == "wandb" else found(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_wandb)
    answer = client.post("/api/training/jobs", headers=tenant.headers, json=BODY)
    assert answer.status_code == 201, answer.text
    assert answer.json()["warnings"] == ["wandb_project 'alpaca-runs': wandb is not installed on this server, so "
                                         "this run reports to no W&B project"]
    assert answer.json()["status"] == "pending"
