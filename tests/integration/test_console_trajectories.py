"""The console's trajectory pages, signed in as a user: the list with its filters, one trajectory's
calls as a chat, a build through the session as the page's script makes it, and auto-training's
history naming the dataset and job it made; in-process (tests/e2e/test_console_trajectories.py
drives the same pages in Chromium)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_console_headers import assert_secured
from tests.support import api
from tests.support.api import Tenant, trajectory_body

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

ORIGIN = {"Origin": "http://testserver"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # pages, not SQL, are under test
def test_browse_build_and_see_the_auto_training_history(client: TestClient, tenant: Tenant) -> None:
    template = {"base_model": "tiny-llama", "hyperparams": {"max_steps": 2}}
    configured = client.put("/v1/auto-training", headers=tenant.headers,
                            json={"enabled": True, "threshold": 2, "cooldownHours": 0, "jobTemplate": template})
    assert configured.status_code == 200, configured.text
    bodies = [trajectory_body("qa-1", task="qa", calls=2), trajectory_body("ops-1", task="ops"),
              {**trajectory_body("qa-2", task="qa"), "llmCalls": [
                  {"model": "tiny-llama", "messages": [{"role": "user", "content": "<b>Is 2 > 1?</b>"}],
                   "response": "Yes."}]}]
    fired = client.post("/v1/trajectories", headers=tenant.headers, json={"trajectories": bodies}).json()
    assert len(fired["autoTraining"]) == 1

    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": "/trajectories"}, headers=ORIGIN)
    assert signed_in.status_code == 200
    listed = client.get("/trajectories", params={"task": "qa"})
    assert_secured(listed, "/trajectories")
    assert "qa-1" in listed.text and "qa-2" in listed.text and "ops-1" not in listed.text
    shown = client.get("/trajectories/qa-2")
    assert "&lt;b&gt;Is 2 &gt; 1?&lt;/b&gt;" in shown.text and "Yes." in shown.text  # escaped, rendered as a chat
    assert client.get("/trajectories/nobody").status_code == 404

    csrf = re.search(r'name="csrf-token" content="([^"]+)"', listed.text)
    assert csrf is not None
    preview = client.post("/v1/dataset-builds", json={"task": "qa", "dryRun": True},
                          headers={**ORIGIN, "X-CSRF-Token": csrf.group(1)})
    assert preview.status_code == 200 and preview.json() == {"trajectoryCount": 2, "exampleCount": 3}

    history = client.get("/auto-training")
    run = client.get("/v1/auto-training/runs", headers=tenant.headers).json()["runs"][0]
    assert run["status"] == "submitted"
    assert f'href="/jobs/{run["jobId"]}"' in history.text and f'href="/datasets/{run["datasetId"]}"' in history.text
