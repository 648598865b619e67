"""Every operation of the OpenAPI document × {no key, member key, admin key} → the status its role gives.

`ROLES` decides each operation's role once: a route added later without a line here fails
`test_every_operation_has_a_role`, so nobody adds one without deciding who may call it. Admin
routes answer a member key 403 FORBIDDEN (the envelope's code) and document that 403; each role
gets its own objects of one organization, so a DELETE of one does not change the other's answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import (
    Tenant,
    chat_lines,
    chat_log_line,
    fill,
    finished_job,
    job_body,
    trajectory_body,
)
from tuneyard.settings import Settings
from tuneyard.store import tenancy

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

ADMIN, MEMBER, PUBLIC = "admin", "member", "public"
Op = tuple[str, str]

# (method, path) → (role, the status a caller with that role gets in this test's requests).
ROLES: dict[Op, tuple[str, int]] = {
    ("GET", "/healthz"): (PUBLIC, 200),
    ("GET", "/metrics"): (ADMIN, 200),
    ("GET", "/v1/stats"): (MEMBER, 200),
    ("GET", "/v1/keys"): (ADMIN, 200),
    ("POST", "/v1/keys"): (ADMIN, 201),
    ("DELETE", "/v1/keys/{key_id}"): (ADMIN, 204),
    ("GET", "/v1/base-models"): (MEMBER, 200),
    ("POST", "/v1/base-models"): (ADMIN, 201),
    ("GET", "/v1/base-models/{model_id}"): (MEMBER, 200),
    ("GET", "/v1/models"): (MEMBER, 200),
    ("GET", "/v1/models/{model_id}"): (MEMBER, 200),
    ("DELETE", "/v1/models/{model_id}"): (MEMBER, 204),
    ("POST", "/v1/models/{model_id}/exports"): (MEMBER, 422),  # a GGUF of the adapter as is: refused up front
    ("GET", "/v1/models/{model_id}/exports"): (MEMBER, 200),
    ("GET", "/v1/models/{model_id}/exports/{export_id}"): (MEMBER, 200),
    ("GET", "/v1/models/{model_id}/exports/{export_id}/download"): (MEMBER, 409),  # the test's export failed
    ("POST", "/v1/models/{model_id}/ollama"): (MEMBER, 409),  # the test's model has no GGUF export
    ("POST", "/v1/models/{model_id}/evaluations"): (MEMBER, 201),
    ("GET", "/v1/models/{model_id}/evaluations"): (MEMBER, 200),
    ("GET", "/v1/models/{model_id}/evaluations/{evaluation_id}"): (MEMBER, 200),
    ("GET", "/v1/evaluations/{evaluation_id}"): (MEMBER, 200),
    ("POST", "/v1/models/{model_id}/activate"): (MEMBER, 422),  # llama_cpp asked, and no verified GGUF export
    ("POST", "/v1/models/{model_id}/deactivate"): (MEMBER, 200),
    ("GET", "/v1/models/{model_id}/activation"): (MEMBER, 200),
    ("POST", "/v1/chat/completions"): (MEMBER, 422),  # activated on demand, and its bytes cannot load
    ("POST", "/v1/completions"): (MEMBER, 422),
    ("GET", "/v1/serving"): (ADMIN, 200),
    ("POST", "/v1/trajectories"): (MEMBER, 201),
    ("POST", "/v1/trajectory-imports"): (MEMBER, 201),
    ("GET", "/v1/trajectories"): (MEMBER, 200),
    ("GET", "/v1/trajectories/{trajectory_id}"): (MEMBER, 200),
    ("DELETE", "/v1/trajectories/{trajectory_id}"): (MEMBER, 204),
    ("POST", "/v1/dataset-builds"): (MEMBER, 201),
    ("GET", "/v1/dataset-builds"): (MEMBER, 200),
    ("GET", "/v1/dataset-builds/{build_id}"): (MEMBER, 200),
    ("GET", "/v1/auto-training"): (MEMBER, 200),
    ("PUT", "/v1/auto-training"): (MEMBER, 200),
    ("GET", "/v1/auto-training/runs"): (MEMBER, 200),
    ("GET", "/v1/files"): (MEMBER, 200),
    ("POST", "/v1/files"): (MEMBER, 201),
    ("GET", "/v1/files/{file_id}"): (MEMBER, 200),
    ("GET", "/v1/files/{file_id}/content"): (MEMBER, 200),
    # The test's dataset and the jobs made from the file by the dialects (queued) still read it.
    ("DELETE", "/v1/files/{file_id}"): (MEMBER, 409),
    ("GET", "/v1/datasets"): (MEMBER, 200),
    ("POST", "/v1/datasets"): (MEMBER, 201),
    ("GET", "/v1/datasets/{dataset_id}"): (MEMBER, 200),
    ("GET", "/v1/datasets/{dataset_id}/preview"): (MEMBER, 200),
    ("DELETE", "/v1/datasets/{dataset_id}"): (MEMBER, 204),
    ("GET", "/v1/jobs"): (MEMBER, 200),
    ("POST", "/v1/jobs"): (MEMBER, 201),
    ("POST", "/v1/estimate"): (MEMBER, 200),
    ("POST", "/v1/recommend"): (MEMBER, 200),
    ("GET", "/v1/templates"): (MEMBER, 200),
    ("POST", "/v1/templates"): (MEMBER, 201),
    ("GET", "/v1/jobs/{job_id}"): (MEMBER, 200),
    # Gone already: DELETE /felix/training-jobs/{job_id} (sorted before it) deleted the same job, and a
    # deleted job is 404 in every dialect.
    ("DELETE", "/v1/jobs/{job_id}"): (MEMBER, 404),
    ("POST", "/v1/jobs/{job_id}/stop"): (MEMBER, 409),  # the test's job is completed: allowed, refused by state
    ("POST", "/v1/jobs/{job_id}/cancel"): (MEMBER, 409),
    ("POST", "/v1/jobs/{job_id}/resume"): (MEMBER, 409),
    ("POST", "/v1/jobs/{job_id}/merge"): (MEMBER, 201),  # the test's job trained a LoRA adapter
    ("GET", "/v1/jobs/{job_id}/events"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/metrics"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/logs"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/checkpoints"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/stream"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/result"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/artifacts"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/artifacts/{path}"): (MEMBER, 200),
    ("GET", "/v1/jobs/{job_id}/download"): (MEMBER, 200),
    # Fusion (001), at the root
    ("POST", "/jobs"): (MEMBER, 201),
    ("GET", "/jobs"): (MEMBER, 200),
    ("GET", "/jobs/{job_id}"): (MEMBER, 200),
    ("GET", "/jobs/{job_id}/metrics"): (MEMBER, 200),
    ("GET", "/jobs/{job_id}/logs"): (MEMBER, 200),
    ("GET", "/jobs/{job_id}/events"): (MEMBER, 200),
    ("GET", "/jobs/{job_id}/result"): (MEMBER, 200),
    ("POST", "/training/recommend"): (MEMBER, 200),
    ("GET", "/base-models"): (MEMBER, 200),
    ("GET", "/models"): (MEMBER, 200),
    ("GET", "/datasets"): (MEMBER, 200),
    # 002 (local Training API), at /api/training
    ("POST", "/api/training/jobs"): (MEMBER, 400),  # the body's dataset_path names no file: allowed, refused
    ("GET", "/api/training/jobs"): (MEMBER, 200),
    ("GET", "/api/training/jobs/{job_id}"): (MEMBER, 200),
    ("DELETE", "/api/training/jobs/{job_id}"): (MEMBER, 409),  # the test's job is completed
    ("GET", "/api/training/jobs/{job_id}/logs"): (MEMBER, 200),
    ("GET", "/api/training/jobs/{job_id}/output"): (MEMBER, 200),
    ("GET", "/api/training/jobs/{job_id}/output/{file}"): (MEMBER, 200),
    ("POST", "/api/training/jobs/{job_id}/merge"): (MEMBER, 201),
    ("POST", "/api/training/jobs/{job_id}/resume"): (MEMBER, 409),
    ("GET", "/api/training/templates"): (MEMBER, 200),
    ("POST", "/api/training/templates"): (MEMBER, 201),
    ("GET", "/api/training/stats"): (MEMBER, 200),
    # 003 (an agent's training API) at /api/training: its data routes
    ("GET", "/api/training/status"): (MEMBER, 200),
    ("GET", "/api/training/trajectories"): (MEMBER, 200),
    ("POST", "/api/training/trajectories"): (MEMBER, 201),
    ("GET", "/api/training/trajectories/{trajectory_id}"): (MEMBER, 200),
    ("GET", "/api/training/datasets"): (MEMBER, 200),
    ("POST", "/api/training/datasets/build"): (MEMBER, 201),
    ("GET", "/api/training/auto/config"): (MEMBER, 200),
    ("PUT", "/api/training/auto/config"): (MEMBER, 200),
    # 003's jobs and models, and 002's estimate
    ("POST", "/api/training/estimate"): (MEMBER, 400),  # the body's dataset_path names no file
    ("POST", "/api/training/jobs/{job_id}/cancel"): (MEMBER, 409),  # completed: allowed, refused by state
    ("GET", "/api/training/models"): (MEMBER, 200),
    ("POST", "/api/training/models/{model_id}/import-ollama"): (MEMBER, 409),  # the test's model has no GGUF export
    ("POST", "/api/training/models/{model_id}/activate"): (MEMBER, 400),  # its base cannot load here
    ("POST", "/api/training/models/{model_id}/benchmark"): (MEMBER, 400),  # nothing held out, no dataset
    ("GET", "/api/training/models/{model_id}/benchmark"): (MEMBER, 200),  # the fixture's completed evaluation
    # Felix (000); its POST names a dataset by name, which the test's objects do not give: refused by content
    ("POST", "/felix/training-jobs"): (MEMBER, 400),
    ("GET", "/felix/training-jobs"): (MEMBER, 200),
    ("GET", "/felix/training-jobs/{job_id}"): (MEMBER, 200),
    ("DELETE", "/felix/training-jobs/{job_id}"): (MEMBER, 204),
    ("GET", "/felix/training-jobs/{job_id}/logs"): (MEMBER, 200),
    ("GET", "/felix/training-jobs/{job_id}/checkpoints"): (MEMBER, 200),
    ("GET", "/felix/training-jobs/{job_id}/download"): (MEMBER, 200),
    ("POST", "/felix/training-jobs/{job_id}/stop"): (MEMBER, 409),  # completed: allowed, refused by state
    ("GET", "/felix/trained-models"): (MEMBER, 200),
    # Archetype (004)
    ("POST", "/v0.5/fine-tune/jobs"): (MEMBER, 201),
    ("GET", "/v0.5/fine-tune/jobs"): (MEMBER, 200),
    ("GET", "/v0.5/fine-tune/jobs/{job_id}"): (MEMBER, 200),
    ("POST", "/v0.5/fine-tune/jobs/{job_id}/cancel"): (MEMBER, 409),  # completed: allowed, refused by state
    ("GET", "/v0.5/fine-tune/jobs/{job_id}/inference-config"): (MEMBER, 200),
    # OpenAI fine-tuning, inside /v1
    ("POST", "/v1/fine_tuning/jobs"): (MEMBER, 200),
    ("GET", "/v1/fine_tuning/jobs"): (MEMBER, 200),
    ("GET", "/v1/fine_tuning/jobs/{job_id}"): (MEMBER, 200),
    ("POST", "/v1/fine_tuning/jobs/{job_id}/cancel"): (MEMBER, 409),  # completed: allowed, refused by state
    ("POST", "/v1/fine_tuning/jobs/{job_id}/pause"): (MEMBER, 409),
    ("POST", "/v1/fine_tuning/jobs/{job_id}/resume"): (MEMBER, 409),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/events"): (MEMBER, 200),
    ("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints"): (MEMBER, 200),
}
DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}

# Request bodies for the operations that take one: a function of the caller's objects.
BODIES: dict[Op, Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("POST", "/v1/keys"): lambda o: {"json": {"name": f"made-by-{o['role']}"}},
    ("POST", "/v1/base-models"): lambda o: {"json": {"source": f"acme/by-{o['role']}", "kind": "hub"}},
    ("POST", "/v1/files"): lambda o: {"files": {"file": ("more.jsonl", chat_lines(4))}},
    ("POST", "/v1/datasets"): lambda o: {"json": {"name": f"more-{o['role']}", "file_ids": [o["file_id"]]}},
    ("POST", "/v1/jobs"): lambda o: {"json": job_body(o["dataset_id"])},
    ("POST", "/v1/models/{model_id}/exports"): lambda o: {"json": {"format": "gguf", "variant": "adapter"}},
    ("POST", "/v1/models/{model_id}/ollama"): lambda o: {"json": {"ollama_url": "http://127.0.0.1:9"}},
    ("POST", "/v1/models/{model_id}/evaluations"): lambda o: {"json": {"dataset": o["dataset_id"]}},
    ("POST", "/v1/models/{model_id}/activate"): lambda o: {"json": {"backend": "llama_cpp"}},
    ("POST", "/v1/chat/completions"): lambda o: {"json": {"model": o["model_id"],
                                                          "messages": [{"role": "user", "content": "hi"}]}},
    ("POST", "/v1/completions"): lambda o: {"json": {"model": o["model_id"], "prompt": "hi"}},
    ("POST", "/v1/estimate"): lambda o: {"json": job_body(o["dataset_id"])},
    ("POST", "/v1/recommend"): lambda o: {"json": {"base_model": "tiny-llama", "dataset": o["dataset_id"]}},
    ("POST", "/v1/templates"): lambda o: {"json": {"name": f"tpl-{uuid.uuid4().hex[:12]}", "spec": {"method": "full"}}},
    ("POST", "/v1/trajectories"): lambda o: {"json": trajectory_body(status="failed")},
    ("POST", "/v1/trajectory-imports"): lambda o: {"content": chat_log_line()},
    ("POST", "/v1/dataset-builds"): lambda o: {"json": {"name": f"built-{uuid.uuid4().hex[:12]}", "source": "chat"}},
    ("PUT", "/v1/auto-training"): lambda o: {"json": {"enabled": False, "threshold": 50}},
    ("POST", "/jobs"): lambda o: {"json": {"type": "finetune", "idempotency_key": f"run-{o['role']}",
                                           "source_model_id": "tiny-llama", "dataset_id": o["dataset_id"]}},
    ("POST", "/training/recommend"): lambda o: {"json": {"base_model_id": "tiny-llama", "dataset_id": o["dataset_id"]}},
    ("POST", "/api/training/jobs"): lambda o: {"json": {"base_model": "tiny-llama", "dataset_path": "none.jsonl"}},
    ("POST", "/api/training/templates"): lambda o: {"json": {"name": f"tpl-{uuid.uuid4().hex[:12]}",
                                                             "spec": {"method": "full"}}},
    ("POST", "/api/training/trajectories"): lambda o: {"json": trajectory_body(status="failed")},
    ("POST", "/api/training/datasets/build"): lambda o: {"json": {"name": f"built-{uuid.uuid4().hex[:12]}",
                                                                  "source": "chat"}},
    ("PUT", "/api/training/auto/config"): lambda o: {"json": {"threshold": 50}},
    ("POST", "/api/training/estimate"): lambda o: {"json": {"base_model": "tiny-llama", "dataset_path": "none.jsonl"}},
    ("POST", "/api/training/models/{model_id}/import-ollama"): lambda o: {"json": {"ollamaUrl": "http://127.0.0.1:9"}},
    ("POST", "/api/training/models/{model_id}/benchmark"): lambda o: {"params": {"wait": 0}},
    ("POST", "/felix/training-jobs"): lambda o: {"json": {"base_model": "tiny-llama",
                                                          "datasets": [{"name": f"absent-{o['role']}"}]}},
    ("POST", "/v0.5/fine-tune/jobs"): lambda o: {"json": {"name": f"run-{o['role']}", "config": {
        "model": "tiny-llama", "datasets": [{"name": "set", "split": "train", "file_ids": [o["file_id"]]}]}}},
    ("POST", "/v1/fine_tuning/jobs"): lambda o: {"json": {"model": "tiny-llama", "training_file": o["file_id"]}},
}


def operations(app: FastAPI) -> list[Op]:
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in sorted(paths.items()) if path not in DOCS for method in ops]


def objects_for(role: str, client: TestClient, db, settings: Settings, tenant: Tenant) -> dict[str, Any]:
    """A completed job with its dataset, file, model and checkpoint, a registered base model and a
    spare key: all of the tenant's organization, for one role's requests."""
    objects = finished_job(client, db, settings, tenant)
    base = client.post("/v1/base-models", headers=tenant.admin_headers, json={"source": f"acme/{role}", "kind": "hub"})
    assert base.status_code == 201, base.text
    spare, _ = tenancy.create_api_key(db, tenant.org_id, f"spare-{role}")
    return {**objects, "role": role, "base_model_id": base.json()["id"], "key_id": spare.id,
            "file": "adapter_config.json"}  # a file of the trained model (002's /output/{file})


def test_every_operation_has_a_role(app: FastAPI) -> None:
    found = set(operations(app))
    undecided = sorted(found - set(ROLES))
    assert not undecided, f"decide the role of each new operation in ROLES: {undecided}"
    assert not set(ROLES) - found, f"ROLES names operations the app no longer has: {sorted(set(ROLES) - found)}"


def test_admin_operations_document_their_403(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    for (method, path), (role, _status) in ROLES.items():
        documented = "403" in paths[path][method.lower()]["responses"]
        assert documented == (role == ADMIN), (method, path, role)


@pytest.mark.parametrize("role", [MEMBER, ADMIN])
def test_each_role_gets_the_status_its_role_decides(
    app: FastAPI, client: TestClient, db, api_settings: Settings, tenant: Tenant, role: str
) -> None:
    objects = objects_for(role, client, db, api_settings, tenant)
    headers = tenant.admin_headers if role == ADMIN else tenant.headers
    failures = []
    # Deletes last, so every other operation finds its objects.
    for method, path in sorted(operations(app), key=lambda op: op[0] == "DELETE"):
        needed, allowed = ROLES[(method, path)]
        kwargs = BODIES[(method, path)](objects) if (method, path) in BODIES else {}
        response = client.request(method, fill(path, objects), headers=headers, **kwargs)
        forbidden = needed == ADMIN and role == MEMBER
        expected = 403 if forbidden else allowed
        code = response.json()["error"]["code"] if forbidden and response.status_code == 403 else None
        if response.status_code != expected or (forbidden and code != "FORBIDDEN"):
            failures.append(f"{role} {method} {path}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)


def test_without_a_key_only_public_operations_answer(app: FastAPI, client: TestClient, db, api_settings: Settings,
                                                     tenant: Tenant) -> None:
    objects = objects_for("nobody", client, db, api_settings, tenant)
    for method, path in operations(app):
        needed, allowed = ROLES[(method, path)]
        response = client.request(method, fill(path, objects))
        if needed == PUBLIC:
            assert response.status_code == allowed, (method, path, response.text)
        else:
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
