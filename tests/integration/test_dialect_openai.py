"""OpenAI's fine-tuning API in process, on both databases: a create body becomes the finetune job it
means (supervised → lora on chat data, dpo → dpo on preference pairs, "auto" → tuneyard's defaults),
shown in OpenAI's words and as the same job in /v1; every bad request is OpenAI's 400/401/404 envelope
naming the parameter at fault, with nothing created. The live run with the official client is
tests/e2e/test_openai_ft.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, chat_lines, upload
from tuneyard.services.submission import default_hyperparams
from tuneyard.settings import Settings
from tuneyard.store.engine import Database

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

JOBS = "/v1/fine_tuning/jobs"
JOB_FIELDS = {"id", "object", "created_at", "finished_at", "model", "fine_tuned_model", "status", "trained_tokens",
              "training_file", "validation_file", "hyperparameters", "method", "seed", "metadata", "error",
              "result_files", "organization_id", "estimated_finish"}


def pair_lines(n: int) -> bytes:
    rows = [{"input": {"messages": [{"role": "user", "content": f"What is {i} plus 1?"}]},
             "preferred_output": [{"role": "assistant", "content": f"{i + 1}."}],
             "non_preferred_output": [{"role": "assistant", "content": "No idea."}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def counts(client: TestClient, tenant: Tenant) -> tuple[int, int]:
    jobs = client.get("/v1/jobs", headers=tenant.headers).json()["data"]
    datasets = client.get("/v1/datasets", headers=tenant.headers).json()["data"]
    return len(jobs), len(datasets)


def test_a_supervised_job_is_a_lora_job_in_openai_words(
    client: TestClient, db: Database, settings: Settings, tenant: Tenant
) -> None:
    train, valid = upload(client, tenant, chat_lines(6)), upload(client, tenant, chat_lines(3), "valid.jsonl")
    body = {"model": "tiny-llama", "training_file": train["id"], "validation_file": valid["uuid"], "suffix": "adder",
            "seed": 42, "metadata": {"team": "a"},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {
                "n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}}}}
    response = client.post(JOBS, headers=tenant.headers, json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    assert set(job) >= JOB_FIELDS and job["object"] == "fine_tuning.job" and job["status"] == "queued"
    assert (job["model"], job["training_file"], job["validation_file"]) == ("tiny-llama", train["id"], valid["uuid"])
    assert job["seed"] == 42 and job["metadata"] == {"team": "a"} and job["fine_tuned_model"] is None
    assert job["hyperparameters"]["n_epochs"] == 2 and job["hyperparameters"]["learning_rate_multiplier"] == 0.5
    assert job["method"]["type"] == "supervised" and job["organization_id"] == tenant.org_id
    native = client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()
    default_lr = default_hyperparams(db, settings, tenant.org_id, "tiny-llama", "lora")["learning_rate"]
    hp = native["config"]["hyperparams"]
    assert native["config"]["method"] == "lora" and hp["epochs"] == 2 and hp["seed"] == 42
    assert hp["learning_rate"] == pytest.approx(0.5 * default_lr)
    assert hp["batch_size"] == default_hyperparams(db, settings, tenant.org_id, "tiny-llama", "lora")["batch_size"]
    assert [d["split"] for d in native["config"]["datasets"]] == ["train", "eval"]
    assert client.get(f"{JOBS}/{job['id']}", headers=tenant.headers).json()["id"] == job["id"]
    cancelled = client.post(f"{JOBS}/{job['id']}/cancel", headers=tenant.headers).json()
    assert cancelled["status"] == "cancelled"
    assert client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()["status"] == "cancelled"


def test_a_dpo_job_and_the_deprecated_hyperparameters(client: TestClient, tenant: Tenant) -> None:
    pairs = upload(client, tenant, pair_lines(4), "pairs.jsonl")
    dpo = client.post(JOBS, headers=tenant.headers, json={
        "model": "tiny-llama", "training_file": pairs["id"],
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.25, "n_epochs": "auto"}}}})
    assert dpo.status_code == 200, dpo.text
    assert dpo.json()["method"]["type"] == "dpo" and dpo.json()["method"]["dpo"]["hyperparameters"]["beta"] == 0.25
    native = client.get(f"/v1/jobs/{dpo.json()['id']}", headers=tenant.headers).json()
    assert native["config"]["method"] == "dpo" and native["config"]["hyperparams"]["beta"] == 0.25
    chats = upload(client, tenant, chat_lines(4))
    old = client.post(JOBS, headers=tenant.headers, json={
        "model": "tiny-llama", "training_file": chats["id"], "hyperparameters": {"n_epochs": 3}})
    assert old.status_code == 200, old.text
    assert old.json()["method"]["type"] == "supervised" and old.json()["hyperparameters"]["n_epochs"] == 3


def test_list_pages_by_after_and_filters_by_metadata(client: TestClient, tenant: Tenant) -> None:
    chats = upload(client, tenant, chat_lines(4))
    made = [client.post(JOBS, headers=tenant.headers, json={
        "model": "tiny-llama", "training_file": chats["id"], "metadata": {"run": str(i % 2)}}).json()["id"]
        for i in range(3)]
    first = client.get(JOBS, headers=tenant.headers, params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [j["id"] for j in first["data"]] == made[::-1][:2]
    rest = client.get(JOBS, headers=tenant.headers, params={"limit": 2, "after": made[1]}).json()
    assert [j["id"] for j in rest["data"]] == [made[0]] and rest["has_more"] is False
    even = client.get(JOBS, headers=tenant.headers, params={"metadata[run]": "0"}).json()
    assert [j["id"] for j in even["data"]] == [made[2], made[0]]


Case = tuple[str, str, str, Any, int, str | None]
"""(what, method, path, body or params, status, the param named)."""


def cases(files: dict[str, str], foreign: str) -> list[Case]:
    chats, pairs = files["chats"], files["pairs"]
    good = {"model": "tiny-llama", "training_file": chats}

    def sup(**hp: Any) -> dict[str, Any]:
        return {**good, "method": {"type": "supervised", "supervised": {"hyperparameters": hp}}}

    return [
        ("body not an object", "POST", JOBS, ["tiny-llama"], 400, "(body)"),
        ("model missing", "POST", JOBS, {"training_file": chats}, 400, "model"),
        ("training_file missing", "POST", JOBS, {"model": "tiny-llama"}, 400, "training_file"),
        ("model not a string", "POST", JOBS, {**good, "model": 7}, 400, "model"),
        ("unknown training file", "POST", JOBS, {**good, "training_file": "file_0123456789abcdef01234567"}, 400,
         "training_file"),
        ("another organization's file", "POST", JOBS, {**good, "training_file": foreign}, 400, "training_file"),
        ("unknown validation file", "POST", JOBS, {**good, "validation_file": "file_nope"}, 400, "validation_file"),
        ("unknown model", "POST", JOBS, {**good, "model": "gpt-9"}, 400, "model"),
        ("unknown fine-tuned model", "POST", JOBS, {**good, "model": "ft:tiny-llama::model_nope"}, 400, "model"),
        ("reinforcement", "POST", JOBS, {**good, "method": {"type": "reinforcement"}}, 400, "method.type"),
        ("unknown method", "POST", JOBS, {**good, "method": {"type": "rlhf"}}, 400, "method.type"),
        ("n_epochs 0", "POST", JOBS, sup(n_epochs=0), 400, "method.supervised.hyperparameters.n_epochs"),
        ("n_epochs a word", "POST", JOBS, sup(n_epochs="three"), 400, "method.supervised.hyperparameters.n_epochs"),
        ("n_epochs a numeric string", "POST", JOBS, sup(n_epochs="3"), 400,
         "method.supervised.hyperparameters.n_epochs"),
        ("batch_size a float", "POST", JOBS, sup(batch_size=2.5), 400, "method.supervised.hyperparameters.batch_size"),
        ("negative multiplier", "POST", JOBS, sup(learning_rate_multiplier=-1), 400,
         "method.supervised.hyperparameters.learning_rate_multiplier"),
        ("beta under supervised", "POST", JOBS, sup(beta=0.1), 400, "method.supervised.hyperparameters.beta"),
        ("beta 0", "POST", JOBS, {**good, "training_file": pairs, "method": {
            "type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}}, 400, "method.dpo.hyperparameters.beta"),
        ("settings of the other method", "POST", JOBS, {**good, "method": {"type": "dpo", "supervised": {}}}, 400,
         "method"),
        ("hyperparameters twice", "POST", JOBS, {**sup(), "hyperparameters": {"n_epochs": 1}}, 400, "(body)"),
        ("suffix with a colon", "POST", JOBS, {**good, "suffix": "a:b"}, 400, "suffix"),
        ("suffix too long", "POST", JOBS, {**good, "suffix": "s" * 65}, 400, "suffix"),
        ("negative seed", "POST", JOBS, {**good, "seed": -1}, 400, "seed"),
        ("metadata value not text", "POST", JOBS, {**good, "metadata": {"k": 1}}, 400, "metadata.k"),
        ("seventeen metadata keys", "POST", JOBS, {**good, "metadata": {str(i): "v" for i in range(17)}}, 400,
         "metadata"),
        ("unknown field", "POST", JOBS, {**good, "integrations": [{"type": "wandb"}]}, 400, "integrations"),
        ("chat data for dpo", "POST", JOBS, {**good, "method": {"type": "dpo"}}, 400, "training_file"),
        ("pairs for supervised", "POST", JOBS, {**good, "training_file": pairs}, 400, "training_file"),
        ("list after an unknown job", "GET", JOBS, {"after": "job_nope"}, 400, "after"),
        ("list limit 0", "GET", JOBS, {"limit": 0}, 400, "limit"),
        ("unknown job", "GET", f"{JOBS}/job_0123456789abcdef01234567", None, 404, None),
        ("cancel an unknown job", "POST", f"{JOBS}/job_nope/cancel", None, 404, None),
    ]


def test_bad_requests_are_openai_errors_naming_the_param_and_create_nothing(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    files = {"chats": upload(client, tenant, chat_lines(3))["id"],
             "pairs": upload(client, tenant, pair_lines(3), "pairs.jsonl")["id"]}
    foreign = upload(client, other, chat_lines(3))["id"]
    assert client.post(JOBS, headers=tenant.headers, json={"model": "tiny-llama", "training_file": files["chats"]}
                       ).status_code == 200  # the good file's dataset exists from here on
    before = counts(client, tenant)
    table = cases(files, foreign)
    assert len(table) >= 15
    for what, method, path, given, status, param in table:
        send: Callable[..., Any] = client.post if method == "POST" else client.get
        kwargs = {"json": given} if method == "POST" else {"params": given}
        response = send(path, headers=tenant.headers, **kwargs)
        assert response.status_code == status, (what, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, what
        assert error["type"] == "invalid_request_error" and error["message"], (what, error)
        if param is not None:
            assert error["param"] == param, (what, error)
        assert counts(client, tenant) == before, what


def test_a_job_of_another_organization_is_404_and_no_key_is_401(
    client: TestClient, tenant: Tenant, other: Tenant
) -> None:
    chats = upload(client, tenant, chat_lines(3))
    job = client.post(JOBS, headers=tenant.headers, json={"model": "tiny-llama", "training_file": chats["id"]}).json()
    for suffix, method in (("", "GET"), ("/cancel", "POST"), ("/pause", "POST"), ("/resume", "POST"),
                           ("/events", "GET"), ("/checkpoints", "GET")):
        response = client.request(method, f"{JOBS}/{job['id']}{suffix}", headers=other.headers)
        assert response.status_code == 404, (suffix, response.text)
        assert response.json()["error"]["type"] == "invalid_request_error"
    unauthorized = client.get(JOBS)
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["type"] == "authentication_error"
    assert client.get(f"/v1/jobs/{job['id']}", headers=tenant.headers).json()["status"] == "queued"
