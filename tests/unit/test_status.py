"""The state machine's table, and its guarded transition on the in-memory store."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import func, select, update

from tests.support.store import memory_database
from tuneyard.store import Database, jobs, status, tenancy
from tuneyard.store.errors import InvalidTransition, NotFound, StaleAttempt
from tuneyard.store.status import HELD, TERMINAL, TRANSITIONS, Event, JobStatus, transition
from tuneyard.store.tables import Job, JobEvent

S = JobStatus


def test_every_status_has_a_row_and_terminal_ones_only_lead_to_a_resume() -> None:
    assert set(TRANSITIONS) == set(S)
    assert {s for s in S if s.is_terminal()} == {S.COMPLETED, S.FAILED, S.CANCELLED}
    for s in TERMINAL:
        assert TRANSITIONS[s] <= {S.QUEUED}  # only a failed job's resume
    assert TRANSITIONS[S.COMPLETED] == TRANSITIONS[S.CANCELLED] == frozenset()


def test_the_lifecycle_of_the_design_is_in_the_table() -> None:
    path = [S.QUEUED, S.STARTING, S.RUNNING, S.FINALIZING, S.COMPLETED]
    for a, b in itertools.pairwise(path):
        assert b in TRANSITIONS[a]
    assert S.STOPPING in TRANSITIONS[S.RUNNING] and S.STOPPED in TRANSITIONS[S.STOPPING]
    assert S.QUEUED in TRANSITIONS[S.STOPPED]
    assert all(S.QUEUED in TRANSITIONS[s] for s in (S.STARTING, S.RUNNING, S.FINALIZING))  # lease expiry
    assert all(S.FAILED in TRANSITIONS[s] for s in S if not s.is_terminal() and s not in (S.STOPPED, S.CANCELLING))
    assert HELD.isdisjoint(TERMINAL)


@pytest.fixture
def setup() -> tuple[Database, str]:
    db = memory_database()
    org = tenancy.create_org(db, "o")
    job = jobs.create_job(db, jobs.NewJob(org_id=org.id, type="finetune", spec={}, config={})).job
    return db, job.id


def _events(db: Database, job_id: str) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).where(JobEvent.job_id == job_id)) or 0


def test_event_and_status_change_share_one_transaction(
    setup: tuple[Database, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, job_id = setup

    def broken(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(status, "write_event", broken)
    with pytest.raises(RuntimeError), db.write() as session:
        transition(session, job_id, S.CANCELLED, Event("cancel", "x"))
    assert jobs.load_job(db, job_id).status == "queued"
    assert _events(db, job_id) == 1


def test_refusals_name_the_current_status_and_the_right_error(setup: tuple[Database, str]) -> None:
    db, job_id = setup
    with pytest.raises(InvalidTransition, match="is queued; it cannot become completed") as refused, \
            db.write() as session:
        transition(session, job_id, S.COMPLETED, Event("x", "x"))
    assert refused.value.current == "queued"
    with db.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="running", attempt=2))
    with pytest.raises(StaleAttempt), db.write() as session:
        transition(session, job_id, S.FINALIZING, Event("x", "x"), attempt=1)
    with pytest.raises(NotFound), db.write() as session:
        transition(session, "job_missing", S.RUNNING, Event("x", "x"))
    assert _events(db, job_id) == 1  # only "created"
