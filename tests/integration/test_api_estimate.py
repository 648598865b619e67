"""POST /v1/estimate: a job's memory, time and cost before it is queued, checked as a submission is."""

from __future__ import annotations

from time import monotonic, sleep
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, job_body, ready_dataset
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database
from tuneyard.store.jobs import load_job

app, client, tenant = api.app, api.client, api.tenant


@pytest.fixture
def api_settings(settings: Settings) -> Settings:
    """Priced CPU hours, so an estimate has a cost."""
    return settings.with_overrides(price_per_cpu_hour=3.6)


def estimate(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/estimate", headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def finish_with_compute(client: TestClient, db: Database, tenant: Tenant, flops: float, seconds: float,
                        memory_error_pct: float = 0.0, micro_batch_tokens: float | None = None) -> None:
    """A job a worker completed on host 'box', its result recording what the runner measured."""
    dataset = ready_dataset(client, tenant, name=f"calibrate-{flops}")
    job = create_job(client, tenant, dataset["id"])
    claimed = claim(db, "box-1-abc", 60)
    assert claimed is not None and claimed.job_id == job["id"]
    lifecycle.start(db, job["id"], claimed.attempt)
    lifecycle.finalize(db, job["id"], claimed.attempt)
    result = {"compute": {"train_flops": flops, "train_seconds": seconds, "device": "cpu", "host": "box",
                          "micro_batch_tokens": micro_batch_tokens},
              "compute_seconds": seconds + 4.0, "memory": {"error_pct": memory_error_pct}}
    lifecycle.complete(db, job["id"], claimed.attempt, result, None)


def test_the_breakdown_of_a_lora_job_sums_to_its_peak(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    body = job_body(dataset["id"], hyperparams={"max_steps": 5, "batch_size": 2, "max_seq_length": 64})
    answer = estimate(client, tenant, body)
    memory = answer["memory"]
    assert answer["model_params"] == 1_049_728 and answer["method"] == "lora"
    assert memory["peak_bytes"] == sum(memory["components"].values())
    assert memory["components"]["weights"] > 0 and memory["components"]["lora"] > 0
    assert memory["components"]["trainable_weights"] == 0
    assert answer["run"]["steps"] == 5 and answer["run"]["flops"] > 0
    # no worker has finished a job: no measured throughput to divide by, and it says so
    assert not answer["time"]["calibrated"] and "no cpu worker" in answer["time"]["source"]


def test_before_any_job_has_finished_a_probe_of_this_host_gives_a_first_figure(
    client: TestClient, tenant: Tenant
) -> None:
    """The probe runs beside the request (importing torch takes seconds): an estimate asked while it runs
    says so within its budget; once measured, the figure divides the job's FLOPs, uncalibrated."""
    dataset = ready_dataset(client, tenant)
    # Enough steps that the figure cannot round to 0.0 s on a fast host (5 steps: 0.03 s at the 7.6 GFLOP/s
    # one quiet probe measured); nothing trains, so the steps cost nothing here.
    body = job_body(dataset["id"], hyperparams={"max_steps": 2000, "batch_size": 2, "max_seq_length": 64})
    deadline = monotonic() + 300
    while (answer := estimate(client, tenant, body))["time"]["seconds"] is None:
        assert "being measured" in answer["time"]["source"] and answer["cost"]["usd"] is None, answer["time"]
        assert monotonic() < deadline, "the probe never finished"
        sleep(1)
    time = answer["time"]
    assert not time["calibrated"] and "no cpu worker" in time["source"]
    assert "timed steps of one of the model's layers" in time["source"], time
    assert time["seconds"] == round(answer["run"]["flops"] / time["flops_per_second"], 1) > 0
    assert time["low"] < time["seconds"] < time["high"]
    assert answer["cost"]["low"] < answer["cost"]["usd"] < answer["cost"]["high"]
    # measured once a process: the next answer divides by the same figure (a new probe would not)
    assert estimate(client, tenant, body)["time"] == time


def test_time_and_cost_follow_the_workers_measured_throughput(client: TestClient, db: Database, tenant: Tenant) -> None:
    for flops in (1e9, 3e9, 2e9):  # 1, 3 and 2 GFLOP/s: the median is 2
        finish_with_compute(client, db, tenant, flops, seconds=1.0)
    dataset = ready_dataset(client, tenant, name="to-estimate")
    answer = estimate(client, tenant, job_body(dataset["id"], method="full"))
    time = answer["time"]
    assert time["calibrated"] and time["flops_per_second"] == 2e9
    assert time["seconds"] == round(answer["run"]["flops"] / 2e9 + 4.0, 1)  # steps + the jobs' overhead
    assert set(time["by_host"]) == {"box"}
    assert time["low"] < time["seconds"] < time["high"]
    assert answer["cost"]["usd"] == round(time["seconds"] / 3600 * 3.6, 4)


def test_time_is_read_off_the_jobs_nearest_in_micro_batch_tokens(client: TestClient, db: Database,
                                                                 tenant: Tenant) -> None:
    # the host's LoRA jobs ran 256 and 1,024 tokens a micro-batch, at 1 and 4 GFLOP/s
    finish_with_compute(client, db, tenant, 1e9, seconds=1.0, micro_batch_tokens=256.0)
    finish_with_compute(client, db, tenant, 4e9, seconds=1.0, micro_batch_tokens=1024.0)
    dataset = ready_dataset(client, tenant, name="to-estimate")

    def time_at(batch: int, seq: int) -> dict[str, Any]:
        hyperparams = {"max_steps": 5, "batch_size": batch, "max_seq_length": seq, "packing": True}
        result: dict[str, Any] = estimate(client, tenant, job_body(dataset["id"], hyperparams=hyperparams))["time"]
        return result

    between = time_at(2, 256)  # 512 packed tokens: halfway in log tokens, the geometric mean
    assert between["flops_per_second"] == pytest.approx(2e9) and "between" in between["source"], between
    alike = time_at(4, 256)
    assert alike["flops_per_second"] == 4e9 and "like this one" in alike["source"], alike


def test_an_estimate_is_refused_as_a_submission_would_be(client: TestClient, tenant: Tenant) -> None:
    response = client.post("/v1/estimate", headers=tenant.headers, json={
        "base_model": "no-such-model", "datasets": [{"name": "missing"}], "hyperparams": {"batch_size": 0}})
    assert response.status_code == 422, response.text
    fields = {p["field"] for p in response.json()["error"]["details"]["problems"]}
    assert {"base_model", "datasets.0", "hyperparams.batch_size"} <= fields


def test_stats_show_how_the_memory_estimates_held(client: TestClient, db: Database, tenant: Tenant) -> None:
    empty = client.get("/v1/stats", headers=tenant.headers).json()["memory_estimates"]
    assert empty["jobs"] == 0 and empty["mean_abs_error_pct"] is None
    for flops, error in ((1e9, 10.0), (2e9, -4.0)):
        finish_with_compute(client, db, tenant, flops, seconds=1.0, memory_error_pct=error)
    held = client.get("/v1/stats", headers=tenant.headers).json()["memory_estimates"]
    assert held == {"jobs": 2, "mean_error_pct": 3.0, "mean_abs_error_pct": 7.0, "worst_abs_error_pct": 10.0}


def test_a_train_jobs_runner_prices_its_result_at_the_configured_price(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    dataset = ready_dataset(client, tenant, name="to-grow")
    body = {"type": "train", "base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}],
            "price_per_device_hour": 99.0}  # the service's price, not the caller's
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 201, response.text
    assert load_job(db, response.json()["id"]).config["price_per_device_hour"] == 3.6


def test_the_estimate_counts_an_epochs_steps_as_the_engine_does(client: TestClient, tenant: Tenant) -> None:
    """batch_size x accumulation examples a step (padding-free, the default): 20 examples, 2 held
    out by eval_split 0.1, batch 4 and accumulation 2 → ceil(ceil(18 / 4) / 2) = 3 steps an epoch."""
    dataset = ready_dataset(client, tenant, name="twenty", examples=20)
    hyperparams = {"epochs": 2, "batch_size": 4, "gradient_accumulation_steps": 2, "eval_split": 0.1,
                   "max_seq_length": 64}
    answer = estimate(client, tenant, {"base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}],
                                       "hyperparams": hyperparams})
    assert answer["run"]["steps_per_epoch"] == 3 and answer["run"]["steps"] == 6
    batch = answer["batch"]
    assert batch["examples_per_step"] == 8 and not batch["packing"] and batch["line_tokens"] is None
    assert batch["micro_batch"]["rows"] == 1 and not batch["micro_batch"]["several_examples_a_row"]
    assert batch["attention"] == "per example"
    assert "8 examples an optimizer step" in batch["meaning"]
    packed = estimate(client, tenant, {"base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}],
                                       "hyperparams": {**hyperparams, "packing": True}})
    assert packed["batch"]["rows_per_step"] == 8 and packed["batch"]["micro_batch"]["row_tokens"] == 4 * 64  # one line
