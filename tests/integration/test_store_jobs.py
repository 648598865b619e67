"""Jobs through the repository: idempotent creation, org scoping, listing, a user's requests."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tuneyard.errors import UserError
from tuneyard.scheduler import claim
from tuneyard.store import Database, jobs, lifecycle, telemetry, tenancy
from tuneyard.store.errors import Conflict, IdempotencyConflict, InvalidTransition, NotFound
from tuneyard.store.telemetry import LogIn, MetricIn

SPEC: dict[str, object] = {"base_model": "tiny-llama", "datasets": [{"name": "d"}]}


def _request(org_id: str, key_id: str, spec: dict[str, object] = SPEC) -> jobs.NewJob:
    return jobs.NewJob(org_id=org_id, type="finetune", spec=spec, config={}, user_key_id=key_id,
                       idempotency_key="same-key")


def test_fifty_concurrent_identical_creations_make_one_job(
    db: Database, open_db: Callable[[], Database], org_id: str
) -> None:
    key, _ = tenancy.create_api_key(db, org_id, "user")
    dbs = [open_db() for _ in range(5)]  # five "API processes"
    results: list[jobs.CreatedJob] = []
    errors: list[BaseException] = []
    start = threading.Barrier(50)

    def submit(i: int) -> None:
        try:
            start.wait()
            results.append(jobs.create_job(dbs[i % 5], _request(org_id, key.id)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({r.job.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert len(jobs.list_jobs(db, jobs.JobQuery(org_id, limit=100)).items) == 1

    with pytest.raises(IdempotencyConflict):
        jobs.create_job(db, _request(org_id, key.id, {**SPEC, "method": "full"}))
    other_user, _ = tenancy.create_api_key(db, org_id, "other")
    assert jobs.create_job(db, _request(org_id, other_user.id)).created  # keys are per user


def test_another_organizations_ids_are_not_found(db: Database, new_job: Callable[..., str]) -> None:
    job_id = new_job()
    stranger = tenancy.create_org(db, "other").id
    requests = (lifecycle.request_stop, lifecycle.request_cancel, lifecycle.request_resume)
    for call in (jobs.get_job, *requests, jobs.delete_job):
        with pytest.raises(NotFound):
            call(db, stranger, job_id)
    assert jobs.list_jobs(db, jobs.JobQuery(stranger)).items == []


def test_listing_is_newest_first_with_a_cursor_and_filters(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    ids = [new_job(type="merge" if i % 3 == 0 else "finetune") for i in range(7)]
    seen, cursor = [], None
    while True:
        page = _listed_alike(db, jobs.JobQuery(org_id, limit=3, cursor=cursor))
        seen += [j.id for j in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == ids[::-1]
    merges = _listed_alike(db, jobs.JobQuery(org_id, type="merge")).items
    assert [j.id for j in merges] == [ids[6], ids[3], ids[0]]
    lifecycle.request_cancel(db, org_id, ids[1])
    assert [j.id for j in _listed_alike(db, jobs.JobQuery(org_id, ("cancelled",))).items] == [ids[1]]
    chosen = _listed_alike(db, jobs.JobQuery(org_id, ids=(ids[2], ids[5], "job_gone"), limit=None)).items
    assert [j.id for j in chosen] == [ids[5], ids[2]]
    with pytest.raises(UserError):
        jobs.list_jobs(db, jobs.JobQuery(org_id, cursor="not-a-cursor"))


def _listed_alike(db: Database, query: jobs.JobQuery) -> jobs.Page:
    """The page, having checked that its validator's cheap rows name the same jobs in the same order."""
    page = jobs.list_jobs(db, query)
    with db.read() as session:
        rows, more = jobs.listed(session, query)
    assert [(r.id, r.revision) for r in rows] == [(j.id, j.revision) for j in page.items]
    assert more == (page.next_cursor is not None)
    return page


def test_stop_resume_cancel_and_delete(db: Database, new_job: Callable[..., str], org_id: str) -> None:
    job_id = new_job()
    held = claim(db, "w", 30)
    assert held is not None
    lifecycle.start(db, job_id, held.attempt)
    with pytest.raises(InvalidTransition, match="is running"):
        lifecycle.request_resume(db, org_id, job_id)
    with pytest.raises(InvalidTransition, match="is running"):
        jobs.delete_job(db, org_id, job_id)
    assert lifecycle.request_stop(db, org_id, job_id).status == "stopping"
    ckpt = telemetry.add_checkpoint(db, job_id, held.attempt, 5, "checkpoints/step-000005")
    lifecycle.finish_stop(db, job_id, held.attempt, 5)
    resumed = lifecycle.request_resume(db, org_id, job_id)
    assert (resumed.status, resumed.resume_from, resumed.stop_requested) == ("queued", ckpt.id, False)
    assert lifecycle.request_cancel(db, org_id, job_id).status == "cancelled"
    with pytest.raises(InvalidTransition, match="is cancelled"):
        lifecycle.request_stop(db, org_id, job_id)
    assert jobs.delete_job(db, org_id, job_id).id == job_id
    with pytest.raises(NotFound):
        jobs.get_job(db, org_id, job_id)
    assert telemetry.list_events(db, job_id) == [] and telemetry.list_checkpoints(db, job_id) == []


def test_a_failed_job_resumes_only_from_a_checkpoint(db: Database, new_job: Callable[..., str], org_id: str) -> None:
    job_id = new_job()
    held = claim(db, "w", 30)
    assert held is not None
    lifecycle.fail(db, job_id, "platform_error", "out of memory", attempt=held.attempt)
    with pytest.raises(Conflict, match="without a checkpoint"):
        lifecycle.request_resume(db, org_id, job_id)
    assert jobs.get_job(db, org_id, job_id).error == {"error_type": "platform_error", "message": "out of memory"}


def test_telemetry_is_idempotent_per_step_and_logs_are_numbered_per_job(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job()
    held = claim(db, "w", 30)
    assert held is not None
    points = [MetricIn(step=s, values={"loss": 3.0 - s / 10, "total_steps": 10}, epoch=0.1 * s) for s in (1, 2)]
    telemetry.record_metrics(db, job_id, held.attempt, points)
    telemetry.record_metrics(db, job_id, held.attempt, points[1:])  # the tailer read line 2 again
    telemetry.record_metrics(db, job_id, held.attempt, [MetricIn(step=2, kind="eval", values={"eval_loss": 2.5})])
    assert [(m.step, m.kind) for m in telemetry.list_metrics(db, job_id)] == [(1, "train"), (2, "eval"), (2, "train")]
    assert [m.step for m in telemetry.list_metrics(db, job_id, since_step=1, kind="train")] == [2]
    progress = jobs.get_job(db, org_id, job_id).progress
    assert progress == {"step": 2, "total_steps": 10, "epoch": 0.2, "loss": 2.8}

    assert telemetry.append_logs(db, job_id, held.attempt, [LogIn("a"), LogIn("b")]) == [1, 2]
    assert telemetry.append_logs(db, job_id, held.attempt, [LogIn("c")]) == [3]
    assert [line.message for line in telemetry.list_logs(db, job_id, since=1)] == ["b", "c"]
    assert [line.seq for line in telemetry.list_logs(db, job_id, tail=2)] == [2, 3]
    again = telemetry.add_checkpoint(db, job_id, held.attempt, 2, "p")
    assert telemetry.add_checkpoint(db, job_id, held.attempt, 2, "p").id == again.id
    assert telemetry.get_checkpoint(db, org_id, again.id).step == 2
