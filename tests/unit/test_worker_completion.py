"""A completed job stores the outputs its job type declares: its model at final/, or none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.store import memory_database
from tuneyard.spec import jobtypes
from tuneyard.spec.job import MergeSpec
from tuneyard.spec.jobtypes import JobTypeEntry
from tuneyard.spec.registry import Registry
from tuneyard.store import Database, catalog, jobs, lifecycle, tenancy
from tuneyard.store.tables import Job
from tuneyard.worker.outcome import ExitStatus, Outcome, Verdict
from tuneyard.worker.store_reporter import StoreReporter

RESULT = {"kind": "result", "ts": 1.0e9, "ppl_final": 3.5, "steps": 4}


def complete(db: Database, tmp_path: Path, lineage: dict[str, Any]) -> tuple[str, Job]:
    """One job claimed, started and completed through the worker's reporter."""
    org_id = tenancy.create_org(db, "o").id
    job_id = jobs.create_job(db, jobs.NewJob(org_id=org_id, type=lineage["type"], spec={}, config={})).job.id
    claimed = lifecycle.claim(db, "w1", lease_seconds=30, device="cpu")
    assert claimed is not None and claimed.job_id == job_id
    reporter = StoreReporter(db, job_id, claimed.attempt, tmp_path / job_id, 30, lineage)
    reporter.on_started("local pid 12345")
    reporter.on_finished(Outcome(Verdict.COMPLETED, ExitStatus(0), "completed", result=RESULT))
    job = jobs.get_job(db, org_id, job_id)
    # priced by the reporter (no compute seconds here, so no cost; no price set, so 0)
    assert job.status == "completed" and job.result == {"ppl_final": 3.5, "steps": 4, "cost_usd": None,
                                                        "price_per_device_hour": 0.0}
    return org_id, job


@pytest.mark.parametrize(("method", "kind"), [("lora", "adapter"), ("full", "full")])
def test_a_finetune_registers_its_methods_model_at_final(tmp_path: Path, method: str, kind: str) -> None:
    db = memory_database()
    lineage = {"type": "finetune", "method": method, "base_model": "tiny-llama", "datasets": [{"id": "ds_1"}]}
    org_id, job = complete(db, tmp_path, lineage)
    assert job.output_model_id is not None
    model = catalog.get_trained_model(db, org_id, job.output_model_id)
    assert (model.kind, model.path, model.job_id) == (kind, str(tmp_path / job.id / "final"), job.id)
    assert (model.base_model, model.datasets) == ("tiny-llama", [{"id": "ds_1"}])
    assert model.meta == {"method": method, "job_type": "finetune"}


def test_a_job_type_that_declares_no_model_registers_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scoring: Registry[JobTypeEntry] = Registry("job type")
    scoring.register(JobTypeEntry(name="score", description="Evaluate a model.", spec=MergeSpec,
                                  needs_data=False, input="trained_model", outputs=("evaluation",),
                                  phases=("loading_model", "done")))
    monkeypatch.setattr(jobtypes, "JOB_TYPES", scoring)
    db = memory_database()
    org_id, job = complete(db, tmp_path, {"type": "score", "base_model": "tiny-llama", "datasets": []})
    assert job.output_model_id is None
    assert catalog.list_trained_models(db, org_id) == []
