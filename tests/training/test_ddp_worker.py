"""A two-rank job through a real worker: the local executor launches it through torchrun, the user's
stop reaches every rank and leaves a resumable job, and the resumed attempt completes."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from tests.support.runs import EXACT_HYPERPARAMS, arithmetic_chat, step_losses, telemetry, wait_for, write_jsonl
from tuneyard.scheduler import claim
from tuneyard.services import jobs as job_service
from tuneyard.settings import Settings
from tuneyard.store import Database, jobs, tenancy
from tuneyard.worker.loop import Worker


def _attempt(db: Database, settings: Settings, job_id: str) -> threading.Thread:
    claimed = claim(db, "test-worker", settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    thread = threading.Thread(target=Worker(db, settings, os.environ).run_job, args=(claimed, threading.Event()))
    thread.start()
    return thread


def test_a_two_rank_job_is_stopped_through_the_worker_and_resumed(db: Database, tmp_path: Path,
                                                                  model_cache: Path) -> None:
    # Two threads for the runner, one for each rank; the supervisor reads the stop request at each heartbeat.
    settings = Settings(data_dir=tmp_path / "data", model_cache_dir=model_cache, runner_nice=0, runner_threads=2,
                        heartbeat_seconds=0.5)
    data = write_jsonl(tmp_path / "chat.jsonl", arithmetic_chat(24))
    config: dict[str, Any] = {
        "type": "finetune", "base_model": "tiny-llama", "datasets": [{"path": str(data), "format": "auto"}],
        "method": "lora", "hyperparams": {**EXACT_HYPERPARAMS, "max_steps": 60, "save_steps": 2},
        "distributed": {"strategy": "ddp", "num_processes": 2, "num_nodes": 1},
    }  # fmt: skip
    org = tenancy.create_org(db, "acme").id
    job_id = jobs.create_job(db, jobs.NewJob(org, "finetune", {"base_model": "tiny-llama"}, config)).job.id
    run_dir = settings.data_dir / "runs" / job_id

    thread = _attempt(db, settings, job_id)
    wait_for(lambda: max(step_losses(run_dir), default=0) >= 3 or not thread.is_alive())
    job_service.stop_job(db, settings, org, job_id)
    thread.join(timeout=300)
    stopped = job_service.get_job(db, settings, org, job_id)
    assert stopped.status == "stopped", (run_dir / "runner.log").read_text()
    logs = [r["message"] for r in telemetry(run_dir) if r["kind"] == "log"]
    assert any("data-parallel on 2 processes" in line for line in logs), logs
    stopped_at = max(step_losses(run_dir))
    assert stopped_at < 60 and (run_dir / "checkpoints" / f"step-{stopped_at:06d}" / "manifest.json").exists()

    job_service.resume_job(db, settings, org, job_id)
    thread = _attempt(db, settings, job_id)
    thread.join(timeout=300)
    done = job_service.get_job(db, settings, org, job_id)
    assert done.status == "completed", (run_dir / "runner.log").read_text()
    assert sorted(step_losses(run_dir)) == list(range(1, 61))
    assert (run_dir / "final" / "manifest.json").exists()
