"""A user's stop, cancel or resume holds the job's row for its whole transaction, so a worker's claim
cannot move a queued job to starting between the request's two guarded updates: on PostgreSQL (each
statement seeing what others committed) a stop was refused as "starting: cannot be stopped" when a
claim landed in between (found by Felix's e2e replay there). The claim skips a row a request holds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tuneyard.scheduler import claim
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_claim_skips_a_job_a_users_request_holds(client: TestClient, db: Database,
                                                   open_db: Callable[[], Database], tenant: Tenant) -> None:
    # SQLite serializes writers (BEGIN IMMEDIATE), so the race and this test are PostgreSQL's.
    job = create_job(client, tenant, ready_dataset(client, tenant)["id"])
    worker_db = open_db()
    with db.write() as session:
        lifecycle._check_owner(session, tenant.org_id, job["id"])
        assert claim(worker_db, "racing-worker", 60) is None  # held: skipped, not waited for
    stopped = lifecycle.request_stop(db, tenant.org_id, job["id"])
    assert stopped.status == "stopped"
    assert claim(worker_db, "racing-worker", 60) is None  # a stopped job is not claimed
