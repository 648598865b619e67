"""`tuneyard serve --api-processes 2`: two API processes on serve's one port, the workers in serve.

Which API process answers is made certain by stopping the other (SIGSTOP): a stopped process accepts
nothing, so every new connection is the running one's. Through one and then the other: the same
idempotency key gives the same job and the rate limit counts both; a job's hf_token taken by one
reaches the runner that serve's worker starts, even after that API process was killed and started
again; the job's stream, read from an API process, ends with `end` once serve's worker completed it.
SIGTERM ends serve with 0 and every API process with it, an open stream or not; SIGKILL leaves no
API process behind either.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.e2e.test_service_jobs import EXAMPLES, HYPERPARAMS
from tests.integration.test_job_secrets import runner_environment
from tests.support.api import chat_lines
from tests.support.service import Service, runner_pids, wait_until
from tuneyard.client import StreamItem, TuneyardAPIError, TuneyardClient, find_api_key

TOKEN = "hf_apiProcessesToken0123456789abcdefXYZ"
SECRET_JOB = {"base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "method": "lora", "num_epochs": 1,
              "batch_size": 4, "lora_rank": 4, "max_seq_length": 64, "hf_token": TOKEN}
"""A job of document 002's dialect, which takes an hf_token for its runner."""


def api_processes(serve: subprocess.Popen[bytes], count: int = 2) -> list[int]:
    """The pids of serve's API processes, once there are `count` of them."""
    def found() -> list[int] | None:
        pids = []
        for child in psutil.Process(serve.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):  # a zombie too: dead, not yet reaped by serve
                if "tuneyard.api.child" in child.cmdline():
                    pids.append(child.pid)
        return pids if len(pids) == count else None

    pids: list[int] = wait_until(found, timeout=60)
    return sorted(pids)


@contextlib.contextmanager
def only(answering: int, pids: list[int]) -> Iterator[None]:
    """Every API process but `answering` stopped: the connections made meanwhile are all its own."""
    others = [pid for pid in pids if pid != answering]
    for pid in others:
        os.kill(pid, signal.SIGSTOP)
    try:
        for pid in others:
            wait_until(lambda pid=pid: psutil.Process(pid).status() == psutil.STATUS_STOPPED, timeout=10)
        yield
    finally:
        for pid in others:
            os.kill(pid, signal.SIGCONT)


def fresh(service: Service) -> TuneyardClient:
    """A client with no connection yet: one made earlier may belong to an API process now stopped."""
    return service.client()


def dataset_spec(client: TuneyardClient, **hyperparams: Any) -> dict[str, Any]:
    file = client.upload_file(EXAMPLES)
    dataset = client.wait_dataset(client.create_dataset(f"chat-{file['id']}", [file["id"]])["id"])
    assert dataset["status"] == "ready", dataset
    return {"base_model": "tiny-llama", "method": "lora", "datasets": [{"id": dataset["id"]}],
            "hyperparams": {**HYPERPARAMS, **hyperparams}}


def set_when_ended(client: TuneyardClient, job_id: str, ended: threading.Event) -> None:
    """`ended` once the job rests: a job failed for want of its secret has no runner to wait for."""
    try:
        client.wait(job_id, timeout=300)
    finally:
        ended.set()


def assert_all_gone(pids: list[int]) -> None:
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in pids), timeout=10)


def test_idempotency_and_the_rate_limit_hold_across_api_processes(service: Service) -> None:
    serve = service.start_serve(workers=0, TUNEYARD_API_PROCESSES="2", TUNEYARD_JOB_CREATE_RATE_PER_MINUTE="2")
    one, two = api_processes(serve)
    with only(one, [one, two]):
        client = fresh(service)
        spec = dataset_spec(client)
        first = client.create_job(spec, idempotency_key="same")
    with only(two, [one, two]):
        client = fresh(service)
        assert client.create_job(spec, idempotency_key="same")["id"] == first["id"]  # a replay, not counted
        second = client.create_job(spec)
        assert second["id"] != first["id"]
    with only(one, [one, two]):
        with pytest.raises(TuneyardAPIError) as limited:
            fresh(service).create_job(spec)
        assert limited.value.status == 429  # two made, one through each process: the limit is the database's

    # A stream of a queued job (no worker here) never ends by itself: it must not hold up the stop.
    items: list[StreamItem] = []

    def follow() -> None:
        with contextlib.suppress(httpx.HTTPError):  # cut when its API process stops
            items.extend(fresh(service).stream(second["id"], reconnects=0))

    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: items, timeout=30)  # open: the job's events so far have come
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=60) == 0
    assert "killing it" not in service.log("serve.log")  # uvicorn ended the stream itself (api/child.py)
    assert_all_gone([one, two])


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_api_process_outlives_a_killed_serve(service: Service) -> None:
    serve = service.start_serve(workers=0, TUNEYARD_API_PROCESSES="2")
    pids = api_processes(serve)
    serve.send_signal(signal.SIGKILL)  # no SIGTERM passed on: each must notice alone (--exit-with-parent)
    serve.wait(timeout=10)
    assert_all_gone(pids)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_secrets_restarts_streams_and_a_clean_stop_across_api_processes(service: Service) -> None:
    assert "HF_TOKEN" not in os.environ  # else the runner could not be told apart from serve
    (service.data_dir / "datasets").mkdir(parents=True)
    (service.data_dir / "datasets" / "alpaca.jsonl").write_bytes(chat_lines(12))
    serve = service.start_serve(workers=1, TUNEYARD_API_PROCESSES="2")
    one, two = api_processes(serve)
    busy = fresh(service)
    # A job that holds the only worker, so the secret's job waits while its API process is killed.
    holding = busy.create_job(dataset_spec(busy, epochs=30))
    wait_until(lambda: busy.get_job(holding["id"])["status"] == "running")

    with only(one, [one, two]), httpx.Client(base_url=service.url, timeout=60) as curl:
        key = {"Authorization": f"Bearer {find_api_key(service.data_dir)}"}
        submitted = curl.post("/api/training/jobs", headers=key, json=SECRET_JOB)
        assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["job_id"]

    os.kill(one, signal.SIGKILL)  # the process that took the token: serve holds it, not this one
    restarted = wait_until(lambda: (pids := api_processes(serve)) != [one, two] and one not in pids and pids)
    assert two in restarted
    with only(next(pid for pid in restarted if pid != two), restarted):
        assert fresh(service).health()["status"] == "ok"
    assert "exited unexpectedly with signal SIGKILL" in service.log("serve.log")

    # Opened before the job runs, on an API process: woken by serve's worker's commits (store/notices.py).
    items: list[StreamItem] = []
    streaming = threading.Thread(target=lambda: items.extend(fresh(service).stream(job_id)), daemon=True)
    streaming.start()
    fresh(service).cancel_job(holding["id"])
    ended = threading.Event()
    watcher = threading.Thread(target=set_when_ended, args=(fresh(service), job_id, ended), daemon=True)
    watcher.start()
    environment = runner_environment(service.data_dir / "runs" / job_id, ended)  # read from /proc while it runs
    assert environment["HF_TOKEN"] == TOKEN

    completed = wait_until(lambda: fresh(service).get_job(job_id)["status"] == "completed" and time.monotonic())
    streaming.join(timeout=60)
    # Its `end` came with the job's last change, not from the 30 s safety read (api/app.py STREAM_POLL_SECONDS).
    assert items and items[-1].event == "end" and time.monotonic() - completed < 10, items[-3:]
    assert {"event", "metric", "log"} <= {item.event for item in items}

    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=90) == 0
    assert_all_gone(restarted)
    assert not runner_pids(service.data_dir / "runs" / job_id)
    assert TOKEN not in service.log("serve.log")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_taken_port_is_said_before_anything_starts(service: Service) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", service.port))
        taken.listen()
        proc = service._spawn(["serve", "--port", str(service.port), "--api-processes", "2"], "taken.log")
        assert proc.wait(timeout=240) != 0
    log = service.log("taken.log")
    assert f"cannot listen on 127.0.0.1:{service.port}: Address already in use" in log
    assert "API process" not in log and "tuneyard on http" not in log
