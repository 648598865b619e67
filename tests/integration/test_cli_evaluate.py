"""`tuneyard models evaluate` against a live server: queued, and with --follow the figures once a worker
(here the store's writes, as in test_api_evaluations.py) completes it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner, Result

from tests.integration.test_api_evaluations import RESULT, complete, trained_model
from tests.support import api
from tests.support.api import Tenant, live_server
from tuneyard.cli.main import app as cli
from tuneyard.settings import Settings
from tuneyard.store import Database
from tuneyard.store import jobs as jobs_store

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings


def run(base_url: str, tenant: Tenant, tmp_path: Path, *args: str) -> Result:
    env = {"TUNEYARD_URL": base_url, "TUNEYARD_API_KEY": tenant.key}
    return CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "cli"), *args], env=env)


def complete_when_queued(db: Database, org_id: str, done: threading.Event) -> None:
    """Play the worker: complete the first evaluate job that is queued."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not done.is_set():
        queued = jobs_store.list_jobs(db, jobs_store.JobQuery(org_id, ("queued",), "evaluate")).items
        if queued:
            complete(db, queued[0].id, RESULT, None)
            return
        time.sleep(0.1)


def test_evaluate_queues_and_follows_to_the_figures(app: FastAPI, client: TestClient, db: Database,
                                                    api_settings: Settings, tenant: Tenant, tmp_path: Path) -> None:
    model_id = trained_model(client, db, api_settings, tenant)
    with live_server(app) as base_url:
        queued = run(base_url, tenant, tmp_path, "--json", "models", "evaluate", model_id, "--max-examples", "5")
        assert queued.exit_code == 0, queued.output
        evaluation = json.loads(queued.stdout)
        assert evaluation["status"] == "queued" and evaluation["model_id"] == model_id
        complete(db, evaluation["id"], RESULT, None)

        done = threading.Event()
        worker = threading.Thread(target=complete_when_queued, args=(db, tenant.org_id, done), daemon=True)
        worker.start()
        followed = run(base_url, tenant, tmp_path, "models", "evaluate", model_id, "--follow")
        done.set()
        worker.join(timeout=10)
        assert followed.exit_code == 0, followed.output
        for text in ("rouge_l", "0.25", "helpfulness", "BASE (tiny-llama)", "2 held-out examples", "by reference"):
            assert text in followed.stdout, (text, followed.stdout)
        refused = run(base_url, tenant, tmp_path, "models", "evaluate", model_id, "--dataset", "no-such")
        assert refused.exit_code == 1 and "dataset" in refused.stderr, refused.output
