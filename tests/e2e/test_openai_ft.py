"""The official `openai` client against a live `tuneyard serve` training tiny-llama, given nothing but
`base_url=<server>/v1` and a key: upload, create, pause → paused → resume → succeeded, events,
checkpoints, a chat completion from the fine-tuned model with no activate call before it, a job
trained further from a checkpoint's name, a cancel, and a DPO job whose preference accuracy on its
training pairs rises."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openai import BadRequestError, NotFoundError, OpenAI

from tests.support.service import Service, wait_until
from tuneyard.client import find_api_key

CHATS = [{"messages": [{"role": "user", "content": f"What is {i} plus {i % 3}?"},
                       {"role": "assistant", "content": f"{i + i % 3}."}]} for i in range(8)]
PAIRS = [{"input": {"messages": [{"role": "user", "content": f"What is {i} plus 2?"}]},
          "preferred_output": [{"role": "assistant", "content": f"{i + 2}."}],
          "non_preferred_output": [{"role": "assistant", "content": f"I do not know, maybe {i * 7 + 5}?"}]}
         for i in range(8)]


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def served(service: Service) -> Iterator[tuple[OpenAI, httpx.Client]]:
    """The official client, and a plain one for what only the native API shows (the same job's row)."""
    service.start_serve(workers=1)
    key = find_api_key(service.data_dir)
    with httpx.Client(base_url=service.url, timeout=60, headers={"Authorization": f"Bearer {key}"}) as native, \
            OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0) as openai:
        yield openai, native


def until(openai: OpenAI, job_id: str, *statuses: str, timeout: float = 900) -> Any:
    """The job once its status is one of `statuses` (on a loaded 2-core machine tiny-llama may train at
    a few tokens a second, so the wait is long); a job that failed or was cancelled on the way fails."""
    def reached() -> Any:
        job = openai.fine_tuning.jobs.retrieve(job_id)
        assert job.status not in {"failed", "cancelled"} - set(statuses), job
        return job if job.status in statuses else None
    return wait_until(reached, timeout=timeout, interval=0.3)


@pytest.mark.timeout(1200)  # two jobs, a pause and a resume, a served model: past 600 s on a loaded host
def test_the_openai_client_fine_tunes_pauses_resumes_serves_and_cancels(served: tuple[OpenAI, httpx.Client]) -> None:
    openai, native = served
    file = openai.files.create(file=("chats.jsonl", jsonl(CHATS)), purpose="fine-tune")
    assert (file.object, file.purpose, file.bytes) == ("file", "fine-tune", len(jsonl(CHATS)))
    assert [f.id for f in openai.files.list()] == [file.id]
    job = openai.fine_tuning.jobs.create(
        model="tiny-llama", training_file=file.id, suffix="adder", seed=7, metadata={"case": "e2e"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 40, "batch_size": 2}}})
    assert (job.object, job.status, job.seed, job.metadata) == ("fine_tuning.job", "queued", 7, {"case": "e2e"})
    doomed = openai.fine_tuning.jobs.create(model="tiny-llama", training_file=file.id)  # queued behind it
    assert openai.fine_tuning.jobs.cancel(doomed.id).status == "cancelled"

    def training() -> dict[str, Any] | None:
        """The native job once it has taken two steps, or once it ended: 160 steps (8 chats, batch 2,
        40 epochs) take ~10 s on a quiet host, so a pause arrives while it runs, which is checked."""
        now = native.get(f"/v1/jobs/{job.id}").json()
        step = int((now.get("progress") or {}).get("step") or 0)
        return now if step >= 2 or now["status"] in ("completed", "failed", "cancelled") else None
    assert wait_until(training, timeout=600)["status"] == "running"
    assert openai.fine_tuning.jobs.pause(job.id).status in ("pausing", "paused")
    paused = until(openai, job.id, "paused")
    assert native.get(f"/v1/jobs/{job.id}").json()["status"] == "stopped"  # one job, seen natively
    assert openai.fine_tuning.jobs.resume(paused.id).status in ("queued", "running")
    done = until(openai, job.id, "succeeded")
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:tiny-llama:adder:")
    assert done.trained_tokens and done.trained_tokens > 0 and done.finished_at
    assert [j.id for j in openai.fine_tuning.jobs.list(metadata={"case": "e2e"})] == [job.id]

    events = list(openai.fine_tuning.jobs.list_events(job.id, limit=5))  # pages by `after` through them all
    kinds = {e.type for e in events}
    assert kinds == {"message", "metrics"} and len({e.id for e in events}) == len(events)
    assert any("stop" in e.message for e in events) and any("resumed" in e.message for e in events)
    checkpoints = openai.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and all(c.fine_tuned_model_checkpoint.startswith("ft:tiny-llama:adder:") for c in checkpoints)
    assert [c.step_number for c in checkpoints] == sorted((c.step_number for c in checkpoints), reverse=True)

    # Straight after the job, as OpenAI's users do: no activate call; the completion activates it.
    model_id = done.fine_tuned_model.rsplit(":", 1)[-1]
    assert native.get(f"/v1/models/{model_id}/activation").json()["active"] is False
    answer = openai.chat.completions.create(model=done.fine_tuned_model, max_tokens=4,
                                            messages=[{"role": "user", "content": "What is 2 plus 2?"}])
    assert answer.model == done.fine_tuned_model and isinstance(answer.choices[0].message.content, str)
    activation = native.get(f"/v1/models/{model_id}/activation").json()
    assert activation["active"] and activation["backend"] == "transformers"  # recorded, as activate would

    further = openai.fine_tuning.jobs.create(model=checkpoints[-1].fine_tuned_model_checkpoint, training_file=file.id,
                                             hyperparameters={"n_epochs": 1})
    assert until(openai, further.id, "succeeded").fine_tuned_model.startswith("ft:tiny-llama::")
    with pytest.raises(BadRequestError) as bad:
        openai.fine_tuning.jobs.create(model="tiny-llama", training_file="file_nope")
    assert bad.value.body["param"] == "training_file"  # type: ignore[index]
    with pytest.raises(NotFoundError):
        openai.fine_tuning.jobs.retrieve("job_0123456789abcdef01234567")


# SQLite only: DPO's loss is under test here, and its job goes through the store as the supervised job
# above does, which runs on both databases (each run here costs minutes of CI).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_dpo_job_through_the_client_ranks_its_pairs_better(served: tuple[OpenAI, httpx.Client]) -> None:
    openai, native = served
    pairs = openai.files.create(file=("pairs.jsonl", jsonl(PAIRS)), purpose="fine-tune")
    job = openai.fine_tuning.jobs.create(model="tiny-llama", training_file=pairs.id, method={
        "type": "dpo", "dpo": {"hyperparameters": {"beta": 0.5, "n_epochs": 8, "batch_size": 4,
                                                   "learning_rate_multiplier": 3}}})
    done = until(openai, job.id, "succeeded")
    assert done.method and done.method.type == "dpo" and done.method.dpo.hyperparameters.beta == 0.5  # type: ignore[union-attr]
    result = native.get(f"/v1/jobs/{job.id}/result").json()
    assert result["preference_accuracy_baseline"] == 0.0
    assert result["preference_accuracy_final"] > 0.5, result
    metrics = [e for e in openai.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert all("preference_accuracy" in (e.data or {}) for e in metrics)
