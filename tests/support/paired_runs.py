"""Paired real runs that hold the time estimate to what a calibrated worker measures (issue 13).

For each setting a job is submitted to the service under test; its worker runs it (the calibrating
run) while a second service on the same host, with its own database, runs the same resolved job
(the predicted run). Both meet the same load, so the comparison measures the estimator rather than
the neighbours; the twin's result calibrates nothing. After both finish, POST /v1/estimate of that
setting, calibrated on the service's own finished jobs, is compared with the twin's
`compute.train_seconds`, the seconds of the optimizer steps alone (`time.train_seconds` predicts
those; loading and evaluation are no FLOP count's business). tests/training/test_time_estimates.py
says why each part of this design is there. A test module binds the fixtures by name
(`api_settings, twin = paired_runs.api_settings, paired_runs.twin`) beside tests/support/api.py's.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.api import Tenant, upload
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import jobs, make_engine, migrate, tenancy
from tuneyard.store.engine import Database
from tuneyard.worker.loop import Worker

Setting = tuple[str, int, int]
"""A method, batch size and sequence length."""


@dataclass(frozen=True)
class Timed:
    """One setting's estimate against its predicted run's measurement."""

    setting: Setting
    predicted_seconds: float
    measured_seconds: float
    source: str
    """The estimate's `time.source`: which of the service's jobs calibrated it."""

    @property
    def error(self) -> float:
        return (self.predicted_seconds - self.measured_seconds) / self.measured_seconds

    def __str__(self) -> str:
        method, batch, seq = self.setting
        return (f"{method} {batch}x{seq}: estimated {self.predicted_seconds:.1f} s, measured "
                f"{self.measured_seconds:.1f} s ({100 * self.error:+.1f} %)")


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """The service under test (tests/support/api.py's `app` runs on it): room for a few hundred chats."""
    return settings.with_overrides(max_upload_bytes=1 << 20)


@pytest.fixture
def twin(tmp_path: Path, model_cache: Path) -> Iterator[tuple[Database, Settings]]:
    """A second service on the same host, whose worker runs the predicted jobs."""
    settings = Settings(data_dir=tmp_path / "twin", model_cache_dir=model_cache, runner_nice=0)
    settings.data_dir.mkdir(parents=True)
    database = Database(make_engine(settings))
    migrate(database.engine)
    yield database, settings
    database.dispose()


def create_dataset(client: TestClient, tenant: Tenant, rows: list[dict[str, Any]]) -> str:
    """A ready dataset of these chat rows; its id."""
    file = upload(client, tenant, "".join(json.dumps(r) + "\n" for r in rows).encode())
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": "sums", "file_ids": [file["id"]]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def time_settings(client: TestClient, tenant: Tenant, db: Database, settings: Settings,
                  twin: tuple[Database, Settings], bodies: dict[Setting, dict[str, Any]]) -> list[Timed]:
    """Run each job body paired as the module docstring says, in order; each setting's estimate and measurement."""
    timed = []
    for setting, body in bodies.items():
        response = client.post("/v1/jobs", headers=tenant.headers, json=body)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        calibrating: dict[str, Any] = {}
        predicted: dict[str, Any] = {}  # the same job as the service resolved it, run by the twin
        runs = [threading.Thread(target=_run_queued, args=(db, settings, job_id, calibrating)),
                threading.Thread(target=_run_on_twin, args=(twin, jobs.load_job(db, job_id).config, predicted))]
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        assert calibrating["status"] == predicted["status"] == "completed", (calibrating, predicted)
        time = client.post("/v1/estimate", headers=tenant.headers, json=body).json()["time"]
        assert time["calibrated"], time
        measured = predicted["result"]["compute"]
        timed.append(Timed(setting, time["train_seconds"], measured["train_seconds"], time["source"]))
        print(f"{timed[-1]}; ran {measured['micro_batch_tokens']} tokens a micro-batch; calibrated on "
              f"{time['source']}", flush=True)
    return timed


def _run_on_twin(twin: tuple[Database, Settings], config: dict[str, Any], out: dict[str, Any]) -> None:
    """Run a job of this resolved `config` through the twin's worker; its result into `out`."""
    db, settings = twin
    org = tenancy.create_org(db, "twin").id
    job_id = jobs.create_job(db, jobs.NewJob(org, "finetune", {"base_model": config["base_model"]}, config)).job.id
    _run_queued(db, settings, job_id, out)


def _run_queued(db: Database, settings: Settings, job_id: str, out: dict[str, Any]) -> None:
    """Let a real worker run the queued job `job_id`; its status and result into `out`."""
    claimed = claim(db, "time-worker", settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    Worker(db, settings, os.environ).run_job(claimed, threading.Event())
    job = jobs.load_job(db, job_id)
    out["status"], out["result"] = job.status, job.result
