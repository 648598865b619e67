"""cost_usd on every result (issue 13): a real finetune job, run by a real worker, is priced at the
configured price of the device it ran on, and its cost shows in the job and in job lists."""

from __future__ import annotations

import os
import threading

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tests.support.runs import REPO
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.worker.loop import Worker

app, client, tenant = api.app, api.client, api.tenant

PRICE = 36.0  # USD per CPU hour: a cent every second, so a few seconds of training cost something visible


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    (REPO / ".cache" / "models").mkdir(parents=True, exist_ok=True)
    return settings.with_overrides(model_cache_dir=REPO / ".cache" / "models", runner_nice=0,
                                   price_per_cpu_hour=PRICE, price_per_cuda_hour=2 * PRICE)


def test_a_finetune_result_is_priced_and_its_cost_listed(client: TestClient, tenant: Tenant, db: Database,
                                                        api_settings: Settings) -> None:
    dataset = ready_dataset(client, tenant)
    job = create_job(client, tenant, dataset["id"], hyperparams={"max_steps": 2})
    assert job["cost_usd"] is None  # nothing spent yet
    claimed = claim(db, "test-worker", api_settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job["id"]
    worker = Worker(db, api_settings, os.environ)
    worker.run_job(claimed, threading.Event())
    done = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()
    assert done["status"] == "completed", done
    result = client.get(f"/v1/jobs/{job['id']}/result", headers=tenant.headers).json()
    price = 2 * PRICE if worker.capacity.device == "cuda" else PRICE
    assert result["price_per_device_hour"] == price
    assert result["cost_usd"] == round(result["compute_seconds"] / 3600 * price, 6) and result["cost_usd"] > 0
    assert done["cost_usd"] == result["cost_usd"]
    listed = client.get("/v1/jobs", headers=tenant.headers).json()["data"]
    assert [(j["id"], j["cost_usd"]) for j in listed] == [(job["id"], result["cost_usd"])]
