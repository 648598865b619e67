"""Memory-aware admission (issue 13): a job waits for a worker with the memory its estimate needs,
with the reason in the API, and one no live worker could hold is refused at submission."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, job_body, ready_dataset
from tests.support.runs import REPO
from tuneyard.scheduler import claim
from tuneyard.scheduler.capacity import Capacity, format_bytes
from tuneyard.scheduler.workers import register_worker
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.jobs import NewJob
from tuneyard.store.jobs import create_job as store_create_job
from tuneyard.worker.loop import Worker

app, client, tenant = api.app, api.client, api.tenant

SMALL = {"method": "lora", "hyperparams": {"max_steps": 2, "batch_size": 1, "max_seq_length": 32}}
BIG = {"method": "full", "hyperparams": {"max_steps": 2, "batch_size": 4, "max_seq_length": 512, "packing": True}}
HUGE = {"method": "full", "hyperparams": {"max_steps": 2, "batch_size": 64, "max_seq_length": 4096, "packing": True}}


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """The shared model cache, so the workers' runners find tiny-llama made."""
    (REPO / ".cache" / "models").mkdir(parents=True, exist_ok=True)
    return settings.with_overrides(model_cache_dir=REPO / ".cache" / "models", runner_nice=0, poll_seconds=0.2)


def peak(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> int:
    response = client.post("/v1/estimate", headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    bytes_: int = response.json()["memory"]["peak_bytes"]
    return bytes_


def submit(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


@contextmanager
def running(worker: Worker) -> Iterator[None]:
    shutdown = threading.Event()
    thread = threading.Thread(target=worker.run, args=(shutdown,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        shutdown.set()
        thread.join(timeout=120)


def wait_for(client: TestClient, tenant: Tenant, job_id: str, status: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()
        if job["status"] == status or job["status"] in ("failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not {status} in {timeout}s: {job}")


def test_a_big_job_waits_for_the_big_worker_with_the_reason_in_the_api(
        client: TestClient, tenant: Tenant, db: Database, api_settings: Settings) -> None:
    dataset = ready_dataset(client, tenant)
    small_body, big_body = (job_body(dataset["id"], **SMALL), job_body(dataset["id"], **BIG))
    small_need, big_need = peak(client, tenant, small_body), peak(client, tenant, big_body)
    assert small_need < big_need
    small = Worker(db, api_settings, os.environ, worker_id="small-worker",
                   capacity=Capacity((small_need + big_need) // 2, "cpu", "test"))
    big = Worker(db, api_settings, os.environ, worker_id="big-worker",
                 capacity=Capacity(big_need + (100 << 20), "cpu", "test"))
    for worker in (small, big):  # both registered and alive; only the small one works at first
        register_worker(db, worker.id, memory_bytes=worker.capacity.memory_bytes, device="cpu")

    big_job = submit(client, tenant, big_body)  # queued first: the oldest, yet the small worker passes it over
    small_job = submit(client, tenant, small_body)
    reason = f"waiting for a worker with ≥ {format_bytes(big_need)}"
    assert big_job["waiting_reason"] == reason
    assert small_job["waiting_reason"] is None

    with running(small):
        done = wait_for(client, tenant, small_job["id"], "completed")
        assert done["status"] == "completed", done
        time.sleep(3 * api_settings.poll_seconds)  # the small worker looks again, and passes the big job over
        waiting = client.get(f"/v1/jobs/{big_job['id']}", headers=tenant.headers).json()
        assert waiting["status"] == "queued" and waiting["waiting_reason"] == reason
        listed = client.get("/v1/jobs", headers=tenant.headers, params={"status": "queued"}).json()["data"]
        assert [(j["id"], j["waiting_reason"]) for j in listed] == [(big_job["id"], reason)]

    with running(big):
        done = wait_for(client, tenant, big_job["id"], "completed")
    assert done["status"] == "completed", done
    assert done["waiting_reason"] is None
    claims = client.get(f"/v1/jobs/{big_job['id']}/events", headers=tenant.headers).json()["data"]
    assert [e["message"] for e in claims if e["type"] == "claimed"] == ["claimed by big-worker"]


def test_a_job_too_big_for_every_live_worker_is_refused_with_its_estimate(
        client: TestClient, tenant: Tenant, db: Database) -> None:
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], **HUGE)
    need = peak(client, tenant, body)
    register_worker(db, "small-1", memory_bytes=need // 4, device="cpu")
    register_worker(db, "small-2", memory_bytes=need // 2, device="cpu")
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 422, response.text
    [problem] = response.json()["error"]["details"]["problems"]
    assert problem["field"] == "hyperparams"
    assert format_bytes(need) in problem["message"] and format_bytes(need // 2) in problem["message"]
    assert problem["estimate"]["peak_bytes"] == need and problem["estimate"]["components"]["optimizer_state"] > 0
    assert client.get("/v1/jobs", headers=tenant.headers).json()["data"] == []  # nothing queued

    register_worker(db, "big-1", memory_bytes=need, device="cpu")  # exactly enough is enough
    job = submit(client, tenant, body)
    assert job["status"] == "queued" and job["waiting_reason"] == f"waiting for a worker with ≥ {format_bytes(need)}"


def test_a_data_parallel_job_needs_its_estimate_once_per_rank_on_a_node(
        client: TestClient, tenant: Tenant, db: Database) -> None:
    """Each rank holds the whole model, its optimizer and its activations: two ranks on a worker's
    machine need twice one process's estimate, and a worker with one and a half times is refused."""
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], **BIG)
    one = peak(client, tenant, body)
    two_ranks = {**body, "distributed": {"num_processes": 2}}
    assert peak(client, tenant, two_ranks) == one  # the estimate is one process's, as before
    register_worker(db, "one-and-a-half", memory_bytes=one * 3 // 2, device="cpu")
    response = client.post("/v1/jobs", headers=tenant.headers, json=two_ranks)
    assert response.status_code == 422, response.text
    [problem] = response.json()["error"]["details"]["problems"]
    assert f"needs {format_bytes(2 * one)} by its estimate (2 processes of {format_bytes(one)} each)" in (
        problem["message"]), problem["message"]
    assert submit(client, tenant, body)["waiting_reason"] is None  # one process fits that worker

    register_worker(db, "two", memory_bytes=2 * one, device="cpu")
    job = submit(client, tenant, two_ranks)
    assert job["status"] == "queued" and job["waiting_reason"] == f"waiting for a worker with ≥ {format_bytes(2 * one)}"
    claimed = claim(db, "one-and-a-half", 30, memory_bytes=one * 3 // 2)
    assert claimed is not None and claimed.job_id != job["id"]  # it takes the one-process job only
    assert claim(db, "one-and-a-half", 30, memory_bytes=one * 3 // 2) is None
    claimed = claim(db, "two", 30, memory_bytes=2 * one)
    assert claimed is not None and claimed.job_id == job["id"] and claimed.memory_estimate_bytes == 2 * one


def test_with_no_live_worker_nothing_is_refused_and_a_claim_without_memory_takes_anything(
        client: TestClient, tenant: Tenant, db: Database) -> None:
    dataset = ready_dataset(client, tenant)
    job = submit(client, tenant, job_body(dataset["id"], **HUGE))
    assert job["waiting_reason"] is None  # no worker to compare with
    assert claim(db, "tiny", 30, memory_bytes=1 << 20) is None  # 1 MiB holds no estimate
    claimed = claim(db, "unknown-memory", 30)
    assert claimed is not None and claimed.job_id == job["id"]


def test_a_job_without_an_estimate_is_claimed_by_any_worker(db: Database, org_id: str) -> None:
    """Jobs queued before admission knew memory (or of a type nothing estimates) keep NULL."""
    queued = store_create_job(db, NewJob(org_id=org_id, type="merge", spec={}, config={})).job
    assert queued.memory_estimate_bytes is None
    claimed = claim(db, "tiny", 30, memory_bytes=1)
    assert claimed is not None and claimed.job_id == queued.id
