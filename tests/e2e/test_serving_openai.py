"""The official `openai` client against a live `tuneyard serve`: a tiny-llama LoRA trained over HTTP,
activated, then chat completions (streamed and not) and completions; /v1/models lists it beside the
base models. The serving process killed under a request in flight (SIGKILL to its process group):
that request is a 503 the client reads as an APIStatusError with our code, and the next request is
answered by a restarted process. The slow tier does the same for SmolLM2 through llama.cpp on a
verified GGUF export (tests/e2e/test_serving_smollm2.py)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.test_service_jobs import submit
from tests.support.service import Service, wait_until
from tuneyard.client import find_api_key

pytestmark = pytest.mark.timeout(900)


def served_models(service: Service, key: str) -> dict[str, Any]:
    status: dict[str, Any] = httpx.get(f"{service.url}/v1/serving", headers={"Authorization": f"Bearer {key}"},
                                       timeout=10).json()
    return status


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # serving, not SQL, is under test
def test_openai_client_chats_with_a_trained_lora_and_survives_a_killed_model(service: Service) -> None:
    service.start_serve()
    tuneyard = service.client()
    done = tuneyard.wait(submit(tuneyard)["id"], timeout=300)
    assert done["status"] == "completed", (done, service.log("serve.log"))
    model_id = done["output_model_id"]
    key = find_api_key(service.data_dir)
    activated = httpx.post(f"{service.url}/v1/models/{model_id}/activate", json={"provider_model": "tiny-bot"},
                           headers={"Authorization": f"Bearer {key}"}, timeout=120)
    assert activated.status_code == 200, activated.text
    assert activated.json()["backend"] == "transformers"  # no GGUF export: the adapter on its base, unmerged

    client = openai.OpenAI(base_url=f"{service.url}/v1", api_key=key, max_retries=0, timeout=120)
    listed = {m.id: m for m in client.models.list()}
    assert model_id in listed and "tiny-llama" in listed and listed[model_id].owned_by

    chat = client.chat.completions.create(model=model_id, max_tokens=12, temperature=0,
                                          messages=[{"role": "user", "content": "What is 2 plus 3?"}])
    answer = chat.choices[0].message.content
    assert chat.model == model_id and chat.choices[0].finish_reason in ("stop", "length")
    assert isinstance(answer, str) and chat.usage is not None and 0 < chat.usage.completion_tokens <= 12

    stream = client.chat.completions.create(model="tiny-bot", max_tokens=12, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "What is 2 plus 3?"}])
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == answer  # greedy: the same answer
    assert chunks[-1].choices[0].finish_reason == chat.choices[0].finish_reason

    completion = client.completions.create(model=f"ft:tiny-llama:e2e:{model_id}", prompt="What is", max_tokens=5,
                                           temperature=0)
    assert completion.choices[0].finish_reason in ("stop", "length") and completion.usage is not None

    # Greedy base tiny-llama repeats itself and never ends: a long answer is in flight for seconds.
    pid = served_models(service, key)["pid"]
    result: dict[str, Any] = {}

    def long_request() -> None:
        try:
            client.completions.create(model="tiny-llama", prompt="The cat", max_tokens=4000, temperature=0)
        except openai.APIStatusError as exc:
            result["error"] = exc

    thread = threading.Thread(target=long_request)
    thread.start()
    wait_until(lambda: any(m["busy"] for m in served_models(service, key)["models"]), timeout=120)
    os.killpg(pid, signal.SIGKILL)
    thread.join(120)
    error = result["error"]
    assert error.status_code == 503 and error.body["code"] == "MODEL_PROCESS_DIED", error.body

    again = client.chat.completions.create(model=model_id, max_tokens=12, temperature=0,
                                           messages=[{"role": "user", "content": "What is 2 plus 3?"}])
    assert again.choices[0].message.content == answer
    restarted = served_models(service, key)
    assert restarted["pid"] not in (None, pid) and restarted["starts"] == 2

    serve = service.procs[0]
    serve.send_signal(signal.SIGTERM)
    serve.wait(90)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(restarted["pid"], 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the serving process outlived `tuneyard serve`")
