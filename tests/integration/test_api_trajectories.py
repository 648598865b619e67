"""Trajectories over HTTP: ingestion (one or a batch, idempotent on id), paging, detail, delete, the
JSONL import of chat logs, and every kind of bad input refused whole with the field named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, trajectory_body

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def post(client: TestClient, tenant: Tenant, body: Any) -> Any:
    return client.post("/v1/trajectories", headers=tenant.headers, json=body)


def test_ingest_one_then_a_batch_page_read_and_delete(client: TestClient, tenant: Tenant, other: Tenant) -> None:
    first = post(client, tenant, trajectory_body("t-1", task="support", calls=2))
    assert first.status_code == 201 and first.json() == {"created": ["t-1"], "existing": [], "autoTraining": []}
    again = trajectory_body("t-1", task="support", calls=2)
    batch = post(client, tenant, {"trajectories": [again, *(trajectory_body(f"t-{i}") for i in range(2, 6))]})
    assert batch.status_code == 201, batch.text
    assert batch.json()["created"] == ["t-2", "t-3", "t-4", "t-5"] and batch.json()["existing"] == ["t-1"]
    retry = post(client, tenant, trajectory_body("t-1", task="support", calls=2))
    assert retry.status_code == 200 and retry.json()["existing"] == ["t-1"]  # idempotent on id

    page = client.get("/v1/trajectories", headers=tenant.headers, params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and [t["id"] for t in page["trajectories"]] == ["t-4", "t-3"]
    assert client.get("/v1/trajectories", headers=tenant.headers, params={"task": "support"}).json()["total"] == 1

    detail = client.get("/v1/trajectories/t-1", headers=tenant.headers).json()
    assert detail["llmCallCount"] == 2 and detail["task"] == "support"
    question = {"role": "user", "content": "What is 1 plus 1?"}
    assert detail["llmCalls"][1] == {"model": "tiny-llama", "messages": [question], "response": "2."}
    assert client.get("/v1/trajectories/t-1", headers=other.headers).status_code == 404  # another organization's
    assert client.delete("/v1/trajectories/t-1", headers=tenant.headers).status_code == 204
    assert client.get("/v1/trajectories/t-1", headers=tenant.headers).status_code == 404
    assert client.get("/v1/trajectories", headers=tenant.headers).json()["total"] == 4


def test_an_id_without_one_is_made_and_provider_accesses_are_kept_as_given(client: TestClient, tenant: Tenant) -> None:
    body = {**trajectory_body(), "providerAccesses": [{"provider": "x", "nested": {"a": [1, 2]}}],
            "metadata": {"agent": "eliza"}}
    made = post(client, tenant, body).json()["created"][0]
    detail = client.get(f"/v1/trajectories/{made}", headers=tenant.headers).json()
    assert detail["providerAccesses"] == body["providerAccesses"] and detail["metadata"] == {"agent": "eliza"}


def log_line(question: str, answer: str = "Sure.", **extra: Any) -> str:
    return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                       **extra})


def test_import_of_chat_logs_twice_stores_each_line_once(client: TestClient, tenant: Tenant) -> None:
    logged = {"request": {"model": "gpt-x", "messages": [{"role": "user", "content": "Hi"}]},
              "response": {"choices": [{"message": {"role": "assistant", "content": "Hello."}}]}}
    text = "\n".join([log_line("a?"), "", log_line("b?", model="m", task="qa"), json.dumps(logged)]) + "\n"
    first = client.post("/v1/trajectory-imports", headers=tenant.headers, content=text.encode())
    assert first.status_code == 201 and len(first.json()["created"]) == 3, first.text
    again = client.post("/v1/trajectory-imports", headers=tenant.headers, content=text.encode())
    assert again.status_code == 200 and sorted(again.json()["existing"]) == sorted(first.json()["created"])
    items = client.get("/v1/trajectories", headers=tenant.headers).json()["trajectories"]
    assert sorted(i["models"][0] for i in items) == ["gpt-x", "m", "unknown"]
    assert sorted(str(i["task"]) for i in items) == ["None", "None", "qa"]


GOOD = trajectory_body("good")


def call(**changes: Any) -> dict[str, Any]:
    return {**GOOD, "llmCalls": [{**GOOD["llmCalls"][0], **changes}]}


def message(**changes: Any) -> dict[str, Any]:
    return call(messages=[{"role": "user", "content": "hi", **changes}])


BAD_LINES = "\n".join([log_line("fine"), "{not json", log_line("fine too"),
                       json.dumps({"messages": [{"role": "user", "content": "no answer"}]}),
                       json.dumps({"messages": [{"role": "wizard", "content": "x"},
                                                {"role": "assistant", "content": "y"}]}),
                       "[1, 2]"])

# (what is wrong, how it is sent, status, the fields the answer must name)
BAD: list[tuple[str, dict[str, Any], int, list[str]]] = [
    ("no llmCalls", {"json": {k: v for k, v in GOOD.items() if k != "llmCalls"}}, 422, ["llmCalls"]),
    ("no startTime", {"json": {k: v for k, v in GOOD.items() if k != "startTime"}}, 422, ["startTime"]),
    ("startTime a string", {"json": {**GOOD, "startTime": "yesterday"}}, 422, ["startTime"]),
    ("negative startTime", {"json": {**GOOD, "startTime": -1}}, 422, ["startTime"]),
    ("ends before it starts", {"json": {**GOOD, "endTime": 1}}, 422, ["(body)"]),
    ("unknown status", {"json": {**GOOD, "status": "done"}}, 422, ["status"]),
    ("source wider than its column", {"json": {**GOOD, "source": "s" * 129}}, 422, ["source"]),  # was a 500 on PG
    ("unknown role", {"json": message(role="wizard")}, 422, ["llmCalls.0.messages.0.role"]),
    ("content not text", {"json": message(content=42)}, 422, ["llmCalls.0.messages.0.content"]),
    ("message without content", {"json": call(messages=[{"role": "user"}])}, 422, ["llmCalls.0.messages.0.content"]),
    ("no messages", {"json": call(messages=[])}, 422, ["llmCalls.0.messages"]),
    ("no response", {"json": {**GOOD, "llmCalls": [{"model": "m", "messages": [{"role": "user", "content": "x"}]}]}},
     422, ["llmCalls.0.response"]),
    ("no model", {"json": {**GOOD, "llmCalls": [{"messages": [{"role": "user", "content": "x"}], "response": "y"}]}},
     422, ["llmCalls.0.model"]),
    ("a call that is not an object", {"json": {**GOOD, "llmCalls": ["hello"]}}, 422, ["llmCalls.0"]),
    ("unknown field", {"json": {**GOOD, "colour": "red"}}, 422, ["colour"]),
    ("id that is a path", {"json": {**GOOD, "id": "../etc"}}, 422, ["id"]),
    ("task with spaces", {"json": {**GOOD, "task": "a task"}}, 422, ["task"]),
    ("providerAccesses not a list", {"json": {**GOOD, "providerAccesses": {"a": 1}}}, 422, ["providerAccesses"]),
    ("content past its bound", {"json": message(content="x" * 200_001)}, 422, ["llmCalls.0.messages.0.content"]),
    ("empty batch", {"json": {"trajectories": []}}, 422, ["trajectories"]),
    ("batch past its bound", {"json": {"trajectories": [GOOD] * 101}}, 422, ["trajectories"]),
    ("one bad item in a batch", {"json": {"trajectories": [GOOD, {**GOOD, "id": "b", "status": "?"}]}}, 422,
     ["trajectories.1.status"]),
    ("an id twice in a batch", {"json": {"trajectories": [GOOD, GOOD]}}, 422, ["trajectories"]),
    ("body not JSON", {"content": b"{", "headers": {"Content-Type": "application/json"}}, 400, []),
    ("body over 1 MiB", {"json": message(content="x" * (1024 * 1024 + 1))}, 413, []),
    ("import with bad lines", {"path": "/v1/trajectory-imports", "content": BAD_LINES.encode()}, 422,
     ["lines.2", "lines.4", "lines.5.llmCalls.0.messages.0.role", "lines.6"]),
    ("import not UTF-8", {"path": "/v1/trajectory-imports", "content": b"\xff\xfe{}"}, 422, ["(body)"]),
    ("import of nothing", {"path": "/v1/trajectory-imports", "content": b"\n\n"}, 422, ["file"]),
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bad_input_is_refused_whole_naming_each_field(client: TestClient, tenant: Tenant) -> None:
    assert len(BAD) >= 15
    failures = []
    for what, sent, status, fields in BAD:
        sent = dict(sent)
        path = sent.pop("path", "/v1/trajectories")
        response = client.post(path, headers={**tenant.headers, **sent.pop("headers", {})}, **sent)
        named = [p["field"] for p in response.json()["error"]["details"].get("problems", [])] \
            if response.headers.get("content-type") == "application/json" else []
        if response.status_code != status or (fields and named != fields):
            failures.append(f"{what}: {response.status_code} {named} (expected {status} {fields})")
    assert not failures, "\n".join(failures)
    assert client.get("/v1/trajectories", headers=tenant.headers).json()["total"] == 0  # nothing half-stored


def test_the_same_id_with_other_content_is_a_conflict_and_changes_nothing(client: TestClient, tenant: Tenant) -> None:
    assert post(client, tenant, trajectory_body("same")).status_code == 201
    edited = {**trajectory_body("same"), "source": "x"}
    changed = post(client, tenant, {"trajectories": [trajectory_body("new"), edited]})
    assert changed.status_code == 409 and "same" in changed.json()["error"]["message"]
    assert client.get("/v1/trajectories", headers=tenant.headers).json()["total"] == 1  # not even "new"
