"""002's `hf_token` on its way to the hub: in the environment of that job's runner process (read from
/proc while the real runner trains), in no other job's, and after the job nowhere stored, logged or
answered; a job whose token the worker's process does not hold (a restart, another process) fails
before launch saying so, rather than running without it."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines
from tests.support.runs import REPO
from tuneyard.scheduler import claim
from tuneyard.services import job_secrets
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.secrets import LABEL
from tuneyard.store.tables import Job
from tuneyard.worker.loop import Worker
from tuneyard.worker.outcome import Verdict

app, client, tenant = api.app, api.client, api.tenant

TOKEN = "hf_secretsTestToken0123456789abcdefQRS"
BODY = {"base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "method": "lora", "num_epochs": 1,
        "batch_size": 4, "lora_rank": 4, "max_seq_length": 64}


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    (REPO / ".cache" / "models").mkdir(parents=True, exist_ok=True)
    settings = settings.with_overrides(model_cache_dir=REPO / ".cache" / "models", runner_nice=0)
    root = settings.resolved_dataset_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "alpaca.jsonl").write_bytes(chat_lines(12))
    return settings


def submit(client: TestClient, tenant: Tenant, **extra: Any) -> str:
    response = client.post("/api/training/jobs", headers=tenant.headers, json={**BODY, **extra})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def runner_environment(folder: Path, done: threading.Event) -> dict[str, str]:
    """The environment of the live runner process whose command line names `folder`, read from /proc."""
    while not done.is_set():
        for proc in Path("/proc").iterdir():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"tuneyard.training" in argv and str(folder).encode() in argv:
                    pairs = (proc / "environ").read_bytes().split(b"\0")
                    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)
            except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
                continue
        time.sleep(0.02)
    raise AssertionError(f"no runner for {folder} was seen alive")


def run_watched(db: Database, settings: Settings, job_id: str) -> dict[str, str]:
    """Run the claimed job with a real worker and runner; return the runner's environment."""
    claimed = claim(db, "test-worker", settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    done = threading.Event()

    def work() -> None:
        try:
            Worker(db, settings, os.environ).run_job(claimed, threading.Event())
        finally:
            done.set()

    worker = threading.Thread(target=work)
    worker.start()
    try:
        return runner_environment(run_dir(settings, job_id), done)
    finally:
        worker.join(timeout=600)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the database file is grepped
def test_the_token_reaches_its_runner_alone_and_is_kept_nowhere(client: TestClient, db: Database, tenant: Tenant,
                                                               api_settings: Settings) -> None:
    assert "HF_TOKEN" not in os.environ  # else the runner could not be told apart from the worker
    with_token = submit(client, tenant, hf_token=TOKEN, run_name="with-token")
    without = submit(client, tenant, run_name="without-token")
    seen = {job_id: run_watched(db, api_settings, job_id) for job_id in (with_token, without)}
    assert seen[with_token]["HF_TOKEN"] == TOKEN  # what huggingface_hub reads for the hub
    assert "HF_TOKEN" not in seen[without] and TOKEN not in "".join(seen[without].values())

    answers = []
    for job_id in (with_token, without):
        answers += [client.get(path, headers=tenant.headers) for path in (
            f"/api/training/jobs/{job_id}", f"/api/training/jobs/{job_id}/logs", f"/api/training/jobs/{job_id}/output",
            f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/events", f"/v1/jobs/{job_id}/logs", f"/v1/jobs/{job_id}/result")]
    answers.append(client.get("/v1/jobs", headers=tenant.headers))
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert TOKEN not in answer.text
    assert answers[0].json()["status"] == "completed", answers[0].text
    searched = [p for p in api_settings.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "runner.log" for p in searched) and any(p.suffix == ".safetensors" for p in searched)
    for path in searched:
        assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN.encode() not in Path(db.engine.url.database or "").read_bytes()


def test_a_job_whose_token_this_process_does_not_hold_fails_before_launch(
    client: TestClient, db: Database, open_db: Any, tenant: Tenant, api_settings: Settings
) -> None:
    job_id = submit(client, tenant, hf_token=TOKEN)
    elsewhere = open_db()  # another process's handle on the same database: none of this one's secrets
    claimed = claim(elsewhere, "other-process-worker", api_settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    outcome = Worker(elsewhere, api_settings, os.environ).run_job(claimed, threading.Event())
    assert outcome.verdict == Verdict.USER_ERROR and outcome.exit is None
    assert not (run_dir(api_settings, job_id) / "runner.log").exists()  # no runner was started without it

    shown = client.get(f"/api/training/jobs/{job_id}", headers=tenant.headers).json()
    assert shown["status"] == "failed" and "hf_token" in str(shown["error"]) and "submit the job again" in str(
        shown["error"])
    native = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()
    assert native["status"] == "failed" and native["error"]["error_type"] == "user_error", native
    assert native["error"]["details"] == {"missing_secrets": ["hf_token"]}


def test_a_retried_submission_holds_its_secret_under_the_first_jobs_handle(db: Database) -> None:
    """The same idempotency key returns the earlier job: the token is held again for it (its process may
    have lost it), and nothing is left held for a job that was never made."""
    first = job_secrets.hold(db, {"hf_token": "one"})
    job = Job(id="job_x", labels=dict(first))
    job_secrets.settle(db, first, job)  # the job made with it: kept
    assert job_secrets.runner_environment(db, job.labels) == ({"HF_TOKEN": "one"}, [])
    job_secrets.forget(db, job.labels)  # say this process lost it
    assert job_secrets.runner_environment(db, job.labels) == ({}, ["hf_token"])
    retry = job_secrets.hold(db, {"hf_token": "two"})
    job_secrets.settle(db, retry, job)
    assert job_secrets.runner_environment(db, job.labels) == ({"HF_TOKEN": "two"}, [])
    assert db.secrets.environment(retry[LABEL]["handle"]) is None
    refused = job_secrets.hold(db, {"hf_token": "three"})
    job_secrets.settle(db, refused, None)
    assert db.secrets.environment(refused[LABEL]["handle"]) is None
    assert "two" not in repr(db.secrets) and job_secrets.hold(db, {"hf_token": ""}) == {}
