"""One job through a real worker and runner, read back as the API shows it (training-tier tests)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tuneyard.api.schemas.jobs import JobPublic
from tuneyard.scheduler import claim
from tuneyard.services import jobs as job_service
from tuneyard.settings import Settings
from tuneyard.store import Database, jobs, tenancy
from tuneyard.worker.loop import Worker

RunDirHook = Callable[[Path], None]


def run_job_once(db: Database, settings: Settings, config: dict[str, Any], *, max_retries: int = 3,
                 before: RunDirHook | None = None, during: RunDirHook | None = None) -> dict[str, Any]:
    """Queue one job, let a worker run one attempt of it, and return the job as the API shows it.

    `before` sees the run folder before the worker claims the job; `during`, while its runner runs.
    """
    org = tenancy.create_org(db, "acme").id
    job_id = jobs.create_job(db, jobs.NewJob(org, "finetune", {"base_model": config["base_model"]}, config,
                                             max_retries=max_retries)).job.id
    if before is not None:
        before(settings.data_dir / "runs" / job_id)
    claimed = claim(db, "test-worker", settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job_id
    thread = threading.Thread(target=Worker(db, settings, os.environ).run_job, args=(claimed, threading.Event()))
    thread.start()
    if during is not None:
        during(settings.data_dir / "runs" / job_id)
    thread.join(timeout=300)
    assert not thread.is_alive()
    return JobPublic.of(job_service.get_job(db, settings, org, job_id)).model_dump(mode="json")
