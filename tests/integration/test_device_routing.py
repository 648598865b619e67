"""A job may require a device (document 003's `backend: cpu|cuda`): only a worker of that device claims
it, the jobs behind it are not held up, and one whose device no live worker has any more waits queued
saying why. On both databases; nothing trains (the claim is the store's, the runner's choice of device
is tests/training/test_device_choice.py)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.integration.test_dialect_agent_training import build, ingest, submit
from tests.support import api
from tests.support.api import Tenant
from tuneyard.scheduler import claim
from tuneyard.scheduler.capacity import host_device
from tuneyard.scheduler.workers import register_worker, set_worker_state
from tuneyard.services import devices
from tuneyard.settings import Settings
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database
from tuneyard.store.tables import Job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

ELSEWHERE = "cpu" if host_device() == "cuda" else "cuda"
"""The device this host's workers do not train on."""


def status_of(db: Database, job_id: str) -> str:
    with db.read() as session:
        return session.scalars(select(Job.status).where(Job.id == job_id)).one()


def test_a_cpu_worker_passes_over_a_cuda_job_and_takes_the_jobs_behind_it(
        db: Database, new_job: Callable[..., str]) -> None:
    cuda_job = new_job(required_device="cuda")  # the oldest: a cpu worker must not wait behind it
    cpu_job, any_job = new_job(required_device="cpu"), new_job()
    taken = [c.job_id for c in iter(lambda: lifecycle.claim(db, "cpu-worker", 30, device="cpu"), None)]
    assert taken == [cpu_job, any_job]
    assert status_of(db, cuda_job) == "queued"
    gpu = lifecycle.claim(db, "cuda-worker", 30, device="cuda")
    assert gpu is not None and gpu.job_id == cuda_job


def test_a_cuda_worker_takes_cuda_jobs_and_jobs_that_require_none_oldest_first(
        db: Database, new_job: Callable[..., str]) -> None:
    first, cpu_job, cuda_job = new_job(), new_job(required_device="cpu"), new_job(required_device="cuda")
    taken = [c.job_id for c in iter(lambda: lifecycle.claim(db, "cuda-worker", 30, device="cuda"), None)]
    assert taken == [first, cuda_job]
    left = lifecycle.claim(db, "cpu-worker", 30, device="cpu")
    assert left is not None and left.job_id == cpu_job


def test_a_worker_that_declares_no_device_claims_as_this_hosts(
        db: Database, settings: Settings, new_job: Callable[..., str]) -> None:
    elsewhere, here = new_job(required_device=ELSEWHERE), new_job(required_device=host_device())
    claimed = claim(db, "undeclared", 30)
    assert claimed is not None and claimed.job_id == here
    assert claim(db, "undeclared", 30) is None and status_of(db, elsewhere) == "queued"
    with db.read() as session:  # no worker registered: what one started here would train on
        reasons = devices.waiting_reasons(session, settings, list(session.scalars(select(Job))))
    assert reasons == {elsewhere: f"waiting for a worker that trains on {ELSEWHERE}; no worker is live, and one "
                                  f"started here would train on {host_device()}"}


def test_racing_workers_of_both_devices_take_each_job_once_and_only_their_devices(
        db: Database, open_db: Callable[[], Database], new_job: Callable[..., str]) -> None:
    """PostgreSQL's FOR UPDATE SKIP LOCKED (SQLite's BEGIN IMMEDIATE) with the device in the filter."""
    required = {new_job(required_device=("cpu", "cuda", None)[i % 3]): ("cpu", "cuda", None)[i % 3]
                for i in range(90)}
    workers = [("cpu", i) for i in range(3)] + [("cuda", i) for i in range(3)]
    taken: dict[str, list[str]] = {f"{d}-{i}": [] for d, i in workers}
    errors: list[BaseException] = []
    start = threading.Barrier(len(workers))

    def work(device: str, i: int) -> None:
        own = open_db()
        try:
            start.wait()
            while (job := lifecycle.claim(own, f"{device}-{i}", 60, device=device)) is not None:
                taken[f"{device}-{i}"].append(job.job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=w) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [j for jobs in taken.values() for j in jobs]
    assert Counter(every) == Counter(required.keys())  # each exactly once
    assert all(required[j] in (None, worker.split("-")[0]) for worker, jobs in taken.items() for j in jobs)


def test_003s_backend_cpu_is_required_of_the_job_and_its_runner(
        client: TestClient, tenant: Tenant, db: Database) -> None:
    ingest(client, tenant, 2)
    build(client, tenant)
    register_worker(db, "cpu-worker", device="cpu")
    answer = submit(client, tenant, {"backend": "cpu", "model": "tiny-llama", "iterations": 2})
    assert answer.status_code == 201, answer.text
    native = submit(client, tenant, {"backend": "native", "model": "tiny-llama", "iterations": 2}).json()
    with db.read() as session:
        rows = {r.id: r for r in session.scalars(select(Job))}
    cpu_job = rows[answer.json()["job_id"]]
    assert cpu_job.required_device == "cpu" and cpu_job.config["device"] == "cpu"  # the runner's spec.json has it
    assert rows[native["job_id"]].required_device is None and "device" not in rows[native["job_id"]].config
    assert answer.json()["job"]["backend"] == "cpu" and answer.json()["job"]["waitingReason"] is None


def test_a_job_whose_devices_workers_left_waits_queued_saying_why(
        client: TestClient, tenant: Tenant, db: Database) -> None:
    ingest(client, tenant, 2)
    build(client, tenant)
    register_worker(db, "gpu-1", device="cuda")
    register_worker(db, "cpu-1", device="cpu")
    job_id = submit(client, tenant, {"backend": "cuda", "model": "tiny-llama", "iterations": 2}).json()["job_id"]
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()["waiting_reason"] is None
    list_tag = client.get("/v1/jobs", headers=tenant.headers).headers["ETag"]

    set_worker_state(db, "gpu-1", "stopped")  # the CUDA worker left
    assert lifecycle.claim(db, "cpu-1", 30, device="cpu") is None  # never trained on the wrong device
    reason = "waiting for a worker that trains on cuda; the live workers train on cpu"
    native = client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()
    assert native["status"] == "queued" and native["waiting_reason"] == reason
    agent = client.get(f"/api/training/jobs/{job_id}", headers=tenant.headers).json()["job"]
    assert agent["status"] == "queued" and agent["waitingReason"] == reason
    listed = client.get("/api/training/jobs", headers=tenant.headers).json()["jobs"]
    assert [j["waitingReason"] for j in listed] == [reason]
    # The job's row did not move, but its list's answer did: the reason is part of the list's ETag too.
    moved = client.get("/v1/jobs", headers={**tenant.headers, "If-None-Match": list_tag})
    assert moved.status_code == 200 and moved.json()["data"][0]["waiting_reason"] == reason
    # And a new one asking for it now is refused, naming the backend (003: absent is 400).
    refused = submit(client, tenant, {"backend": "cuda", "model": "tiny-llama"})
    assert refused.status_code == 400 and refused.json()["error"]["details"]["problems"][0]["field"] == "backend"

    register_worker(db, "gpu-2", device="cuda")  # one comes back: the reason goes, and it takes the job
    assert client.get(f"/v1/jobs/{job_id}", headers=tenant.headers).json()["waiting_reason"] is None
    claimed = lifecycle.claim(db, "gpu-2", 30, device="cuda")
    assert claimed is not None and claimed.job_id == job_id and claimed.config["device"] == "cuda"


def test_memory_is_weighed_against_the_required_devices_workers_only(
        client: TestClient, tenant: Tenant, db: Database) -> None:
    ingest(client, tenant, 2)
    build(client, tenant)
    register_worker(db, "big-cpu", memory_bytes=1 << 40, device="cpu")
    register_worker(db, "tiny-gpu", memory_bytes=1 << 20, device="cuda")  # 1 MiB holds no estimate
    body = {"model": "tiny-llama", "iterations": 2}
    refused = submit(client, tenant, {**body, "backend": "cuda"})
    assert refused.status_code == 400, refused.text
    [problem] = refused.json()["error"]["details"]["problems"]
    assert "the largest cuda worker has 1.1 MB" in problem["message"] and problem["estimate"]["peak_bytes"] > 1 << 20
    assert submit(client, tenant, {**body, "backend": "cpu"}).status_code == 201
    assert submit(client, tenant, {**body, "backend": "native"}).status_code == 201  # the big cpu worker holds it
