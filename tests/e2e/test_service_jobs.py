"""A job submitted over HTTP trains for real; stop, resume, cancel and delete do what they say."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import REPO
from tests.support.service import Service, wait_until
from tuneyard.client import TuneyardAPIError, TuneyardClient

EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"
HYPERPARAMS = {"epochs": 2, "batch_size": 8, "max_seq_length": 128, "learning_rate": 1e-3, "eval_split": 0.1,
               "bf16": False, "seed": 3}


def submit(client: TuneyardClient, **hyperparams: Any) -> dict[str, Any]:
    file = client.upload_file(EXAMPLES)
    dataset = client.wait_dataset(client.create_dataset(f"chat-{file['id']}", [file["id"]])["id"])
    assert dataset["status"] == "ready", dataset
    spec = {"base_model": "tiny-llama", "method": "lora", "datasets": [{"id": dataset["id"]}],
            "hyperparams": {**HYPERPARAMS, **hyperparams}}
    return client.create_job(spec)


def step_of(client: TuneyardClient, job_id: str) -> int:
    return int((client.get_job(job_id)["progress"] or {}).get("step") or 0)


def test_job_over_http_completes_and_everything_is_served(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    client = service.client()
    job = submit(client)
    assert job["status"] == "queued"
    done = client.wait(job["id"], timeout=240)
    assert done["status"] == "completed", (done, service.log("serve.log"))
    assert done["retries"] == 0 and done["output_model_id"]
    assert done["progress"]["step"] == done["progress"]["total_steps"] > 0

    metrics = client.metrics(job["id"])
    train_steps = [m["step"] for m in metrics if m.get("kind", "train") == "train"]
    assert train_steps == list(range(1, done["progress"]["total_steps"] + 1))
    logs = client.logs(job["id"])
    assert [line["seq"] for line in logs] == list(range(1, len(logs) + 1))
    assert any("step 1/" in line["message"] for line in logs)
    events = [e["type"] for e in client.events(job["id"])]
    assert events[0] == "created" and events[-1] == "completed" and "checkpoint" in events
    checkpoints = client.checkpoints(job["id"])
    assert checkpoints and all(c["id"].startswith("ckpt_") for c in checkpoints)
    result = client.result(job["id"])
    assert result["ppl_final"] < result["ppl_baseline"]
    paths = {a["path"] for a in client.artifacts(job["id"])}
    assert {"final/adapter_model.safetensors", "result.json", "telemetry.jsonl"} <= paths
    archive = client.download(job["id"], tmp_path / "model.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert any(n.endswith("adapter_model.safetensors") for n in names)
    assert any(n.endswith("tokenizer.json") for n in names)
    [model] = [m for m in client.list_models() if m["id"] == done["output_model_id"]]
    assert model["lineage"]["job_id"] == job["id"] and model["lineage"]["base_model"] == "tiny-llama"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stop_resume_cancel_delete(service: Service) -> None:
    service.start_serve()
    client = service.client()
    job = submit(client, epochs=30, save_steps=2)
    wait_until(lambda: step_of(client, job["id"]) >= 3)
    assert client.stop_job(job["id"])["status"] in ("stopping", "stopped")
    stopped = wait_until(lambda: (j := client.get_job(job["id"]))["status"] == "stopped" and j)
    assert stopped["last_checkpoint_step"] >= 3
    with pytest.raises(TuneyardAPIError) as conflict:
        client.stop_job(job["id"])
    assert conflict.value.status == 409 and "stopped" in conflict.value.message

    assert client.resume_job(job["id"])["status"] == "queued"
    resumed = wait_until(lambda: (j := client.get_job(job["id"]))["status"] == "running" and j)
    assert resumed["id"] == job["id"]
    assert client.cancel_job(job["id"])["status"] in ("cancelling", "cancelled")
    cancelled = wait_until(lambda: (j := client.get_job(job["id"]))["status"] == "cancelled" and j)
    assert cancelled["retries"] == 0

    run_dir = service.data_dir / "runs" / job["id"]
    assert run_dir.is_dir()
    client.delete_job(job["id"])
    assert not run_dir.exists()
    with pytest.raises(TuneyardAPIError) as gone:
        client.get_job(job["id"])
    assert gone.value.status == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_stopped_job_resumes_to_completion(service: Service) -> None:
    service.start_serve()
    client = service.client()
    # Long enough (~120 steps: 58 examples, 8 a step) that the stop, relayed by a heartbeat, lands
    # mid-run on a fast machine.
    job = submit(client, epochs=15, save_steps=3)
    wait_until(lambda: step_of(client, job["id"]) >= 2)
    client.stop_job(job["id"])
    wait_until(lambda: client.get_job(job["id"])["status"] == "stopped")
    client.resume_job(job["id"])
    done = client.wait(job["id"], timeout=900)  # the rest of ~120 steps at 2 s a step on a busy host
    assert done["status"] == "completed" and done["id"] == job["id"] and done["retries"] == 0
    assert io.BytesIO(client.get_artifact(job["id"], "final/adapter_model.safetensors")).getbuffer().nbytes > 0
