"""What a job wrote, served back: timeline, live stream with resume, result, artifacts, download,
trained models with lineage, base models, stats, health and Prometheus figures."""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, finished_job, live_server, ready_dataset
from tuneyard.api.schemas.jobs import EventPublic, LogPublic, MetricPublic
from tuneyard.client import TuneyardClient
from tuneyard.scheduler import claim
from tuneyard.settings import Settings
from tuneyard.store import jobs as job_store
from tuneyard.store import lifecycle, telemetry
from tuneyard.store.status import Event

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def get(client: TestClient, tenant: Tenant, url: str, **params: Any) -> Any:
    response = client.get(url, headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_timeline_routes(client: TestClient, db, api_settings: Settings, tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    url = f"/v1/jobs/{done['job_id']}"
    job = get(client, tenant, url)
    assert job["status"] == "completed" and job["output_model_id"] == done["model_id"]
    assert job["progress"] == {"step": 4, "total_steps": 4, "epoch": 1.0, "percent": 100.0, "eta_s": None}
    assert job["loss"] == 1.0 and job["last_checkpoint_step"] == 2

    events = get(client, tenant, f"{url}/events")["data"]
    assert [e["type"] for e in events][:2] == ["created", "claimed"] and events[-1]["type"] == "completed"
    later = get(client, tenant, f"{url}/events", since=events[-2]["seq"])["data"]
    assert [e["seq"] for e in later] == [events[-1]["seq"]]

    metrics = get(client, tenant, f"{url}/metrics", since_step=2)["data"]
    assert [(m["step"], m["kind"]) for m in metrics] == [(3, "train"), (4, "train")]
    assert [m["kind"] for m in get(client, tenant, f"{url}/metrics", kind="eval")["data"]] == ["eval"]

    assert [line["seq"] for line in get(client, tenant, f"{url}/logs", since=3)["data"]] == [4, 5]
    assert [line["message"] for line in get(client, tenant, f"{url}/logs", tail=2)["data"]] == ["line 4", "line 5"]
    # Written straight to JSON, the lists still have exactly the shape their response models document.
    for route, model in (("events", EventPublic), ("metrics", MetricPublic), ("logs", LogPublic)):
        for item in get(client, tenant, f"{url}/{route}")["data"]:
            assert model.model_validate(item).model_dump(mode="json").keys() == item.keys(), (route, item)

    checkpoints = get(client, tenant, f"{url}/checkpoints")["data"]
    assert [(c["id"], c["step"], c["metrics"]) for c in checkpoints] == [(done["checkpoint_id"], 2, {"loss": 2.0})]
    assert get(client, tenant, f"{url}/result") == done["result"]


def read_sse(text: str) -> list[dict[str, Any]]:
    items = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if fields:
            items.append({"event": fields.get("event"), "id": fields.get("id"), "data": json.loads(fields["data"])})
    return items


def test_stream_resumes_from_last_event_id_without_gaps_or_repeats(
    client: TestClient, db, api_settings: Settings, tenant: Tenant
) -> None:
    done = finished_job(client, db, api_settings, tenant)
    url = f"/v1/jobs/{done['job_id']}/stream"
    full = read_sse(client.get(url, headers=tenant.headers).text)
    assert full[-1]["event"] == "end" and full[-1]["data"] == {"status": "completed"}
    body = full[:-1]
    kinds = {item["event"] for item in body}
    assert kinds == {"event", "metric", "log"}
    assert sum(item["event"] == "log" for item in body) == 5
    assert sum(item["event"] == "metric" for item in body) == 5

    # Reconnect after every item in turn: what follows must be exactly the rest, in order.
    for cut in range(len(body)):
        rest = read_sse(client.get(url, headers={**tenant.headers, "Last-Event-ID": body[cut]["id"]}).text)
        assert [(r["event"], r["data"]) for r in rest[:-1]] == [(r["event"], r["data"]) for r in body[cut + 1:]]


def test_result_is_404_until_it_exists(client: TestClient, tenant: Tenant) -> None:
    dataset = ready_dataset(client, tenant)
    job = create_job(client, tenant, dataset["id"])
    missing = client.get(f"/v1/jobs/{job['id']}/result", headers=tenant.headers)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
    assert client.get(f"/v1/jobs/{job['id']}/download", headers=tenant.headers).status_code == 404
    assert get(client, tenant, f"/v1/jobs/{job['id']}/artifacts")["data"] == []


def test_artifacts_and_download(client: TestClient, db, api_settings: Settings, tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    url = f"/v1/jobs/{done['job_id']}"
    paths = {a["path"]: a["bytes"] for a in get(client, tenant, f"{url}/artifacts")["data"]}
    assert paths == {"final/adapter_config.json": 8, "final/adapter_model.safetensors": 800, "runner.log": 8}
    one = client.get(f"{url}/artifacts/final/adapter_config.json", headers=tenant.headers)
    assert one.status_code == 200 and one.content == b'{"r": 8}'

    download = client.get(f"{url}/download", headers=tenant.headers)
    assert download.status_code == 200
    assert done["model_id"] in download.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as tar:
        names = sorted(tar.getnames())
        weights = tar.extractfile(f"{done['model_id']}/adapter_model.safetensors")
        assert weights is not None and weights.read() == b"\x00weights" * 100
    assert names == [f"{done['model_id']}/adapter_config.json", f"{done['model_id']}/adapter_model.safetensors"]


def test_trained_models_keep_lineage_and_outlive_their_job(
    client: TestClient, db, api_settings: Settings, tenant: Tenant
) -> None:
    done = finished_job(client, db, api_settings, tenant)
    model = get(client, tenant, f"/v1/models/{done['model_id']}")
    assert model["lineage"] == {"base_model": "tiny-llama", "datasets": [done["dataset_id"]], "job_id": done["job_id"]}
    listed = get(client, tenant, "/v1/models")
    assert [m["id"] for m in listed["data"] if m["kind"] != "base"] == [done["model_id"]]
    assert listed["object"] == "list" and listed["data"][0]["owned_by"] == tenant.org_id
    assert {"id": "tiny-llama", "object": "model", "owned_by": "tuneyard", "kind": "base"}.items() \
        <= next(m for m in listed["data"] if m["id"] == "tiny-llama").items()  # OpenAI clients list bases too

    # A checkpoint id and a trained-model id are valid base models for a new job.
    for base in (done["checkpoint_id"], done["model_id"]):
        job = create_job(client, tenant, done["dataset_id"], base_model=base)
        assert job["config"]["base_model"] == base  # the client's reference; the runner gets the path
        assert job_store.get_job(db, tenant.org_id, job["id"]).config["base_model"].startswith(
            str(api_settings.data_dir))

    assert client.delete(f"/v1/jobs/{done['job_id']}", headers=tenant.headers).status_code == 204
    kept = get(client, tenant, f"/v1/models/{done['model_id']}")
    assert kept["lineage"]["job_id"] is None
    weights = api_settings.data_dir / "models" / done["model_id"] / "adapter_model.safetensors"
    assert weights.is_file()
    assert client.delete(f"/v1/models/{done['model_id']}", headers=tenant.headers).status_code == 204
    assert not weights.exists()
    assert client.get(f"/v1/models/{done['model_id']}", headers=tenant.headers).status_code == 404


def test_base_models(client: TestClient, db, api_settings: Settings, tenant: Tenant, other: Tenant) -> None:
    listed = get(client, tenant, "/v1/base-models")["data"]
    assert listed[0]["id"] == "tiny-llama" and listed[0]["source_kind"] == "builtin"
    assert get(client, tenant, "/v1/base-models/tiny-llama")["parameters"] > 0

    folder = api_settings.model_roots[0] / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    local = client.post("/v1/base-models", headers=tenant.admin_headers, json={"source": "my-llama", "name": "mine"})
    assert local.status_code == 201, local.text
    assert local.json()["source_kind"] == "local" and local.json()["architecture"] == "llama"
    assert local.json()["source"] == str(folder.resolve())
    hub = client.post("/v1/base-models", headers=tenant.admin_headers, json={"source": "HuggingFaceTB/SmolLM2-135M"})
    assert hub.json()["source_kind"] == "hub"
    ids = [m["id"] for m in get(client, tenant, "/v1/base-models")["data"]]
    assert ids[-2:] == [local.json()["id"], hub.json()["id"]]
    assert local.json()["id"] not in [m["id"] for m in get(client, other, "/v1/base-models")["data"]]

    dataset = ready_dataset(client, tenant)
    job = create_job(client, tenant, dataset["id"], base_model=local.json()["id"])
    assert job["config"]["base_model"] == local.json()["id"]  # as the client named it
    assert job_store.get_job(db, tenant.org_id, job["id"]).config["base_model"] == str(folder.resolve())


def test_stats_health_metrics_and_openapi(app: FastAPI, client: TestClient, tenant: Tenant, other: Tenant,
                                          db, api_settings: Settings) -> None:
    finished_job(client, db, api_settings, tenant)
    dataset = ready_dataset(client, tenant, name="more")
    create_job(client, tenant, dataset["id"])
    create_job(client, other, ready_dataset(client, other)["id"])
    stats = get(client, tenant, "/v1/stats")
    # finished_job completes its job and an evaluation of its model (a job of type evaluate)
    assert stats["jobs_by_status"]["completed"] == 2 and stats["jobs_by_status"]["queued"] == 1
    datasets = client.get("/v1/datasets", headers=tenant.headers).json()["data"]  # finished_job makes a built one too
    assert stats["queue_depth"] == 2 and stats["models"] == 1 and stats["datasets"] == len(datasets) >= 2
    assert stats["workers_alive"] == 0

    assert client.get("/healthz").json()["status"] == "ok"
    text = client.get("/metrics", headers=tenant.admin_headers).text
    assert "tuneyard_queue_depth 2" in text
    assert 'tuneyard_jobs{status="completed"} 2' in text
    assert 'tuneyard_claim_latency_seconds_bucket{le="+Inf"} 2' in text
    assert 'tuneyard_job_duration_seconds_count{status="completed"} 2' in text

    schema = app.openapi()
    assert "/v1/jobs/{job_id}/stream" in schema["paths"]
    assert client.get("/openapi.json").status_code == 200


def test_live_stream_reconnects_mid_training_without_gaps_or_repeats(
    app: FastAPI, client: TestClient, db, tenant: Tenant
) -> None:
    dataset = ready_dataset(client, tenant)
    job_id = create_job(client, tenant, dataset["id"])["id"]
    claimed = claim(db, "w", 60)
    assert claimed is not None
    steps = 40

    def train() -> None:
        lifecycle.start(db, job_id, claimed.attempt)
        for step in range(1, steps + 1):
            telemetry.record_metrics(db, job_id, claimed.attempt, [telemetry.MetricIn(step, {"loss": 1 / step})])
            telemetry.append_logs(db, job_id, claimed.attempt, [telemetry.LogIn(f"step {step}")])
            if step % 10 == 0:
                telemetry.add_event(db, job_id, claimed.attempt, Event("note", f"at {step}"))
            time.sleep(0.005)
        lifecycle.finalize(db, job_id, claimed.attempt)
        lifecycle.complete(db, job_id, claimed.attempt, {"ok": True})

    with live_server(app) as base_url, TuneyardClient(base_url, tenant.key) as ty:
        writer = threading.Thread(target=train)
        writer.start()
        seen = []
        for item in ty.stream(job_id):
            seen.append(item)
            if len(seen) == 15:
                break  # drop the connection mid-training
        seen += list(ty.stream(job_id, last_event_id=seen[-1].id))
        writer.join()
    logs = [i.data["seq"] for i in seen if i.event == "log"]
    metric_steps = [i.data["step"] for i in seen if i.event == "metric"]
    events = [i.data["seq"] for i in seen if i.event == "event"]
    assert logs == list(range(1, steps + 1))
    assert metric_steps == list(range(1, steps + 1))
    assert events == list(range(1, len(events) + 1)) and seen[-1].data == {"status": "completed"}
