"""Every job, checkpoint, dataset, file, base model and trained model has a UUID beside its native id:
given at insert (one at a time or many in one statement), backfilled on rows from before 0009, and
found by one lookup under either id, within the owner's organization only. Both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from sqlalchemy import select, text

from tests.integration.test_store_migrations import OLD_JOB, alembic
from tuneyard.store import Database, catalog, datasets, lifecycle, telemetry, tenancy, uuids
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import BaseModelEntry, Checkpoint, Job


def _claimed(db: Database, job_id: str) -> int:
    claimed = lifecycle.claim(db, "w1", 30, device="cpu")
    assert claimed is not None and claimed.job_id == job_id
    lifecycle.start(db, job_id, claimed.attempt)
    return claimed.attempt


def test_every_kind_gets_a_uuid_at_insert_and_is_found_by_either_id(
    db: Database, org_id: str, new_job: Callable[..., str]
) -> None:
    upload = datasets.create_file(db, datasets.NewFile(org_id, "a.jsonl", 3, "0" * 64, "/tmp/a.jsonl"))
    dataset = datasets.create_dataset(db, org_id, "set", [upload.id])
    catalog.ensure_builtin_base_model(db, "tiny-test", "tiny-test", {})  # a multi-row INSERT ... ON CONFLICT
    registered = catalog.register_base_model(db, org_id=org_id, source_kind="hub", source="a/b")
    job_id = new_job()
    attempt = _claimed(db, job_id)
    telemetry.add_checkpoint(db, job_id, attempt, 5, "/tmp/ckpt-5")
    with db.read() as session:
        checkpoint = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).one()
        builtin = session.get(BaseModelEntry, "tiny-test")
    assert builtin is not None
    objects = {"file": upload, "dataset": dataset, "base_model": builtin, "job": jobs_row(db, job_id),
               "checkpoint": checkpoint}
    seen = set()
    for kind, row in {**objects, "base_model": registered}.items():
        assert uuids.is_uuid(row.uuid), kind
        assert uuids.native_id(db, org_id, kind, row.uuid) == row.id
        assert uuids.native_id(db, org_id, kind, row.uuid.upper()) == row.id
        assert uuids.native_id(db, org_id, kind, row.id) == row.id
        seen.add(row.uuid)
    assert uuids.native_id(db, org_id, "base_model", builtin.uuid) == "tiny-test"
    assert len(seen) == 5


def jobs_row(db: Database, job_id: str) -> Job:
    with db.read() as session:
        row = session.get(Job, job_id)
    assert row is not None
    return row


def test_another_organizations_objects_are_missing_under_either_id(
    db: Database, org_id: str, new_job: Callable[..., str]
) -> None:
    other = tenancy.create_org(db, "other").id
    job = jobs_row(db, new_job())
    upload = datasets.create_file(db, datasets.NewFile(org_id, "a.jsonl", 3, "0" * 64, "/tmp/a.jsonl"))
    for kind, row in (("job", job), ("file", upload)):
        for ref in (row.id, row.uuid):
            with pytest.raises(NotFound):
                uuids.native_id(db, other, kind, ref)
    for ref in ("job_nothing", "00000000-0000-4000-8000-000000000000"):
        with pytest.raises(NotFound, match="job"):
            uuids.native_id(db, org_id, "job", ref)
    with pytest.raises(NotFound):  # a job's UUID names no file
        uuids.native_id(db, org_id, "file", job.uuid)


def test_rows_from_before_0009_are_given_distinct_uuids(open_db: Callable[[], Database]) -> None:
    db = open_db()
    alembic(db, "upgrade", "0005")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO organizations (id, name, created_at) VALUES ('org_old', 'o', :now)"),
                     {"now": datetime(2026, 1, 1)})
        conn.execute(text(OLD_JOB), {"org": "org_old", "now": datetime(2026, 1, 1)})
        conn.execute(text(OLD_JOB.replace("job_old", "job_old2")), {"org": "org_old", "now": datetime(2026, 1, 1)})
    alembic(db, "upgrade", "0009")
    with db.engine.connect() as conn:  # in SQL: the tables' classes hold the columns of later revisions too
        found = {row_id: row_uuid for row_id, row_uuid in conn.execute(text("SELECT id, uuid FROM jobs"))}
    first, second = found["job_old"], found["job_old2"]
    assert uuids.is_uuid(first) and uuids.is_uuid(second) and first != second
    assert uuids.native_id(db, "org_old", "job", second) == "job_old2"
    alembic(db, "downgrade", "0005")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 2
        columns = conn.execute(text("SELECT * FROM jobs")).keys()
    assert "uuid" not in columns
