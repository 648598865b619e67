"""No answer about a job names the server's data folder: its config, error, logs, events, stream,
result and artifact list show paths relative to the run folder, uploads by name and id, and the
base model by the reference the request gave; the store keeps the absolute paths the runner needs."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, finished_job
from tuneyard.scheduler import claim
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store import jobs as job_store
from tuneyard.store import lifecycle, telemetry
from tuneyard.store.engine import Database
from tuneyard.store.status import Event

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

FILE_BYTES_ROUTES = {"/v1/jobs/{job_id}/artifacts/{path}", "/v1/jobs/{job_id}/download"}  # files as they are


def run_with_paths(client: TestClient, db: Database, settings: Settings, tenant: Tenant, base: dict[str, Any],
                   fail: bool) -> tuple[str, str]:
    """A job from `base`'s checkpoint whose runner wrote the server's paths into every record; returns
    its id and the stored path of its upload."""
    made = client.post("/v1/jobs", headers=tenant.headers,
                       json={"base_model": base["checkpoint_id"], "datasets": [{"id": base["dataset_id"]}]})
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == job_id
    attempt = claimed.attempt
    lifecycle.start(db, job_id, attempt)
    stored = job_store.get_job(db, tenant.org_id, job_id).config
    upload, model = stored["datasets"][0]["path"], stored["base_model"]
    assert upload.startswith(str(settings.data_dir)) and model.startswith(str(settings.data_dir))  # the truth
    folder = run_dir(settings, job_id)
    (folder / "final").mkdir(parents=True)  # the runner's own files name the server's disk, as a real run's do
    (folder / "final" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": model}))
    (folder / "final" / "adapter_model.safetensors").write_bytes(b"\x00weights\xff" * 64)
    (folder / "spec.json").write_text(json.dumps({"base_model": model, "datasets": [{"path": upload}]}, indent=2))
    (folder / "runner.log").write_text(f"reading {upload}\nwriting {folder}/final\n")
    telemetry.append_logs(db, job_id, attempt, [
        telemetry.LogIn(f"loading the base model from {model}"), telemetry.LogIn(f"reading {upload}"),
        telemetry.LogIn(f"saved {folder}/checkpoints/step-000001 under {settings.data_dir}")])
    telemetry.add_event(db, job_id, attempt, Event("warning", f"slow disk at {folder}",
                                                   {"path": f"{folder}/final", "files": [upload]}))
    if fail:
        lifecycle.fail(db, job_id, "user_error", f"1 invalid line(s) in the data; first, {upload} line 2: not JSON",
                       attempt=attempt, details={"errors": [{"file": upload, "line": 2, "message": "not JSON"}]})
    else:
        lifecycle.finalize(db, job_id, attempt)
        lifecycle.complete(db, job_id, attempt, {"ppl_final": 2.0, "model_dir": f"{folder}/final"})
    return job_id, upload


def job_routes(app: FastAPI) -> list[str]:
    paths = app.openapi()["paths"]
    return [p for p in sorted(paths) if p.startswith("/v1/jobs/{job_id}") and "get" in paths[p]
            and p not in FILE_BYTES_ROUTES]


@pytest.mark.parametrize("fail", [False, True], ids=["completed", "failed"])
def test_no_answer_about_a_job_names_the_data_folder(app: FastAPI, client: TestClient, db: Database,
                                                     api_settings: Settings, tenant: Tenant, fail: bool) -> None:
    base = finished_job(client, db, api_settings, tenant)
    job_id, upload = run_with_paths(client, db, api_settings, tenant, base, fail)
    secrets = {str(api_settings.data_dir), str(api_settings.data_dir.resolve())}
    answers = {path: client.get(path.replace("{job_id}", job_id), headers=tenant.headers) for path in job_routes(app)}
    answers["/v1/jobs"] = client.get("/v1/jobs", headers=tenant.headers)
    for action in ("stop", "cancel", "resume"):  # refused by state: their errors too
        answers[action] = client.post(f"/v1/jobs/{job_id}/{action}", headers=tenant.headers)
    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": f"/jobs/{job_id}"},
                            headers={"Origin": "http://testserver"})
    answers["console"] = signed_in
    assert len(answers) >= 13
    for what, response in answers.items():
        assert response.status_code < 500, (what, response.text)
        found = [s for s in secrets if s in response.text]
        assert not found, f"{what} names the data folder: {response.text[:400]}"

    job = answers["/v1/jobs/{job_id}"].json()
    shown_upload = f"chats.jsonl ({base['file_id']})"
    assert job["config"]["datasets"][0]["path"] == shown_upload
    assert job["config"]["base_model"] == base["checkpoint_id"]
    logs = [line["message"] for line in answers["/v1/jobs/{job_id}/logs"].json()["data"]]
    assert logs[-3:] == [f"loading the base model from {base['checkpoint_id']}", f"reading {shown_upload}",
                         "saved checkpoints/step-000001 under <data>"]
    [event] = [e for e in answers["/v1/jobs/{job_id}/events"].json()["data"] if e["type"] == "warning"]
    assert event["message"] == "slow disk at ."
    assert (event["data"]["path"], event["data"]["files"]) == ("final", [shown_upload])
    if fail:
        assert job["error"]["message"] == f"1 invalid line(s) in the data; first, {shown_upload} line 2: not JSON"
        assert job["error"]["details"]["errors"][0]["file"] == shown_upload
        assert shown_upload in answers["/v1/jobs/{job_id}/result"].text
    else:
        assert answers["/v1/jobs/{job_id}/result"].json()["model_dir"] == "final"
    assert shown_upload in answers["console"].text
    # The worker's truth is untouched.
    assert job_store.get_job(db, tenant.org_id, job_id).config["datasets"][0]["path"] == upload


def test_run_folder_files_and_the_download_name_no_server_path(client: TestClient, db: Database,
                                                              api_settings: Settings, tenant: Tenant) -> None:
    base = finished_job(client, db, api_settings, tenant)
    job_id, _ = run_with_paths(client, db, api_settings, tenant, base, fail=False)
    secrets = {str(api_settings.data_dir), str(api_settings.data_dir.resolve())}
    shown_upload = f"chats.jsonl ({base['file_id']})"
    listed = client.get(f"/v1/jobs/{job_id}/artifacts", headers=tenant.headers).json()["data"]
    files = {}
    for item in listed:
        answer = client.get(f"/v1/jobs/{job_id}/artifacts/{item['path']}", headers=tenant.headers)
        assert answer.status_code == 200, (item, answer.text)
        assert not [s for s in secrets if s.encode() in answer.content], (item["path"], answer.content[:400])
        files[item["path"]] = answer.content
    assert json.loads(files["spec.json"]) == {"base_model": base["checkpoint_id"], "datasets": [{"path": shown_upload}]}
    assert files["runner.log"].decode() == f"reading {shown_upload}\nwriting final\n"
    assert files["final/adapter_model.safetensors"] == b"\x00weights\xff" * 64  # binary files as they are
    # The server's own copy keeps the truth the runner and the next job need.
    assert str(api_settings.data_dir) in (run_dir(api_settings, job_id) / "spec.json").read_text()

    download = client.get(f"/v1/jobs/{job_id}/download", headers=tenant.headers)
    assert download.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as tar:
        members = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert set(members) == {"adapter_config.json", "adapter_model.safetensors"}
    for name, content in members.items():
        assert not [s for s in secrets if s.encode() in content], (name, content[:400])
    assert json.loads(members["adapter_config.json"]) == {"base_model_name_or_path": base["checkpoint_id"]}
