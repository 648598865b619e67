"""Shut the service down politely (SIGTERM) mid-training: its runners checkpoint, their jobs go back to
the queue without counting a retry, and the next start finishes them bit for bit."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_api_processes import dataset_spec
from tests.e2e.test_service_crashes import (  # noqa: F401  (uninterrupted: the fixture, used by name)
    LONG,
    assert_matches_uninterrupted,
    uninterrupted,
    wait_mid_training,
)
from tests.e2e.test_service_jobs import submit
from tests.support.service import Service, runner_pids, wait_until
from tuneyard.api.server import GRACEFUL_SHUTDOWN_SECONDS
from tuneyard.client import StreamItem

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("process", ["serve", "worker"])
def test_sigterm_hands_running_jobs_back_and_they_finish_after_a_restart(
    service: Service, uninterrupted: Path, process: str  # noqa: F811
) -> None:
    serve = service.start_serve(workers=1 if process == "serve" else 0)
    client = service.client()
    target = serve if process == "serve" else service.start_worker()
    job = submit(client, **LONG)
    wait_mid_training(client, job["id"])
    run_dir = service.data_dir / "runs" / job["id"]

    target.send_signal(signal.SIGTERM)
    assert target.wait(timeout=90) == 0
    assert not runner_pids(run_dir)
    if process == "serve":
        serve = service.start_serve(workers=0)  # the API back, with nothing to run the job yet
    handed_back = client.get_job(job["id"])
    assert (handed_back["status"], handed_back["retries"]) == ("queued", 0), handed_back
    assert client.events(job["id"])[-1]["type"] == "released"

    service.start_worker()
    done = client.wait(job["id"], timeout=300)
    assert (done["status"], done["retries"]) == ("completed", 0), done
    assert_matches_uninterrupted(service, job["id"], uninterrupted)


def test_an_open_stream_does_not_hold_up_the_stop(service: Service) -> None:
    # One process (no --api-processes): a stream of a queued job, with no worker to run it, never
    # ends by itself; uvicorn cancels it GRACEFUL_SHUTDOWN_SECONDS after SIGTERM (api/server.py).
    serve = service.start_serve(workers=0)
    client = service.client()
    job = client.create_job(dataset_spec(client))
    items: list[StreamItem] = []

    def follow() -> None:
        with contextlib.suppress(httpx.HTTPError):  # cut as the server stops
            items.extend(service.client().stream(job["id"], reconnects=0))

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: items, timeout=30)  # open: the job's events so far have come
    stopping = time.monotonic()
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=60) == 0
    assert time.monotonic() - stopping < GRACEFUL_SHUTDOWN_SECONDS + 30
