"""The time estimate held to real runs of tiny-llama once a worker is calibrated (issue 13).

A real worker runs real tiny-llama jobs (LoRA and full, two batch x sequence-length settings), the
service calibrates on their results, and POST /v1/estimate then predicts a run of each setting that
a worker ran on the same host: the prediction must be within ±30 % of what that run measured.

This machine is shared and loaded (2 cores; load averages of 15-25 while this was written), so the
check is built to measure the estimator, not the neighbours:
- it compares the seconds the runner spent in its optimizer steps (`compute.train_seconds`), what
  the estimate's `time.train_seconds` predicts, not wall time around the run (queueing, process
  start and model loading, which the load stretches by tens of seconds and which no FLOP count
  describes);
- each predicted run runs at the same time as the calibrating run of its setting, on a second
  service's worker (its own database, so its result calibrates nothing), so both meet the same load:
  run one after the other, a slow spell of the host made the same setting 28 % slower five minutes
  later (−33.6 %, +14.3 %, +21.2 %, +1.2 % in the first version of this test);
- each run takes ten steps, so one step slowed by a neighbour moves its total little.
What is held is then the estimator's own part: the FLOPs it counts for a spec against the work the
runner did, and a calibration that picks the host's jobs like the one estimated.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, upload
from tests.support.runs import arithmetic_chat
from tuneyard.scheduler import claim
from tuneyard.services.estimates import TIME_BAND
from tuneyard.settings import Settings
from tuneyard.store import jobs, make_engine, migrate, tenancy
from tuneyard.store.engine import Database
from tuneyard.worker.loop import Worker

app, client, tenant = api.app, api.client, api.tenant

SETTINGS = [("lora", 2, 128), ("full", 2, 128), ("lora", 4, 256), ("full", 4, 256)]
STEPS = 10


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    return settings.with_overrides(max_upload_bytes=1 << 20)


def job_body(dataset_id: str, method: str, batch: int, seq: int) -> dict[str, Any]:
    """Packed rows, so every step holds batch x seq tokens as the estimate counts them."""
    return {"base_model": "tiny-llama", "method": method, "datasets": [{"id": dataset_id}],
            "hyperparams": {"max_steps": STEPS, "batch_size": batch, "max_seq_length": seq, "packing": True,
                            "bf16": False, "learning_rate": 1e-4, "eval_split": 0.05}}


@pytest.fixture
def twin(tmp_path: Path, model_cache: Path) -> Iterator[tuple[Database, Settings]]:
    """A second service on the same host, whose worker runs the predicted jobs."""
    settings = Settings(data_dir=tmp_path / "twin", model_cache_dir=model_cache, runner_nice=0)
    settings.data_dir.mkdir(parents=True)
    database = Database(make_engine(settings))
    migrate(database.engine)
    yield database, settings
    database.dispose()


def run_on_twin(twin: tuple[Database, Settings], config: dict[str, Any], out: dict[str, Any]) -> None:
    """Run a job of this resolved `config` through the twin's worker; its result into `out`."""
    db, settings = twin
    org = tenancy.create_org(db, "twin").id
    job_id = jobs.create_job(db, jobs.NewJob(org, "finetune", {"base_model": config["base_model"]}, config)).job.id
    claimed = claim(db, "twin-worker", settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    Worker(db, settings, os.environ).run_job(claimed, threading.Event())
    job = jobs.load_job(db, job_id)
    out["status"], out["result"] = job.status, job.result


def run_queued(db: Database, settings: Settings, job_id: str, out: dict[str, Any]) -> None:
    """Let a real worker run the queued job `job_id`; its status and result into `out`."""
    claimed = claim(db, "time-worker", settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    Worker(db, settings, os.environ).run_job(claimed, threading.Event())
    job = jobs.load_job(db, job_id)
    out["status"], out["result"] = job.status, job.result


@pytest.mark.timeout(2400)
def test_a_calibrated_worker_times_each_setting_within_the_band(
    client: TestClient, tenant: Tenant, db: Database, api_settings: Settings, twin: tuple[Database, Settings]
) -> None:
    lines = "".join(json.dumps(r) + "\n" for r in arithmetic_chat(800)).encode()
    file = upload(client, tenant, lines)
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": "sums", "file_ids": [file["id"]]})
    assert response.status_code == 201, response.text
    dataset_id = response.json()["id"]

    errors = {}
    for method, batch, seq in SETTINGS:
        body = job_body(dataset_id, method, batch, seq)
        response = client.post("/v1/jobs", headers=tenant.headers, json=body)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        calibrating: dict[str, Any] = {}
        predicted: dict[str, Any] = {}  # the same job as the service resolved it, run by the twin
        runs = [threading.Thread(target=run_queued, args=(db, api_settings, job_id, calibrating)),
                threading.Thread(target=run_on_twin, args=(twin, jobs.load_job(db, job_id).config, predicted))]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        assert calibrating["status"] == predicted["status"] == "completed", (calibrating, predicted)
        time = client.post("/v1/estimate", headers=tenant.headers, json=body).json()["time"]
        assert time["calibrated"] and "like this one" in time["source"], time
        measured = predicted["result"]["compute"]["train_seconds"]
        errors[(method, batch, seq)] = (time["train_seconds"] - measured) / measured
    print("time estimate error per setting:", {k: f"{100 * e:+.1f} %" for k, e in errors.items()})
    assert all(abs(e) <= TIME_BAND for e in errors.values()), errors
