"""Keys, files, datasets, models and stats, each scoped by organization."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tuneyard.scheduler import claim
from tuneyard.scheduler.workers import register_worker, set_worker_state, worker_heartbeat, workers_alive
from tuneyard.store import Database, catalog, datasets, jobs, lifecycle, stats, tenancy
from tuneyard.store.errors import Conflict, NotFound


def test_keys_are_stored_hashed_shown_once_and_revocable(db: Database, org_id: str) -> None:
    key, plaintext = tenancy.create_api_key(db, org_id, "ci", is_admin=True)
    assert plaintext.startswith("ty_") and key.prefix == plaintext[:10]
    assert plaintext not in (key.key_hash, key.prefix)
    assert tenancy.authenticate(db, plaintext) == tenancy.Principal(org_id, key.id, True)
    assert tenancy.authenticate(db, plaintext + "x") is None
    tenancy.revoke_api_key(db, org_id, key.id)
    assert tenancy.authenticate(db, plaintext) is None
    with pytest.raises(NotFound):
        tenancy.revoke_api_key(db, tenancy.create_org(db, "other").id, key.id)


def test_files_and_datasets_are_per_organization(db: Database, org_id: str) -> None:
    other = tenancy.create_org(db, "other").id
    f = datasets.create_file(db, datasets.NewFile(org_id, "train.jsonl", 10, "0" * 64, "/data/f"))
    with pytest.raises(NotFound):
        datasets.create_dataset(db, other, "d", [f.id])  # cannot use another org's file
    ds = datasets.create_dataset(db, org_id, "d", [f.id])
    assert ds.status == "validating"
    with pytest.raises(Conflict):
        datasets.create_dataset(db, org_id, "d", [f.id])
    assert datasets.create_dataset(db, other, "d", []).name == "d"  # names are unique per org only
    datasets.set_dataset_validated(db, ds.id, status="ready", examples=3, tokens_est=90, bytes=10)
    assert datasets.get_dataset_by_name(db, org_id, "d").examples == 3
    for get in (datasets.get_dataset, datasets.delete_dataset):
        with pytest.raises(NotFound):
            get(db, other, ds.id)
    with pytest.raises(NotFound):
        datasets.get_file(db, other, f.id)
    assert datasets.delete_dataset(db, org_id, ds.id).id == ds.id


def test_models_and_stats(db: Database, org_id: str, new_job: Callable[..., str]) -> None:
    other = tenancy.create_org(db, "other").id
    catalog.ensure_builtin_base_model(db, "tiny-llama", "builtin:tiny-llama", {"params": 1})
    catalog.ensure_builtin_base_model(db, "tiny-llama", "builtin:tiny-llama", {"params": 1})
    mine = catalog.register_base_model(db, org_id=org_id, source_kind="local", source="/models/x")
    assert {m.id for m in catalog.list_base_models(db, org_id)} == {"tiny-llama", mine.id}
    assert [m.id for m in catalog.list_base_models(db, other)] == ["tiny-llama"]
    with pytest.raises(NotFound):
        catalog.get_base_model(db, other, mine.id)

    job_id, _ = new_job(), new_job()
    held = claim(db, "w1", 30)
    assert held is not None
    lifecycle.start(db, job_id, held.attempt)
    lifecycle.finalize(db, job_id, held.attempt)
    model = lifecycle.NewTrainedModel("adapter", "/runs/final", "tiny-llama", ["ds_1"])
    done = lifecycle.complete(db, job_id, held.attempt, {"loss": 1.0}, model)
    assert done.output_model_id is not None
    trained = catalog.get_trained_model(db, org_id, done.output_model_id)
    assert (trained.job_id, trained.datasets, trained.base_model) == (job_id, ["ds_1"], "tiny-llama")
    with pytest.raises(NotFound):
        catalog.get_trained_model(db, other, trained.id)

    register_worker(db, "w1")
    register_worker(db, "w2")
    set_worker_state(db, "w2", "stopped")
    worker_heartbeat(db, "w1")
    assert workers_alive(db, 30) == 1
    figures = stats.stats(db, org_id, worker_window_s=30)
    assert figures.jobs_by_status["completed"] == 1 and figures.jobs_by_status["queued"] == 1
    assert (figures.queue_depth, figures.models, figures.datasets, figures.workers_alive) == (1, 1, 0, 1)
    assert jobs.delete_job(db, org_id, job_id)
    assert catalog.get_trained_model(db, org_id, trained.id).job_id is None  # the model outlives its job
