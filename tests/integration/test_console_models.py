"""The console's model page, signed in: the model's facts, its exports and the playground's controls,
linked from the models list; another organization's model and a malformed id are the not-found page
(tests/e2e/test_console_playground.py chats through the playground in Chromium)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_console_headers import assert_secured
from tests.support import api
from tests.support.api import Tenant, finished_job
from tuneyard.settings import Settings

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

ORIGIN = {"Origin": "http://testserver"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # pages, not SQL, are under test
def test_model_page_shows_facts_exports_and_playground(client: TestClient, db, api_settings: Settings,
                                                       tenant: Tenant, other: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    model_id = done["model_id"]
    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": "/models"}, headers=ORIGIN)
    assert signed_in.status_code == 200
    assert f'href="/models/{model_id}"' in signed_in.text

    shown = client.get(f"/models/{model_id}")
    assert_secured(shown, "/models/{id}")
    assert shown.status_code == 200
    assert f'href="/jobs/{done["job_id"]}"' in shown.text and done["dataset_id"] in shown.text
    assert done["export_id"] in shown.text and "failed" in shown.text
    assert f'data-model="{model_id}"' in shown.text and 'data-base="tiny-llama"' in shown.text
    for control in ('name="temperature"', 'name="max_tokens"', 'name="top_p"', 'name="message"'):
        assert control in shown.text
    assert '<script src="/static/playground.js"></script>' in shown.text and "<style" not in shown.text
    assert client.get("/static/playground.js").status_code == 200

    assert client.get("/models/no-such-model").status_code == 404
    assert client.get("/models/..%2Fetc").status_code == 404
    client.post("/sign-out", data={"csrf_token": ""}, headers=ORIGIN)
    theirs = client.post("/sign-in", data={"api_key": other.key, "next": f"/models/{model_id}"}, headers=ORIGIN)
    assert theirs.status_code == 404 and "Playground" not in theirs.text and "tiny-llama" not in theirs.text
