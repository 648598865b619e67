"""Document 004 (Archetype) replayed against a live `tuneyard serve` training tiny-llama: the job made
from files uploaded to /v1/files, then the document's one request, `GET /v0.5/fine-tune/jobs/{job_id}`
with a bearer key, polled until the job is COMPLETED, every documented field checked, and its
inference config fetched from the URL the record gives. A second job is cancelled while running."""

from __future__ import annotations

import re
from typing import Any

import httpx
import yaml

from tests.support.runs import REPO
from tests.support.service import Service, wait_until
from tuneyard.client import find_api_key

EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"
STATUSES = {"UNKNOWN", "REGISTERED", "STARTING", "RUNNING", "COMPLETED", "FINALIZING", "STOPPING", "STOPPED",
            "CANCELLED", "FAILED"}
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def record(http: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = http.get(f"/v0.5/fine-tune/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    assert list(job) == ["name", "id", "uuid", "org_uuid", "status", "config", "created_at", "updated_at",
                         "inference_config_path"]
    assert job["status"] in STATUSES and ISO_Z.match(job["created_at"]) and ISO_Z.match(job["updated_at"])
    return job


def test_the_archetype_document_against_a_live_server(service: Service) -> None:
    service.start_serve()
    with httpx.Client(base_url=service.url, timeout=60,
                      headers={"Authorization": f"Bearer {find_api_key(service.data_dir)}"}) as http:
        replay(service, http)


def replay(service: Service, http: httpx.Client) -> None:
    uploaded = http.post("/v1/files", files={"file": ("tiny-chat.jsonl", EXAMPLES.read_bytes())},
                         data={"purpose": "fine-tune"})
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["id"]
    config = {"model": "tiny-llama", "datasets": [{"name": "training-set", "split": "train", "file_ids": [file_id]}]}
    created = http.post("/v0.5/fine-tune/jobs", json={"name": "my-finetune-run", "config": config})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert re.fullmatch(r"ftj-my-finetune-run-[0-9a-f]{8}", job_id)

    # curl https://.../v0.5/fine-tune/jobs/ftj-my-finetune-run-3de60a5c -H "Authorization: Bearer $ATAI_API_KEY"
    first = record(http, job_id)
    seen = {first["status"]}

    def completed() -> dict[str, Any] | None:
        job = record(http, job_id)
        seen.add(job["status"])
        if job["status"] != "COMPLETED":
            assert job["inference_config_path"] is None
        return job if job["status"] in ("COMPLETED", "FAILED") else None

    job = wait_until(completed, timeout=600, interval=0.5)
    assert job["status"] == "COMPLETED", (job, service.log("serve.log"))
    assert seen <= {"REGISTERED", "STARTING", "RUNNING", "FINALIZING", "COMPLETED"}
    assert job["name"] == "my-finetune-run" and job["id"] == job_id and UUID.match(job["uuid"])
    assert job_id.endswith(job["uuid"][:8]) and UUID.match(job["org_uuid"])
    assert job["config"] == config
    assert job["created_at"] <= job["updated_at"]
    assert http.get(f"/v1/jobs/{job['uuid']}").json()["status"] == "completed"  # the same job in /v1

    inference = http.get(job["inference_config_path"])
    assert inference.status_code == 200, inference.text
    served = yaml.safe_load(inference.text)
    assert served["base_model"] == "tiny-llama" and served["adapter"]["type"] == "lora"
    assert served["chat_template"] and served["generation"]["max_tokens"] > 0
    weights = http.get(served["model"]["location"])
    assert weights.status_code == 200 and weights.content[:2] == b"\x1f\x8b"
    assert http.get(f"/v0.5/fine-tune/jobs/{'x' * 65}").status_code == 400

    # Cancel, in the same style: a longer job cancelled while it runs.
    many = http.post("/v1/files", files={"file": ("many.jsonl", EXAMPLES.read_bytes() * 40)},
                     data={"purpose": "fine-tune"}).json()["id"]
    long_config = {"model": "tiny-llama", "datasets": [{"name": "many", "split": "train", "file_ids": [many]}]}
    longer = http.post("/v0.5/fine-tune/jobs", json={"name": "long-run", "config": long_config}).json()
    wait_until(lambda: record(http, longer["id"])["status"] == "RUNNING", timeout=600, interval=0.5)
    cancelling = http.post(f"/v0.5/fine-tune/jobs/{longer['id']}/cancel")
    assert cancelling.status_code == 200 and cancelling.json()["status"] in ("STOPPING", "CANCELLED")
    wait_until(lambda: record(http, longer["id"])["status"] == "CANCELLED", timeout=120)
    assert record(http, longer["id"])["inference_config_path"] is None
