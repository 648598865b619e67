"""The console's auto-training form: shown with the stored config, saved through PUT /v1/auto-training
as the page's script sends it (session cookie and CSRF token), refused whole with each field named;
and each run's promotion in the history."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_console_headers import assert_secured
from tests.support import api
from tests.support.api import Tenant

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

ORIGIN = {"Origin": "http://testserver"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # pages, not SQL, are under test
def test_the_form_edits_the_config_through_the_api(client: TestClient, tenant: Tenant) -> None:
    assert client.post("/sign-in", data={"api_key": tenant.key, "next": "/auto-training"},
                       headers=ORIGIN).status_code == 200
    page = client.get("/auto-training")
    assert_secured(page, "/auto-training")
    for control in ('name="enabled"', 'name="threshold"', 'name="cooldownHours"', 'name="activateIfBetter"',
                    'name="jobTemplate"', 'value="100"'):
        assert control in page.text, control
    assert '<script src="/static/auto_training.js"></script>' in page.text and "<script>" not in page.text
    assert client.get("/static/auto_training.js").status_code == 200
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    headers = {**ORIGIN, "X-CSRF-Token": csrf.group(1)}

    body = {"enabled": True, "threshold": 7, "cooldownHours": 1.5, "activateIfBetter": True,
            "jobTemplate": {"base_model": "tiny-llama", "hyperparams": {"max_steps": 2, "eval_split": 0.2}}}
    assert client.put("/v1/auto-training", json=body, headers={**ORIGIN}).status_code == 403  # no CSRF token
    saved = client.put("/v1/auto-training", json=body, headers=headers)
    assert saved.status_code == 200, saved.text
    shown = client.get("/auto-training").text
    assert 'value="7"' in shown and 'value="1.5"' in shown and "\"eval_split\": 0.2" in shown
    assert re.search(r'name="activateIfBetter" checked', shown) and re.search(r'name="enabled" checked', shown)

    refused = client.put("/v1/auto-training", headers=headers, json={**body, "threshold": 0,
                                                                     "jobTemplate": {"base_model": "nope"}})
    assert refused.status_code == 422
    fields = {p["field"] for p in refused.json()["error"]["details"]["problems"]}
    assert fields == {"threshold"}, fields  # the template is checked once the fields are valid
    assert 'value="7"' in client.get("/auto-training").text, "nothing of a refused config is stored"
