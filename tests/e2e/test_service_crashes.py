"""Kill the runner, the worker or the whole service mid-training: the job is not lost, it
resumes from its last checkpoint and ends bit for bit where a separate, uninterrupted run of the
same spec ends, started from a cold model cache."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from tests.e2e.test_service_jobs import EXAMPLES, HYPERPARAMS, step_of, submit
from tests.support.runs import final_tensors, run_runner, step_losses
from tests.support.service import Service, runner_pids, wait_until
from tuneyard.client import TuneyardClient

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# 58 training examples at 8 a step: 32 steps, a checkpoint every 3, for a kill to land mid-run.
LONG = {"epochs": 4, "save_steps": 3}


def wait_mid_training(client: TuneyardClient, job_id: str) -> dict[str, Any]:
    """Until a checkpoint is committed and training has gone past it."""
    def ready() -> dict[str, Any] | None:
        job = client.get_job(job_id)
        ckpt = job.get("last_checkpoint_step")
        return job if ckpt and step_of(client, job_id) > ckpt else None

    return wait_until(ready, interval=0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A separate, uninterrupted run of the same spec as the jobs here: the bare runner on the
    request as a user writes it (not a job's resolved spec.json), from a cold model cache."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    spec = {"type": "finetune", "base_model": "tiny-llama", "method": "lora",
            "datasets": [{"path": str(EXAMPLES)}], "hyperparams": {**HYPERPARAMS, **LONG}}
    (folder / "job.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    assert run_runner(folder / "job.yaml", folder / "run", folder / "cold-cache", timeout=600) == 0
    return folder / "run"


def assert_matches_uninterrupted(service: Service, job_id: str, reference: Path) -> None:
    """The crashed and resumed job ends with the weights and step losses of the separate run."""
    run_dir = service.data_dir / "runs" / job_id
    expected, actual = final_tensors(reference), final_tensors(run_dir)
    assert expected.keys() == actual.keys() and expected
    for name, tensor in expected.items():
        assert torch.equal(tensor, actual[name]), name
    assert step_losses(run_dir) == step_losses(reference)


def finish(client: TuneyardClient, job_id: str) -> dict[str, Any]:
    done = client.wait(job_id, timeout=300)
    assert done["status"] == "completed", done
    assert done["retries"] == 1
    return done


def test_runner_killed(service: Service, uninterrupted: Path) -> None:
    service.start_serve()
    client = service.client()
    job = submit(client, **LONG)
    wait_mid_training(client, job["id"])
    [pid] = runner_pids(service.data_dir / "runs" / job["id"])
    # Below the service's own priority (the default nice 10), so the API answers first.
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    os.kill(pid, signal.SIGKILL)
    finish(client, job["id"])
    events = client.events(job["id"])
    assert any(e["type"] == "retrying" for e in events)
    assert_matches_uninterrupted(service, job["id"], uninterrupted)


def test_worker_process_killed(service: Service, uninterrupted: Path) -> None:
    service.start_serve(workers=0)
    client = service.client()
    first = service.start_worker()
    job = submit(client, **LONG)
    wait_mid_training(client, job["id"])
    run_dir = service.data_dir / "runs" / job["id"]
    assert len(runner_pids(run_dir)) == 1
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_until(lambda: not runner_pids(run_dir), timeout=10)  # the orphaned runner follows its worker
    service.start_worker()
    finish(client, job["id"])
    assert any(e["type"] == "lease_expired" for e in client.events(job["id"]))
    assert_matches_uninterrupted(service, job["id"], uninterrupted)


def test_serve_killed_and_restarted(service: Service, uninterrupted: Path) -> None:
    serve = service.start_serve()
    client = service.client()
    job = submit(client, **LONG)
    wait_mid_training(client, job["id"])
    run_dir = service.data_dir / "runs" / job["id"]
    serve.send_signal(signal.SIGKILL)
    serve.wait()
    wait_until(lambda: not runner_pids(run_dir), timeout=10)
    service.start_serve()
    finish(client, job["id"])
    assert_matches_uninterrupted(service, job["id"], uninterrupted)


