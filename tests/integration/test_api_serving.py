"""OpenAI-compatible serving in process: requests checked whole (422 naming the field) before a
model is touched, activation (durable across an app restart, by id, `ft:` name and provider_model,
another organization's model a 404; made by the first completion when no activate call came), and
a serving process killed under a request in flight: 503 with MODEL_PROCESS_DIED, then restarted for
the next request. Real models: tiny-llama, made on the spot, served by the real serving process
(tests/e2e/test_serving_openai.py drives a live server with the official openai client and a
trained LoRA)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, finished_job
from tuneyard.api.app import create_app
from tuneyard.serving.backends import Chunk, Finish, ModelToLoad, Prompt, Sampling
from tuneyard.serving.supervisor import ServingConfig, ServingRefused, ServingSupervisor
from tuneyard.settings import Settings
from tuneyard.store import activations, exports
from tuneyard.store.engine import Database
from tuneyard.store.ids import new_id
from tuneyard.store.tables import TrainedModel
from tuneyard.training.models.tiny_llama import ensure_tiny_llama

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

CHAT = "/v1/chat/completions"
HELLO = [{"role": "user", "content": "hello"}]


def problems(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [p["field"] for p in response.json()["error"]["details"]["problems"]]


def full_tiny_llama(db: Database, settings: Settings, org_id: str) -> str:
    """A trained model row whose weights are tiny-llama's own folder (full weights, loadable)."""
    return trained_model_at(db, org_id, ensure_tiny_llama(settings.resolved_model_cache_dir))


def trained_model_at(db: Database, org_id: str, folder: Path) -> str:
    model_id = new_id("model")
    with db.write() as session:
        session.add(TrainedModel(id=model_id, org_id=org_id, base_model="tiny-llama", datasets=[], kind="full",
                                 path=str(folder), meta={}))
    return model_id


def test_bad_requests_name_their_field(client: TestClient, tenant: Tenant) -> None:
    ok = {"model": "tiny-llama", "messages": HELLO}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**ok, "messages": []}, "messages"),
        ({**ok, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({**ok, "messages": [{"role": "user"}]}, "messages.0.content"),
        ({**ok, "max_tokens": 0}, "max_tokens"),
        ({**ok, "max_tokens": 100_000}, "max_tokens"),
        ({**ok, "temperature": 2.5}, "temperature"),
        ({**ok, "temperature": -0.1}, "temperature"),
        ({**ok, "top_p": 0}, "top_p"),
        ({**ok, "top_p": 1.5}, "top_p"),
        ({**ok, "n": 2}, "n"),
        ({**ok, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**ok, "stop": ""}, "stop"),
        ({**ok, "presence_penalty": 0.5}, "presence_penalty"),
        ({**ok, "logprobs": True}, "logprobs"),
        ({**ok, "max_tokens": 5, "max_completion_tokens": 5}, "max_completion_tokens"),
        ({"messages": HELLO}, "model"),
    ]
    for body, field in cases:
        fields = problems(client.post(CHAT, headers=tenant.headers, json=body))
        assert any(f == field or f.startswith(field + ".") for f in fields), (body, fields)
    two = problems(client.post("/v1/completions", headers=tenant.headers,
                               json={"model": "tiny-llama", "prompt": ["a", "b"]}))
    assert two and all(f.startswith("prompt") for f in two)
    unknown = client.post(CHAT, headers=tenant.headers, json={**ok, "model": "no-such-model"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"
    assert client.get("/v1/serving", headers=tenant.admin_headers).json()["pid"] is None  # nothing was started


def test_activation_by_id_ft_name_and_provider_model_survives_a_restart(
        client: TestClient, db: Database, api_settings: Settings, tenant: Tenant, other: Tenant) -> None:
    model_id = full_tiny_llama(db, api_settings, tenant.org_id)
    body = {"model": model_id, "messages": HELLO, "max_tokens": 4, "temperature": 0}
    assert problems(client.post(f"/v1/models/{model_id}/activate", headers=tenant.headers,
                                json={"backend": "llama_cpp"})) == ["backend"]  # no verified GGUF export
    assert problems(client.post(f"/v1/models/{model_id}/activate", headers=tenant.headers,
                                json={"provider_model": "tiny-llama"})) == ["provider_model"]
    assert client.post(f"/v1/models/{model_id}/activate", headers=other.headers, json={}).status_code == 404

    activated = client.post(f"/v1/models/{model_id}/activate", headers=tenant.headers,
                            json={"provider_model": "acme-bot"})
    assert activated.status_code == 200, activated.text
    assert activated.json() | {"activated_at": None} == {
        "object": "model.activation", "model_id": model_id, "active": True, "backend": "transformers",
        "export_id": None, "provider_model": "acme-bot", "activated_at": None}
    answers = {}
    with db.read() as session:
        model_uuid = session.get(TrainedModel, model_id).uuid  # type: ignore[union-attr]
    for name in (model_id, f"ft:tiny-llama:demo:{model_id}", "acme-bot", model_uuid):
        answer = client.post(CHAT, headers=tenant.headers, json={**body, "model": name})
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"] == name and answer.json()["object"] == "chat.completion"
        answers[name] = answer.json()["choices"][0]["message"]["content"]
    assert len(set(answers.values())) == 1  # greedy: one model, one answer, whatever the name
    for name in (model_id, "acme-bot", f"ft:tiny-llama:demo:{model_id}", model_uuid):
        assert client.post(CHAT, headers=other.headers, json={**body, "model": name}).status_code == 404

    second = full_tiny_llama(db, api_settings, tenant.org_id)
    taken = client.post(f"/v1/models/{second}/activate", headers=tenant.headers, json={"provider_model": "acme-bot"})
    assert taken.status_code == 409

    with TestClient(create_app(api_settings, db)) as restarted:  # a new API process over the same database
        shown = restarted.get(f"/v1/models/{model_id}/activation", headers=tenant.headers).json()
        assert shown["active"] and shown["provider_model"] == "acme-bot"
        again = restarted.post(CHAT, headers=tenant.headers, json={**body, "model": "acme-bot"})
        assert again.status_code == 200 and again.json()["choices"][0]["message"]["content"] == answers["acme-bot"]
        assert restarted.post(f"/v1/models/{model_id}/deactivate", headers=tenant.headers).json()["active"] is False
        assert restarted.get("/v1/serving", headers=tenant.admin_headers).json()["models"] == []  # memory freed
    assert client.get(f"/v1/models/{model_id}/activation", headers=tenant.headers).json()["active"] is False


def test_a_completion_activates_a_model_that_is_not_active(api_settings: Settings, db: Database,
                                                           tenant: Tenant, other: Tenant) -> None:
    """OpenAI has no activation step: the first completion naming a trained model loads it and
    records the activation activate's defaults would (transformers here: no GGUF export), kept
    across a restart and unloaded when idle like any other; what cannot be served says why."""
    settings = api_settings.with_overrides(serving_idle_seconds=2.0)
    model_id = full_tiny_llama(db, settings, tenant.org_id)
    body = {"model": f"ft:tiny-llama:demo:{model_id}", "messages": HELLO, "max_tokens": 4, "temperature": 0}
    with TestClient(create_app(settings, db)) as live:
        assert live.post(CHAT, headers=other.headers, json=body).status_code == 404
        assert live.get(f"/v1/models/{model_id}/activation", headers=tenant.headers).json()["active"] is False
        results: list[Any] = []
        racers = [threading.Thread(target=lambda: results.append(live.post(CHAT, headers=tenant.headers, json=body)))
                  for _ in range(2)]  # two first requests at once: both answered, one activation
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(120)
        assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
        assert results[0].json()["choices"][0]["message"]["content"] == results[1].json()["choices"][0]["message"][
            "content"] and results[0].json()["model"] == body["model"]
        shown = live.get(f"/v1/models/{model_id}/activation", headers=tenant.headers).json()
        assert shown["active"] and shown["backend"] == "transformers" and shown["export_id"] is None
        assert [a.model_id for a in activations.list_activations(db, tenant.org_id)] == [model_id]
        assert [m["key"] for m in live.get("/v1/serving", headers=tenant.admin_headers).json()["models"]] == [model_id]
        deadline = time.monotonic() + 30
        while live.get("/v1/serving", headers=tenant.admin_headers).json()["models"]:
            assert time.monotonic() < deadline, "the model activated on demand was never unloaded when idle"
            time.sleep(0.2)
        assert live.get(f"/v1/models/{model_id}/activation", headers=tenant.headers).json()["active"]

        unloadable = finished_job(live, db, settings, tenant)["model_id"]  # its final/ holds bytes, no adapter
        refused = live.post(CHAT, headers=tenant.headers, json={**body, "model": unloadable})
        assert problems(refused) == ["model"] and "cannot be served" in refused.json()["error"]["message"]
        assert live.get(f"/v1/models/{unloadable}/activation", headers=tenant.headers).json()["active"] is False

        # Activated for llama.cpp on a GGUF export whose file is gone since: a 409 saying what to do.
        export = exports.create_export(db, tenant.org_id, model_id, format="gguf", quantization="f16",
                                       variant="merged", exports_dir=str(settings.data_dir / "exports"))
        assert exports.claim(db, export.id)
        exports.finish(db, export.id, manifest={"gguf_file": "gone.f16.gguf", "verification": {"passed": True}})
        activations.activate(db, tenant.org_id, model_id, backend="llama_cpp", export_id=export.id,
                             provider_model=None)
        gone = live.post(CHAT, headers=tenant.headers, json=body)
        assert gone.status_code == 409, gone.text
        assert gone.json()["error"]["details"]["field"] == "model" and "activate it again" in gone.json()["error"][
            "message"]


def test_a_model_that_cannot_load_is_not_activated(client: TestClient, db: Database, api_settings: Settings,
                                                   tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)  # its final/ holds bytes, not an adapter
    refused = client.post(f"/v1/models/{done['model_id']}/activate", headers=tenant.headers, json={})
    assert problems(refused) == ["model"]
    assert client.get(f"/v1/models/{done['model_id']}/activation", headers=tenant.headers).json()["active"] is False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the process, not SQL, is under test
def test_a_model_whose_files_are_gone_or_corrupt_is_named_not_its_server_path(
        client: TestClient, db: Database, api_settings: Settings, tenant: Tenant,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 12: the loaders name the path they were given; an answer names the model instead, on the
    completion route and on activate (the console playground's first call). A corrupt weights file is
    refused like a missing one, by the process that stays up, not a crash read as "process died"."""
    elsewhere = tmp_path_factory.mktemp("models")  # outside the data folder, as a model root may be
    corrupt = elsewhere / "corrupt"
    shutil.copytree(ensure_tiny_llama(api_settings.resolved_model_cache_dir), corrupt)
    for weights in corrupt.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors " * 64)
    for folder in (elsewhere / "gone", corrupt):
        model_id = trained_model_at(db, tenant.org_id, folder)
        for route, body in ((f"/v1/models/{model_id}/activate", {}),
                            (CHAT, {"model": model_id, "messages": HELLO, "max_tokens": 2})):
            answer = client.post(route, headers=tenant.headers, json=body)
            assert problems(answer) == ["model"], (folder.name, route)
            assert f"cannot load {model_id}" in answer.json()["error"]["message"], answer.text
            for server_path in (str(elsewhere), str(api_settings.data_dir), "/tmp"):
                assert server_path not in answer.text, (folder.name, route, answer.text)
        assert ("not valid safetensors" if folder == corrupt else "no such file") in answer.text
    assert client.get("/v1/serving", headers=tenant.admin_headers).json()["starts"] == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the process, not SQL, is under test
def test_answers_streamed_and_not_and_a_killed_process_is_503_then_restarted(
        client: TestClient, tenant: Tenant) -> None:
    plain = client.post(CHAT, headers=tenant.headers,
                        json={"model": "tiny-llama", "messages": HELLO, "max_tokens": 8, "seed": 3})
    assert plain.status_code == 200, plain.text
    answer = plain.json()
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert answer["usage"]["completion_tokens"] <= 8 and answer["usage"]["prompt_tokens"] > 0

    streamed = client.post("/v1/completions", headers=tenant.headers,
                           json={"model": "tiny-llama", "prompt": "The cat", "max_tokens": 6, "temperature": 0,
                                 "stream": True, "stream_options": {"include_usage": True}})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    items = [line.removeprefix("data: ") for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert items[-1] == "[DONE]"
    chunks = [json.loads(i) for i in items[:-1]]
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert chunks[-1]["usage"]["completion_tokens"] == 6 and chunks[-2]["choices"][0]["finish_reason"] == "length"
    whole = client.post("/v1/completions", headers=tenant.headers,
                        json={"model": "tiny-llama", "prompt": "The cat", "max_tokens": 6, "temperature": 0})
    assert whole.json()["choices"][0]["text"] == text  # greedy: streamed and whole are the same text

    status = client.get("/v1/serving", headers=tenant.admin_headers).json()
    pid = status["pid"]
    # Greedy tiny-llama repeats " cat" and never ends: an answer of ~1000 tokens takes seconds.
    long = {"model": "tiny-llama", "prompt": "The cat", "max_tokens": 4000, "temperature": 0}
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.update(r=client.post("/v1/completions", headers=tenant.headers,
                                                                         json=long)))
    thread.start()
    deadline = time.monotonic() + 60
    while not any(m["busy"] for m in client.get("/v1/serving", headers=tenant.admin_headers).json()["models"]):
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.05)
    os.killpg(pid, signal.SIGKILL)
    thread.join(60)
    died = result["r"]
    assert died.status_code == 503, died.text
    assert died.json()["error"]["code"] == "MODEL_PROCESS_DIED"

    retried = client.post("/v1/completions", headers=tenant.headers,
                          json={"model": "tiny-llama", "prompt": "The cat", "max_tokens": 6, "temperature": 0})
    assert retried.status_code == 200 and retried.json()["choices"][0]["text"] == text
    restarted = client.get("/v1/serving", headers=tenant.admin_headers).json()
    assert restarted["pid"] not in (None, pid) and restarted["starts"] == 2

    # Killed mid-stream: the 200 is long sent, so the stream's last item says so, and no [DONE] follows.
    with client.stream("POST", "/v1/completions", headers=tenant.headers, json={**long, "stream": True}) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        os.killpg(restarted["pid"], signal.SIGKILL)
        rest = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert json.loads(rest[-1])["error"]["code"] == "MODEL_PROCESS_DIED" and "[DONE]" not in rest


def test_the_serving_process_stops_with_the_app(api_settings: Settings, db: Database, tenant: Tenant) -> None:
    with TestClient(create_app(api_settings, db)) as live:
        assert live.post(CHAT, headers=tenant.headers,
                         json={"model": "tiny-llama", "messages": HELLO, "max_tokens": 2}).status_code == 200
        pid = live.get("/v1/serving", headers=tenant.admin_headers).json()["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert (Path(api_settings.data_dir) / "logs" / "serving.log").is_file()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_idle_model_is_unloaded_and_loaded_again_on_demand(api_settings: Settings, db: Database,
                                                              tenant: Tenant) -> None:
    settings = api_settings.with_overrides(serving_idle_seconds=1.0)
    body = {"model": "tiny-llama", "prompt": "The cat", "max_tokens": 3, "temperature": 0}
    with TestClient(create_app(settings, db)) as live:
        first = live.post("/v1/completions", headers=tenant.headers, json=body).json()["choices"][0]["text"]
        loaded = live.get("/v1/serving", headers=tenant.admin_headers).json()
        assert [m["key"] for m in loaded["models"]] == ["base:tiny-llama"]
        deadline = time.monotonic() + 30
        while live.get("/v1/serving", headers=tenant.admin_headers).json()["models"]:
            assert time.monotonic() < deadline, "the idle model was never unloaded"
            time.sleep(0.2)
        again = live.post("/v1/completions", headers=tenant.headers, json=body).json()["choices"][0]["text"]
        assert again == first and live.get("/v1/serving", headers=tenant.admin_headers).json()["starts"] == 1


def test_a_request_queued_past_the_read_timeout_fails_alone(tmp_path: Path, api_settings: Settings) -> None:
    """One answer at a time per model: a request waiting behind a long one past read_timeout is
    refused (503 in the API), and the process, busy but alive, is not taken for dead."""
    config = ServingConfig(python=sys.executable, threads=1, nice=0, idle_seconds=600,
                           log_file=tmp_path / "serving.log")
    supervisor = ServingSupervisor(config)
    model = ModelToLoad("base:tiny-llama", "transformers", "tiny-llama", str(api_settings.resolved_model_cache_dir))
    try:
        supervisor.load(model)  # loading takes seconds: under the default timeout
        supervisor.config = replace(config, read_timeout=1.0)
        long = supervisor.generate(model, Prompt(text="The cat"), Sampling(max_tokens=1000, temperature=0))
        assert isinstance(next(long), Chunk)
        pid = supervisor.pid
        with pytest.raises(ServingRefused, match="did not answer within 1 s") as refused:
            list(supervisor.generate(model, Prompt(text="A dog"), Sampling(max_tokens=2, temperature=0)))
        assert not refused.value.user
        assert isinstance(list(long)[-1], Finish) and supervisor.pid == pid and supervisor.starts == 1
    finally:
        supervisor.stop()
