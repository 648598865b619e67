"""A contraction's calibration text as the service resolves it, on both databases: its
`calibration_dataset` by id or name becomes files; with no text named, the held-out split of the
source model's own training data (its lineage, followed through a merge); bad input is a 422 naming
the field. No runner runs here (tests/training/test_contract_calibration.py runs them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.integration.test_api_evaluations import complete, trained_model
from tests.support import api
from tests.support.api import Tenant, ready_dataset
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store import Database, lifecycle
from tuneyard.store.jobs import load_job

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings


def contract(db: Database, client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    """The config a contract job's runner will get (stored; the API shows its paths to people)."""
    response = client.post("/v1/jobs", headers=tenant.headers, json={"type": "contract", **fields})
    assert response.status_code == 201, response.text
    return load_job(db, response.json()["id"]).config


def problems(client: TestClient, tenant: Tenant, **fields: Any) -> list[str]:
    response = client.post("/v1/jobs", headers=tenant.headers, json={"type": "contract", **fields})
    assert response.status_code == 422, response.text
    return [p["field"] for p in response.json()["error"]["details"]["problems"]]


def test_a_trained_models_contraction_calibrates_on_what_its_training_held_out(
    client: TestClient, db: Database, api_settings: Settings, tenant: Tenant
) -> None:
    model_id = trained_model(client, db, api_settings, tenant)  # a LoRA job, eval_split 0.25, seed 5
    job_id = client.get(f"/v1/models/{model_id}", headers=tenant.headers).json()["lineage"]["job_id"]
    # merged (first: the fake worker claims the oldest queued job), the merged model's lineage runs
    # through the merge job, which has no data of its own, to the LoRA job
    adapter = run_dir(api_settings, job_id) / "final" / "adapter_config.json"
    adapter.write_text(json.dumps({"base_model_name_or_path": "tiny-llama", "peft_type": "LORA"}))
    merge = client.post(f"/v1/jobs/{job_id}/merge", headers=tenant.headers)
    assert merge.status_code == 201, merge.text
    folder = run_dir(api_settings, merge.json()["id"]) / "final"
    folder.mkdir(parents=True)
    complete(db, merge.json()["id"], {"max_logit_delta": 0.0}, lifecycle.NewTrainedModel(
        kind="full", path=str(folder), base_model=model_id, datasets=[]))
    merged = client.get(f"/v1/jobs/{merge.json()['id']}", headers=tenant.headers).json()["output_model_id"]

    trained_on = load_job(db, job_id).config["datasets"]  # the files, as the runner was given them
    config = contract(db, client, tenant, base_model=model_id)
    calibration = config["calibration"]
    assert calibration == {"origin": "lineage", "source_id": model_id, "eval_split": 0.25, "seed": 5,
                           "datasets": trained_on}
    assert [d["split"] for d in calibration["datasets"]] == ["train"]
    assert all(Path(d["path"]).is_file() for d in calibration["datasets"])
    shown = client.post("/v1/jobs", headers=tenant.headers, json={"type": "contract", "base_model": model_id})
    file_id = Path(trained_on[0]["path"]).stem  # people see the upload's name, as for datasets, not the path
    assert [d["path"] for d in shown.json()["config"]["calibration"]["datasets"]] == [f"chats.jsonl ({file_id})"]
    assert contract(db, client, tenant, base_model=merged)["calibration"] == calibration

    # text named by the job wins: its datasets, or its calibration_dataset
    dataset = ready_dataset(client, tenant, name="calib", examples=6)
    with_data = contract(db, client, tenant, base_model=model_id, datasets=[{"id": dataset["id"]}])
    assert with_data["calibration"] is None
    given = contract(db, client, tenant, base_model=model_id, calibration_dataset={"name": "calib"})
    assert given["calibration_dataset"] is None  # resolved into calibration: the runner reads files
    assert given["calibration"]["origin"] == "calibration_dataset"
    assert given["calibration"]["source_id"] == dataset["id"]
    assert [d["split"] for d in given["calibration"]["datasets"]] == ["eval"]  # every record of it


def test_no_lineage_text_where_nothing_was_held_out(
    client: TestClient, db: Database, api_settings: Settings, tenant: Tenant
) -> None:
    model_id = trained_model(client, db, api_settings, tenant, eval_split=0.0)
    assert contract(db, client, tenant, base_model=model_id)["calibration"] is None
    assert contract(db, client, tenant, base_model="tiny-llama")["calibration"] is None


def test_calibration_input_it_cannot_take_is_refused_naming_each_field(client: TestClient, tenant: Tenant) -> None:
    assert sorted(problems(client, tenant, base_model="tiny-llama", calibration_dataset={"id": "ds_missing"},
                           contraction_ratio=1.5)) == ["calibration_dataset", "contraction_ratio"]  # all at once
    assert problems(client, tenant, base_model="tiny-llama", calibration_dataset={"id": "ds_missing"}) == \
        ["calibration_dataset"]
    assert problems(client, tenant, base_model="tiny-llama", calibration_dataset={"path": "/etc/passwd"}) == \
        ["calibration_dataset.path"]
    lineage = {"origin": "lineage", "datasets": [{"path": "/etc/passwd"}]}
    assert problems(client, tenant, base_model="tiny-llama", calibration=lineage) == ["calibration"]
    assert problems(client, tenant, base_model="tiny-llama", calibration_dataset={"id": "x", "name": "y"}) == \
        ["calibration_dataset"]
