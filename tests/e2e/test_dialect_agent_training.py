"""Document 003 (an agent's training API), replayed against a live `tuneyard serve` training tiny-llama:
every request it shows, in its order, bodies as printed (ids substituted; its model `eliza-1-2b` is
tiny-llama here), with an API key as its 401 row implies. Trajectories come in through
/v1/trajectories (003 reads them; ingesting is the trajectory issue's); then status, the
trajectories, one trajectory, datasets and a build as printed. The printed job body with
`backend: "mlx"` is the 400 naming it on this host, then the same body on this host's device trains
to completion; cancel is replayed on a second job; the trained model is listed, imported into an
Ollama stand-in (after a GGUF export where llama.cpp is installed; without one the import is the
409 asking for it), activated and answering chat completions by its providerModel, and benchmarked
(its scores measured on what its training held out); last the auto-training config, GET and PUT."""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import httpx
import pytest

from tests.support.api import trajectory_body
from tests.support.ollama_standin import ollama_standin
from tests.support.runs import arithmetic_chat
from tests.support.service import Service, wait_until
from tuneyard.client import find_api_key
from tuneyard.export.gguf import default_converter_dir
from tuneyard.scheduler import capacity

# Two jobs, an evaluation and (with llama.cpp) a GGUF export: past the default 600 s on a loaded host.
pytestmark = pytest.mark.timeout(1800)

HOST_DEVICE = capacity.host_device()
PRINTED_JOB = {"datasetId": "dataset-2024-06-10", "backend": "mlx", "model": "eliza-1-2b", "iterations": 100,
               "batchSize": 4, "learningRate": 1e-5}
PRINTED_IMPORT = {"modelName": "eliza-v1", "baseModel": "eliza-1-2b", "ollamaUrl": "http://localhost:11434"}
PRINTED_ACTIVATE = {"providerModel": "eliza-v1"}
ENDED = {"completed", "failed", "cancelled"}


def ingest(api: httpx.Client, n: int) -> None:
    """n trajectories of two arithmetic calls each, as an agent's runtime would send them."""
    chats = arithmetic_chat(2 * n)
    for i in range(n):
        body = trajectory_body(calls=2)
        body["startTime"] = 1718000000000 + i * 60_000
        body["endTime"] = body["startTime"] + 10_000
        for call, chat in zip(body["llmCalls"], chats[2 * i: 2 * i + 2], strict=True):
            call["messages"] = chat["messages"][:-1]
            call["response"] = chat["messages"][-1]["content"]
        assert api.post("/v1/trajectories", json=body).status_code == 201


def job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = api.get(f"/api/training/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()["job"]
    return found


def ended(api: httpx.Client, job_id: str, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := job(api, job_id))["status"] not in ENDED:
        assert time.monotonic() < deadline, found
        time.sleep(1)
    return found


def test_document_003_jobs_and_models_replayed(service: Service) -> None:
    service.start_serve()
    headers = {"Authorization": f"Bearer {find_api_key(service.data_dir)}"}
    with httpx.Client(base_url=service.url, headers=headers, timeout=120) as api:
        assert httpx.get(f"{service.url}/api/training/jobs", timeout=30).status_code == 401
        ingest(api, 24)
        dataset_id = _data_routes(api)

        # GET /api/training/jobs: none yet.
        assert api.get("/api/training/jobs").json() == {"jobs": []}

        # POST /api/training/jobs as printed: mlx is no backend of this host; then on this host's device.
        printed = {**PRINTED_JOB, "datasetId": dataset_id, "model": "tiny-llama"}
        refused = api.post("/api/training/jobs", json=printed)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "INVALID_REQUEST" and "mlx" in error["message"]
        assert [p["field"] for p in error["details"]["problems"]] == ["backend"]
        assert api.get("/api/training/jobs").json() == {"jobs": []}  # nothing made
        created = api.post("/api/training/jobs", json={**printed, "backend": HOST_DEVICE})
        assert created.status_code == 201, created.text
        started = created.json()["job"]
        assert set(started) >= {"id", "status", "datasetId", "backend", "createdAt"}
        assert started["status"] in ("queued", "running") and started["datasetId"] == dataset_id
        assert started["backend"] == HOST_DEVICE and isinstance(started["createdAt"], int)
        job_id = started["id"]
        listed = api.get("/api/training/jobs").json()["jobs"]
        assert [(j["id"], j["datasetId"], j["backend"], j["model"]) for j in listed] == [
            (job_id, dataset_id, HOST_DEVICE, "tiny-llama")]

        # GET /api/training/jobs/:id, polled: progress 0-1, iterations, loss; to completion.
        seen = wait_until(lambda: (j := job(api, job_id))["currentIteration"] and j, timeout=600, interval=0.2)
        assert 0 <= seen["progress"] <= 1 and seen["totalIterations"] == 100 and isinstance(seen["loss"], float)
        done = ended(api, job_id)
        assert done["status"] == "completed", api.get(f"/api/training/jobs/{job_id}").json()
        assert done["progress"] == 1.0 and done["currentIteration"] == done["totalIterations"] == 100
        assert isinstance(done["loss"], float) and done["completedAt"] >= done["createdAt"]
        listed = api.get("/api/training/jobs").json()["jobs"]
        assert listed[0]["status"] == "completed" and isinstance(listed[0]["completedAt"], int)

        # POST /api/training/jobs/:id/cancel, on a second job of the same body, while it runs.
        second = api.post("/api/training/jobs", json={**printed, "backend": HOST_DEVICE, "iterations": 5000})
        assert second.status_code == 201, second.text
        second_id = second.json()["job_id"]
        wait_until(lambda: job(api, second_id)["status"] == "running", timeout=600, interval=0.2)
        cancelled = api.post(f"/api/training/jobs/{second_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["job"]["id"] == second_id and cancelled.json()["job"]["status"] == "cancelled"
        wait_until(lambda: api.get(f"/v1/jobs/{second_id}").json()["status"] == "cancelled", timeout=300)
        assert api.post(f"/api/training/jobs/{second_id}/cancel").status_code == 409  # it has ended

        # GET /api/training/models.
        models = api.get("/api/training/models").json()["models"]
        assert [(m["jobId"], m["active"]) for m in models] == [(job_id, False)]
        model = models[0]
        assert model["id"].startswith("model_") and model["name"] and isinstance(model["createdAt"], int)
        model_id = model["id"]

        # POST /api/training/models/:id/import-ollama as printed, then into a stand-in on loopback.
        _import(api, service, model_id)

        # POST /api/training/models/:id/activate as printed: then it answers by that name.
        activated = api.post(f"/api/training/models/{model_id}/activate", json=PRINTED_ACTIVATE)
        assert activated.status_code == 200, activated.text
        assert activated.json()["ok"] is True and activated.json()["activeModel"] == "eliza-v1"
        assert api.get("/api/training/models").json()["models"][0]["active"] is True
        chat = api.post("/v1/chat/completions", json={"model": "eliza-v1", "max_tokens": 4,
                                                      "messages": [{"role": "user", "content": "What is 2 plus 3?"}]})
        assert chat.status_code == 200, chat.text
        assert chat.json()["model"] == "eliza-v1"

        # POST /api/training/models/:id/benchmark: 200 with scores, or 202 and then polled.
        scores = _benchmark(api, model_id)
        assert scores["modelId"] == model_id and isinstance(scores["completedAt"], int)
        assert set(scores["scores"]) == {"coherence", "consistency", "helpfulness"}
        assert all(0.0 <= v <= 1.0 for v in scores["scores"].values()), scores
        assert scores["method"] == "reference" and scores["examples"] >= 1

        # GET and PUT /api/training/auto/config, as printed.
        assert set(api.get("/api/training/auto/config").json()) >= {"threshold", "cooldownHours", "enabled"}
        saved = api.put("/api/training/auto/config", json={"threshold": 200, "cooldownHours": 24})
        assert saved.status_code == 200, saved.text
        assert saved.json()["ok"] is True
        assert {k: saved.json()["config"][k] for k in ("threshold", "cooldownHours")} == {
            "threshold": 200, "cooldownHours": 24}
        assert isinstance(saved.json()["config"]["enabled"], bool)
        status = api.get("/api/training/status").json()
        assert (status["completedJobs"], status["modelCount"], status["datasetCount"]) == (2, 1, 1)  # job, eval


def _data_routes(api: httpx.Client) -> str:
    """003's requests before its jobs: status, trajectories, one trajectory, datasets, a build.
    The built dataset's id."""
    # A worker registers just after serve answers: wait for the runtime 003's status reports.
    wait_until(lambda: api.get("/api/training/status").json()["runtimeAvailable"], timeout=60, interval=0.2)
    status = api.get("/api/training/status")
    assert status.status_code == 200, status.text
    assert status.json() == {"runningJobs": 0, "queuedJobs": 0, "completedJobs": 0, "failedJobs": 0,
                             "modelCount": 0, "datasetCount": 0, "runtimeAvailable": True}
    listed = api.get("/api/training/trajectories").json()
    assert listed["available"] is True and listed["total"] == 24 and len(listed["trajectories"]) == 24
    first = listed["trajectories"][0]
    assert set(first) >= {"id", "source", "status", "llmCallCount", "startTime", "endTime"}
    assert first["source"] == "chat" and first["status"] == "completed" and first["llmCallCount"] == 2
    one = api.get(f"/api/training/trajectories/{first['id']}").json()["trajectory"]
    assert one["id"] == first["id"] and len(one["llmCalls"]) == 2 and one["providerAccesses"] == []
    assert api.get("/api/training/datasets").json() == {"datasets": []}
    built = api.post("/api/training/datasets/build", json={"limit": 100, "minLlmCallsPerTrajectory": 2})
    assert built.status_code == 201, built.text
    dataset = built.json()["dataset"]
    assert (dataset["trajectoryCount"], dataset["exampleCount"]) == (24, 48) and isinstance(dataset["createdAt"], int)
    assert [d["id"] for d in api.get("/api/training/datasets").json()["datasets"]] == [dataset["id"]]
    dataset_id: str = dataset["id"]
    return dataset_id


def _import(api: httpx.Client, service: Service, model_id: str) -> None:
    printed = api.post(f"/api/training/models/{model_id}/import-ollama", json=PRINTED_IMPORT)
    assert printed.status_code == 409, printed.text  # no GGUF export yet: nothing to push
    assert "gguf" in printed.json()["error"]["message"]
    converter = default_converter_dir() / "convert_hf_to_gguf.py"
    if importlib.util.find_spec("llama_cpp") is None or not converter.is_file():
        return  # a GGUF export needs llama.cpp (scripts/llama_cpp_wheel); the refusal above is the answer
    export = api.post(f"/v1/models/{model_id}/exports", json={"format": "gguf", "quantization": "f16"})
    assert export.status_code == 202, export.text
    url = f"/v1/models/{model_id}/exports/{export.json()['id']}"
    wait_until(lambda: api.get(url).json()["status"] in ("completed", "failed"), timeout=900, interval=1)
    assert api.get(url).json()["status"] == "completed", api.get(url).text
    with ollama_standin() as ollama:
        body = {**PRINTED_IMPORT, "ollamaUrl": ollama.url}  # 127.0.0.1: localhost may resolve to ::1 first
        imported = api.post(f"/api/training/models/{model_id}/import-ollama", json=body)
        assert imported.status_code == 200, imported.text
        model = imported.json()["model"]
        assert model["id"] == model_id and model["ollamaName"] == "eliza-v1" and isinstance(model["importedAt"], int)
        assert [c["model"] for c in ollama.created] == ["eliza-v1"]


def _benchmark(api: httpx.Client, model_id: str) -> dict[str, Any]:
    answer = api.post(f"/api/training/models/{model_id}/benchmark")
    assert answer.status_code in (200, 202), answer.text
    if answer.status_code == 202:
        assert answer.json()["evaluationId"] and answer.json()["scores"] is None
        url = f"/api/training/models/{model_id}/benchmark"
        wait_until(lambda: api.get(url).status_code != 202, timeout=900, interval=1)
        answer = api.get(url)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found
