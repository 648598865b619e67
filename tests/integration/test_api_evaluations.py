"""/v1/models/{id}/evaluations: evaluate jobs asked of a trained model, on both databases.

No runner runs here: the evaluate job is claimed and completed through the store as a worker
would (the runner's own figures are tests/training/test_evaluate.py's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, finished_job, ready_dataset
from tuneyard.api.app import create_app
from tuneyard.scheduler import claim
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store import Database, lifecycle

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

RESULT = {
    "method": "reference",
    "scores": {"coherence": 0.5, "consistency": 0.75, "helpfulness": 0.25, "method": "reference"},
    "base": {"loss": 3.0, "perplexity": 20.1, "token_accuracy": 0.1, "exact_match": 0.0, "rouge_l": 0.1},
    "trained": {"loss": 1.0, "perplexity": 2.7, "token_accuracy": 0.6, "exact_match": 0.5, "rouge_l": 0.25},
    "samples": [{"source": "x:1", "prompt": "What is 1 plus 1?", "reference": "2.", "base": "hm", "trained": "2."}],
    "examples": 2,
}  # fmt: skip


def complete(db: Database, job_id: str, result: dict[str, Any], model: lifecycle.NewTrainedModel | None) -> None:
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == job_id
    lifecycle.start(db, job_id, claimed.attempt)
    lifecycle.finalize(db, job_id, claimed.attempt)
    lifecycle.complete(db, job_id, claimed.attempt, result, model)


def trained_model(client: TestClient, db: Database, settings: Settings, tenant: Tenant, **hyperparams: Any) -> str:
    """A completed LoRA job's model whose training held a quarter of its dataset out (seed 5)."""
    dataset = ready_dataset(client, tenant, name="arith")
    job = create_job(client, tenant, dataset["id"], hyperparams={"max_steps": 2, "eval_split": 0.25, "seed": 5,
                                                                 **hyperparams})
    folder = run_dir(settings, job["id"]) / "final"
    folder.mkdir(parents=True)
    complete(db, job["id"], {"ppl_final": 2.0}, lifecycle.NewTrainedModel(
        kind="adapter", path=str(folder), base_model="tiny-llama", datasets=[{"id": dataset["id"]}]))
    model_id = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()["output_model_id"]
    assert model_id is not None
    return str(model_id)


def test_an_evaluation_is_an_evaluate_job_on_what_training_held_out(
    client: TestClient, db: Database, api_settings: Settings, tenant: Tenant
) -> None:
    model_id = trained_model(client, db, api_settings, tenant)
    response = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers,
                           json={"max_examples": 20, "samples": 2})
    assert response.status_code == 201, response.text
    evaluation = response.json()
    assert evaluation["object"] == "evaluation" and evaluation["status"] == "queued"
    assert evaluation["model_id"] == model_id and evaluation["compare_with"] == "tiny-llama"
    assert evaluation["scores"] is None and evaluation["samples"] == []
    job = client.get(f"/v1/jobs/{evaluation['id']}", headers=tenant.headers).json()
    assert job["type"] == "evaluate"
    config = job["config"]
    assert config["compare_with"] == "tiny-llama" and config["judge"] is None
    assert (config["eval_split"], config["seed"], config["max_examples"], config["samples"]) == (0.25, 5, 20, 2)
    assert [d["split"] for d in config["datasets"]] == ["train"]

    complete(db, evaluation["id"], RESULT, None)
    for path in (f"/v1/evaluations/{evaluation['id']}", f"/v1/models/{model_id}/evaluations/{evaluation['id']}"):
        done = client.get(path, headers=tenant.headers)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["status"] == "completed" and body["method"] == "reference"
        assert body["scores"] == RESULT["scores"] and body["trained"]["rouge_l"] == 0.25
        assert body["base"]["loss"] == 3.0 and body["samples"][0]["trained"] == "2." and body["examples"] == 2
    listed = client.get(f"/v1/models/{model_id}/evaluations", headers=tenant.headers).json()["data"]
    assert [e["id"] for e in listed] == [evaluation["id"]]
    # the evaluation made no model
    assert client.get(f"/v1/jobs/{evaluation['id']}", headers=tenant.headers).json()["output_model_id"] is None


def test_a_given_dataset_is_evaluated_whole(client: TestClient, db: Database, api_settings: Settings,
                                           tenant: Tenant) -> None:
    model_id = trained_model(client, db, api_settings, tenant)
    held = ready_dataset(client, tenant, name="held out")
    response = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers, json={"dataset": "held out"})
    assert response.status_code == 201, response.text
    assert response.json()["datasets"] == [{"id": held["id"], "split": "eval"}]
    config = client.get(f"/v1/jobs/{response.json()['id']}", headers=tenant.headers).json()["config"]
    assert config["eval_split"] == 0.0 and [d["split"] for d in config["datasets"]] == ["eval"]


def test_the_operators_judge_is_in_the_config_and_its_key_nowhere(
    db: Database, api_settings: Settings, tenant: Tenant
) -> None:
    judged = api_settings.with_overrides(judge_base_url="http://127.0.0.1:9/v1", judge_model="grader",
                                         judge_api_key="sk-secret-judge")
    with TestClient(create_app(judged, db)) as judged_client:
        model_id = trained_model(judged_client, db, judged, tenant)
        response = judged_client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers, json={})
        assert response.status_code == 201, response.text
        job = judged_client.get(f"/v1/jobs/{response.json()['id']}", headers=tenant.headers)
    assert job.json()["config"]["judge"]["base_url"] == "http://127.0.0.1:9/v1"
    assert job.json()["config"]["judge"]["model"] == "grader"
    assert "sk-secret-judge" not in job.text


BAD_BODIES = [
    ({"dataset": "no-such-dataset"}, "dataset"),
    ({"max_examples": 0}, "max_examples"),
    ({"max_examples": 5001}, "max_examples"),
    ({"samples": -1}, "samples"),
    ({"max_new_tokens": 1025}, "max_new_tokens"),
    ({"max_examples": "10"}, "max_examples"),
    ({"dataset": "a\x00b"}, "dataset"),
    ({"judge": {"base_url": "http://169.254.169.254", "model": "x"}}, "judge"),
    ({"temperature": 2}, "temperature"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_bodies_are_422_naming_the_field(client: TestClient, db: Database, api_settings: Settings,
                                             tenant: Tenant, body: dict[str, Any], field: str) -> None:
    model_id = trained_model(client, db, api_settings, tenant)
    response = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST"
    assert field in {p["field"] for p in error["details"]["problems"]}, error
    assert client.get("/v1/jobs", headers=tenant.headers, params={"type": "evaluate"}).json()["data"] == []


def test_nothing_held_out_is_a_422_naming_dataset(client: TestClient, db: Database, api_settings: Settings,
                                                 tenant: Tenant) -> None:
    model_id = trained_model(client, db, api_settings, tenant, eval_split=0.0)
    response = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers, json={})
    assert response.status_code == 422, response.text
    problem = response.json()["error"]["details"]["problems"][0]
    assert problem["field"] == "dataset" and "held no examples out" in problem["message"]


def test_another_organizations_model_and_evaluation_are_404(
    client: TestClient, db: Database, api_settings: Settings, tenant: Tenant, other: Tenant
) -> None:
    model_id = trained_model(client, db, api_settings, tenant)
    evaluation = client.post(f"/v1/models/{model_id}/evaluations", headers=tenant.headers, json={}).json()
    for method, path in [("post", f"/v1/models/{model_id}/evaluations"),
                         ("get", f"/v1/models/{model_id}/evaluations"),
                         ("get", f"/v1/evaluations/{evaluation['id']}"),
                         ("get", f"/v1/models/{model_id}/evaluations/{evaluation['id']}")]:
        kwargs: dict[str, Any] = {"json": {"max_examples": 0}} if method == "post" else {}
        response = getattr(client, method)(path, headers=other.headers, **kwargs)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "NOT_FOUND"


def test_a_job_of_another_type_is_no_evaluation(client: TestClient, db: Database, api_settings: Settings,
                                               tenant: Tenant, tmp_path: Path) -> None:
    finished = finished_job(client, db, api_settings, tenant)
    response = client.get(f"/v1/evaluations/{finished['job_id']}", headers=tenant.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
    # a model whose training held nothing out (the fixture's default eval_split 0) needs a dataset
    refused = client.post(f"/v1/models/{finished['model_id']}/evaluations", headers=tenant.headers, json={})
    assert refused.status_code == 422 and refused.json()["error"]["details"]["problems"][0]["field"] == "dataset"


def test_a_judge_named_in_a_job_body_is_refused(client: TestClient, db: Database, api_settings: Settings,
                                                tenant: Tenant) -> None:
    model_id = trained_model(client, db, api_settings, tenant)
    dataset = ready_dataset(client, tenant, name="other")
    body = {"type": "evaluate", "base_model": model_id, "datasets": [{"id": dataset["id"], "split": "eval"}],
            "judge": {"base_url": "http://10.0.0.1/v1", "model": "j"}}
    response = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert response.status_code == 422, response.text
    assert "judge" in {p["field"] for p in response.json()["error"]["details"]["problems"]}
    # without it, the compared model defaults to the trained model's base
    del body["judge"]
    accepted = client.post("/v1/jobs", headers=tenant.headers, json=body)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["config"]["compare_with"] == "tiny-llama"
