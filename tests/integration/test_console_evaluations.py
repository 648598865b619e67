"""The model page's Evaluations section: base and trained figures side by side, scores and samples."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, finished_job
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import Database, lifecycle

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

ORIGIN = {"Origin": "http://testserver"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # pages, not SQL, are under test
def test_model_page_shows_each_evaluation_beside_its_base(client: TestClient, db: Database, api_settings: Settings,
                                                          tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)  # with one completed evaluation
    model_id = done["model_id"]
    # a second one, failed, with a sample whose text must be escaped
    queued = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers,
                         json={"dataset": done["dataset_id"]}).json()
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == queued["id"]
    lifecycle.start(db, queued["id"], claimed.attempt)
    lifecycle.fail(db, queued["id"], "user_error", "datasets: no held-out example", attempt=claimed.attempt)
    assert client.post("/sign-in", data={"api_key": tenant.key, "next": "/models"}, headers=ORIGIN).status_code == 200

    shown = client.get(f"/models/{model_id}")
    assert shown.status_code == 200
    page = shown.text
    assert "Evaluations" in page and f'id="evaluation-{done["evaluation_id"]}"' in page
    assert f'href="/jobs/{done["evaluation_id"]}"' in page and "scores by reference" in page
    for label in ("Loss", "Perplexity", "Token accuracy", "Exact match", "ROUGE-L", "Coherence", "Consistency",
                  "Helpfulness"):
        assert f'<th scope="row">{label}</th>' in page
    assert "<td data-label=\"Trained\">2.72</td>" in page  # the fixture's perplexity
    assert f'id="evaluation-{queued["id"]}"' in page and "datasets: no held-out example" in page
    assert page.index(queued["id"]) < page.index(done["evaluation_id"]), "newest first"
