"""SmolLM2-135M-Instruct served by llama.cpp from its verified GGUF export, through the official
`openai` client (slow tier): the model exported to f16 by the export process and verified, activated
(llama_cpp is the default once a verified GGUF exists), chat completions streamed and not and a
completion; the serving process killed under a request in flight is a 503, then restarted. The model
row is SmolLM2's own weights as a full model (training it is the runner's SmolLM2 test's business)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, live_server
from tests.support.exports import require_llama_cpp
from tests.support.models import smollm2_gguf_path
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.ids import new_id
from tuneyard.store.tables import TrainedModel

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_smollm2_through_llama_cpp_with_the_openai_client(app: FastAPI, client: TestClient, db: Database,
                                                          api_settings: Settings, tenant: Tenant) -> None:
    require_llama_cpp()
    gguf = smollm2_gguf_path()
    model_id = new_id("model")
    with db.write() as session:
        session.add(TrainedModel(id=model_id, org_id=tenant.org_id, base_model="SmolLM2-135M-Instruct", datasets=[],
                                 kind="full", path=str(gguf), meta={}))
    export = client.post(f"/v1/models/{model_id}/exports", headers=tenant.headers,
                         json={"format": "gguf", "quantization": "f16"}).json()
    deadline = time.monotonic() + 1800
    while export["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, export
        time.sleep(2)
        export = client.get(f"/v1/models/{model_id}/exports/{export['id']}", headers=tenant.headers).json()
    assert export["status"] == "completed" and export["verification"]["passed"], export

    activated = client.post(f"/v1/models/{model_id}/activate", headers=tenant.headers, json={})
    assert activated.status_code == 200, activated.text
    assert activated.json()["backend"] == "llama_cpp" and activated.json()["export_id"] == export["id"]

    with live_server(app) as url:
        ai = openai.OpenAI(base_url=f"{url}/v1", api_key=tenant.key, max_retries=0, timeout=300)
        chat = ai.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=16, temperature=0)
        answer = chat.choices[0].message.content or ""
        print(f"\nSmolLM2 (llama.cpp, f16): {answer!r}")
        assert "Paris" in answer
        streamed = list(ai.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=16,
                                                   temperature=0, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in streamed) == answer
        completion = ai.completions.create(model=model_id, prompt="The capital of France is", max_tokens=4,
                                           temperature=0)
        assert "Paris" in completion.choices[0].text

        pid = client.get("/v1/serving", headers=tenant.admin_headers).json()["pid"]
        result: dict[str, Any] = {}

        def long_request() -> None:
            try:
                ai.completions.create(model=model_id, prompt="Count: 1, 2, 3,", max_tokens=1500, temperature=0)
            except openai.APIStatusError as exc:
                result["error"] = exc

        thread = threading.Thread(target=long_request)
        thread.start()
        while not any(m["busy"] for m in client.get("/v1/serving", headers=tenant.admin_headers).json()["models"]):
            assert thread.is_alive(), result
            time.sleep(0.05)
        os.killpg(pid, signal.SIGKILL)
        thread.join(300)
        assert result["error"].status_code == 503 and result["error"].body["code"] == "MODEL_PROCESS_DIED"
        again = ai.chat.completions.create(model=model_id, messages=QUESTION, max_tokens=16, temperature=0)
        assert again.choices[0].message.content == answer
    assert Path(api_settings.data_dir, "logs", "serving.log").is_file()
