"""Document 002 (a local Training API), replayed against a live `tuneyard serve --auth none` training
tiny-llama: its curl lines as printed (no key; the resume body in curl's default form content type),
the base model substituted by tiny-llama and `alpaca.jsonl` a chat file in the dataset folder. The job
completes, its output lists and downloads, the merge job it makes completes, and a job stopped
elsewhere resumes from `checkpoint-N` and completes."""

from __future__ import annotations

import shutil
import time
from typing import Any

import httpx
import pytest

from tests.e2e.test_service_jobs import EXAMPLES
from tests.support.service import Service, wait_until

# Three jobs and a merge train one after another: past the default 600 s on a loaded 2-core machine.
pytestmark = pytest.mark.timeout(1500)

PRINTED = {"base_model": "tiny-llama", "dataset_path": "alpaca.jsonl", "method": "lora", "num_epochs": 3,
           "batch_size": 4, "lora_rank": 16, "eval_split": 0.1}
"""002's printed submission, its base model (Qwen/Qwen2.5-7B-Instruct; no hub here) substituted."""
ENDED = {"completed", "failed", "cancelled"}


def finished(curl: httpx.Client, job_id: str, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, Any] = curl.get(f"/api/training/jobs/{job_id}").json()
        if answer["status"] in ENDED:
            return answer
        assert time.monotonic() < deadline, answer
        time.sleep(1)


def test_document_002_replayed(service: Service) -> None:
    root = service.data_dir / "datasets"
    root.mkdir(parents=True)
    shutil.copy(EXAMPLES, root / "alpaca.jsonl")
    service.start_serve(TUNEYARD_AUTH="none")
    with httpx.Client(base_url=service.url, timeout=60) as curl:  # no key, as the document's curl lines
        # Submit a job.
        submitted = curl.post("/api/training/jobs", headers={"Content-Type": "application/json"}, json=PRINTED)
        assert submitted.status_code == 201, submitted.text
        body = submitted.json()
        assert body["status"] == "pending" and body["job_id"]
        assert body["config"]["base_model"] == "tiny-llama" and body["config"]["method"] == "lora"
        job_id = body["job_id"]
        done = finished(curl, job_id)
        assert done["status"] == "completed", done
        assert done["job"]["progress"] == 1.0 and done["job"]["currentIteration"] == done["job"]["totalIterations"]
        assert curl.get(f"/api/training/jobs/{job_id}/logs", params={"tail": 3}).json()["lines"][-1].startswith(
            "completed")

        # List output artifacts, and fetch each.
        output = curl.get(f"/api/training/jobs/{job_id}/output")
        assert output.status_code == 200, output.text
        listed = output.json()
        assert listed["job_id"] == job_id and listed["status"] == "completed"
        assert listed["total_files"] == len(listed["files"]) > 0
        names = {f["name"] for f in listed["files"]}
        assert {"adapter_model.safetensors", "adapter_config.json"} <= names
        for item in listed["files"]:
            assert set(item) == {"name", "size_mb", "download_url"}
            fetched = httpx.get(item["download_url"], timeout=60)
            assert fetched.status_code == 200 and round(len(fetched.content) / 2**20, 2) == item["size_mb"]

        # Merge the LoRA adapter: a merge job to poll.
        merged = curl.post(f"/api/training/jobs/{job_id}/merge")
        assert merged.status_code == 201, merged.text
        merge = finished(curl, merged.json()["merge_job_id"])
        assert merge["status"] == "completed", merge
        merged_files = curl.get(f"/api/training/jobs/{merge['job_id']}/output").json()["files"]
        assert "model.safetensors" in {f["name"] for f in merged_files}

        # Resume from a checkpoint: a longer job, stopped through /v1, resumed from checkpoint-N.
        # 12 epochs of 15 steps: ~10 s on a quiet host (4 took ~5 s, and a stop could come too late)
        longer = curl.post("/api/training/jobs", json={**PRINTED, "num_epochs": 12}).json()["job_id"]

        def checkpointed() -> int | None:
            step = curl.get(f"/v1/jobs/{longer}").json()["last_checkpoint_step"]
            return step if step else None

        wait_until(checkpointed, timeout=600, interval=0.5)
        assert curl.post(f"/v1/jobs/{longer}/stop").status_code == 200
        wait_until(lambda: curl.get(f"/v1/jobs/{longer}").json()["status"] == "stopped", timeout=300)
        # The stop saves a checkpoint of its own, and save_total_limit may prune the one seen before it:
        # resume from one the stopped job still has.
        step = checkpointed()
        assert step is not None
        assert curl.get(f"/api/training/jobs/{longer}").json()["status"] == "cancelled"  # 002 has no stopped
        resumed = curl.post(f"/api/training/jobs/{longer}/resume", content=f'{{"checkpoint": "checkpoint-{step}"}}',
                            headers={"Content-Type": "application/x-www-form-urlencoded"})  # curl -d, as printed
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["status"] == "pending"
        done = finished(curl, longer)
        assert done["status"] == "completed", done
        logs = curl.get(f"/api/training/jobs/{longer}/logs", params={"tail": 1000}).json()["lines"]
        assert any(line.startswith(f"resumed from step-{step:06d}") for line in logs)
