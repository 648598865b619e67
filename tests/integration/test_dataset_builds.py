"""Datasets built from trajectories: each filter takes exactly the trajectories it should (the
lineage lists them), the build is deterministic, the dataset is a normal one, and a job trains on
it to completion (a real worker and runner, tiny-llama), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job
from tests.support.runs import REPO
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.worker.loop import Worker

app, client, tenant = api.app, api.client, api.tenant


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Any) -> Settings:
    """The API's settings with the shared model cache, so the worker's runner finds tiny-llama made."""
    (REPO / ".cache" / "models").mkdir(parents=True, exist_ok=True)
    return settings.with_overrides(model_cache_dir=REPO / ".cache" / "models", runner_nice=0)


def trajectory(tid: str, start: int, *, status: str = "completed", task: str | None = None, source: str = "chat",
               calls: list[tuple[str, str, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": tid, "source": source, "status": status, "startTime": start,
                            "llmCalls": [{"model": model, "messages": [{"role": "user", "content": question}],
                                          "response": answer} for model, question, answer in calls]}
    return {**body, "task": task} if task else body


TRAJECTORIES = [
    trajectory("a", 1000, task="qa", calls=[("m1", "What is 1 plus 1?", "2."), ("m2", "And 2 plus 2?", "4.")]),
    trajectory("b", 2000, task="qa", source="cli", calls=[("m2", "What is 3 plus 3?", "6.")]),
    trajectory("c", 3000, task="qa", status="failed", calls=[("m1", "What is 5 plus 5?", "10.")]),
    trajectory("d", 4000, task="ops", calls=[("m1", f"Restart service {i}?", f"Restarted {i}.") for i in range(3)]),
    trajectory("e", 5000, status="running", calls=[("m1", "Still going?", "Yes.")]),
    trajectory("f", 6000, calls=[("m1", "What is 1 plus 1?", "2.")]),  # the same call as a's first: one example
]

# filters → (the trajectories that match, in the build's order; the examples they make)
FILTERS: list[tuple[dict[str, Any], list[str], int]] = [
    ({}, ["a", "b", "d", "f"], 6),
    ({"limit": 2}, ["d", "f"], 4),
    ({"minLlmCallsPerTrajectory": 2}, ["a", "d"], 5),
    ({"status": ["failed", "running"]}, ["c", "e"], 2),
    ({"task": "qa"}, ["a", "b"], 3),
    ({"since": 2000, "until": 5000}, ["b", "d"], 4),
    ({"source": "cli"}, ["b"], 1),
    ({"model": "m2"}, ["a", "b"], 2),
]


def build(client: TestClient, tenant: Tenant, **filters: Any) -> Any:
    return client.post("/v1/dataset-builds", headers=tenant.headers, json=filters)


def test_each_filter_takes_exactly_its_trajectories_and_the_build_is_deterministic(
    client: TestClient, tenant: Tenant,
) -> None:
    assert client.post("/v1/trajectories", headers=tenant.headers,
                       json={"trajectories": TRAJECTORIES}).status_code == 201
    for filters, ids, examples in FILTERS:
        preview = build(client, tenant, dryRun=True, **filters)
        assert preview.status_code == 200 and preview.json() == {"trajectoryCount": len(ids), "exampleCount": examples}
        response = build(client, tenant, **filters)
        assert response.status_code == 201, (filters, response.text)
        built = response.json()
        assert (built["trajectoryIds"], built["exampleCount"]) == (ids, examples), filters
        assert client.get(f"/v1/dataset-builds/{built['id']}", headers=tenant.headers).json() == built
        dataset = client.get(f"/v1/datasets/{built['id']}", headers=tenant.headers).json()
        assert dataset["status"] == "ready" and dataset["examples"] == examples  # a normal, validated dataset
        again = build(client, tenant, **filters)
        assert again.status_code == 200 and again.json() == built  # same filters, same trajectories: the same one
    by_name = build(client, tenant, name="qa-copy", task="qa").json()
    first_qa = next(b for b in client.get("/v1/dataset-builds", headers=tenant.headers).json()["datasets"]
                    if b["filters"] == {"minLlmCallsPerTrajectory": 1, "status": ["completed"], "task": "qa"}
                    and b["name"] != "qa-copy")
    assert by_name["contentSha256"] == first_qa["contentSha256"] and by_name["id"] != first_qa["id"]
    nothing = build(client, tenant, task="nobody")
    assert nothing.status_code == 422 and nothing.json()["error"]["details"]["problems"][0]["field"] == "(filters)"


def test_a_job_trains_on_a_built_dataset_to_completion(client: TestClient, tenant: Tenant, db: Database,
                                                       api_settings: Settings) -> None:
    arithmetic = [trajectory(f"t{i}", 1000 + i, task="math", calls=[("tiny-llama", f"What is {i} plus {j}?",
                                                                     f"{i + j}.") for j in range(2)])
                  for i in range(8)]
    assert client.post("/v1/trajectories", headers=tenant.headers, json={"trajectories": arithmetic}).status_code == 201
    built = build(client, tenant, task="math").json()
    assert built["trajectoryIds"] == [f"t{i}" for i in range(8)] and built["exampleCount"] == 16
    job = create_job(client, tenant, built["id"], hyperparams={"max_steps": 2})
    claimed = claim(db, "test-worker", api_settings.lease_seconds)
    assert claimed is not None and claimed.job_id == job["id"]
    Worker(db, api_settings, os.environ).run_job(claimed, threading.Event())
    done = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()
    assert done["status"] == "completed", done
