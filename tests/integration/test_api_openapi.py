"""The OpenAPI document says what the service does: the statuses, media types, bounds and methods.

tests/e2e/test_schemathesis.py fuzzes a live server against the document; these hold the rules it
relies on, one by one, where a failure names the operation at fault.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema_rs
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, create_job, ready_dataset
from tuneyard.services.files import PURPOSES
from tuneyard.spec import JOB_TYPES, METHODS

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

DOCS = {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    paths = app.openapi()["paths"]
    return [(method, path, op) for path, ops in sorted(paths.items()) for method, op in ops.items()]


def test_errors_are_documented_as_json_on_every_route(app: FastAPI) -> None:
    wrong = [(method, path, status, sorted(response.get("content", {})))
             for method, path, op in operations(app) for status, response in op["responses"].items()
             if int(status) >= 400 and list(response.get("content", {})) != ["application/json"]]
    assert not wrong, wrong  # /metrics, /stream and the downloads once claimed text and octet streams


def test_routes_with_a_body_document_400_and_every_route_the_body_limits(app: FastAPI) -> None:
    for method, path, op in operations(app):
        statuses = set(op["responses"])
        assert {"408", "413"} <= statuses, (method, path)
        # A dialect that answers a bad request 400 (not the native 422) does so for its query and a
        # bounded path parameter too (Archetype's job_id of 1-64 characters).
        parameters = op.get("parameters", []) if "422" not in statuses else []
        queried = any(p["in"] == "query" for p in parameters)
        bounded = any(p["in"] == "path" and "maxLength" in p.get("schema", {}) for p in parameters)
        assert ("400" in statuses) == ("requestBody" in op or queried or bounded), (method, path)
    assert "503" in app.openapi()["paths"]["/healthz"]["get"]["responses"]


def test_an_undocumented_method_is_405_naming_every_method_of_the_path(app: FastAPI, client: TestClient,
                                                                        tenant: Tenant) -> None:
    for path, ops in app.openapi()["paths"].items():
        if path in DOCS:
            continue
        concrete = re.sub(r"\{\w+_id\}", "x1", path).replace("{path}", "final/a.json")
        documented = sorted(m.upper() for m in ops)
        for method in sorted({"PUT", "PATCH", "OPTIONS", "POST", "DELETE", "GET"} - set(documented)):
            response = client.request(method, concrete, headers=tenant.headers)
            assert response.status_code == 405, (method, path, response.status_code)
            assert sorted(response.headers["allow"].split(", ")) == documented, (method, path)
            assert response.json()["error"]["code"] == "INVALID_REQUEST"


def test_request_bounds_are_the_ones_the_service_enforces(app: FastAPI) -> None:
    schema = app.openapi()
    paths, components = schema["paths"], schema["components"]["schemas"]
    upload = paths["/v1/files"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    purpose = components[upload["$ref"].rsplit("/", 1)[1]]["properties"]["purpose"]
    assert purpose["enum"] == [*PURPOSES, ""]  # an empty form field is the default (FastAPI reads it as absent)
    file_ids = components["DatasetCreate"]["properties"]["file_ids"]
    assert file_ids["minItems"] == 1 and file_ids["items"]["minLength"] == 1 and file_ids["items"]["pattern"]
    header = next(p for p in paths["/v1/jobs"]["post"]["parameters"] if p["name"] == "Idempotency-Key")
    key = header["schema"]  # beside its anyOf [string, null]: the bounds hold for a string
    assert key["minLength"] == 1 and key["maxLength"] == 255 and key["pattern"]
    assert components["ApiKeyCreate"]["properties"]["name"]["pattern"]


def test_refused_values_are_refused(client: TestClient, tenant: Tenant) -> None:
    """What the document now rules out, the service refuses (and did before: the two must agree)."""
    refused = [
        client.post("/v1/jobs", headers={**tenant.headers, "Idempotency-Key": ""}, json={"base_model": "tiny-llama"}),
        client.post("/v1/files", headers=tenant.headers, files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "x"}),
        client.post("/v1/datasets", headers=tenant.headers, json={"name": "d", "file_ids": [""]}),
        client.post("/v1/keys", headers=tenant.admin_headers, json={"name": "k", "is_admin": 0}),
        client.get("/v1/jobs", headers=tenant.headers, params={"cursor": "not a cursor!"}),
    ]
    assert [r.status_code for r in refused] == [422] * len(refused), [r.text for r in refused]


def test_positions_past_the_databases_integers_are_refused(client: TestClient, tenant: Tenant) -> None:
    """PostgreSQL's INTEGER is 32-bit: since_step=6377778719 was a 500 there (found by schemathesis)."""
    job = create_job(client, tenant, ready_dataset(client, tenant)["id"])["id"]
    too_far = [
        client.get(f"/v1/jobs/{job}/metrics", headers=tenant.headers, params={"since_step": 6377778719}),
        client.get(f"/v1/jobs/{job}/events", headers=tenant.headers, params={"since": 2**31}),
        client.get(f"/v1/jobs/{job}/logs", headers=tenant.headers, params={"since": 2**40}),
        client.get(f"/v1/jobs/{job}/stream", headers={**tenant.headers, "Last-Event-ID": "6377778719.0.-1.-1"}),
    ]
    assert [r.status_code for r in too_far] == [422] * len(too_far), [r.text for r in too_far]
    at_the_edge = client.get(f"/v1/jobs/{job}/metrics", headers=tenant.headers, params={"since_step": 2**31 - 1})
    assert at_the_edge.status_code == 200 and at_the_edge.json()["data"] == []


def test_creations_link_to_what_they_made(app: FastAPI) -> None:
    paths = app.openapi()["paths"]
    links = paths["/v1/jobs"]["post"]["responses"]["201"]["links"]
    targets = {link["operationId"] for link in links.values()}
    by_id = {op["operationId"]: (method, path) for method, path, op in operations(app)}
    assert {by_id[t] for t in targets} == {(m, p) for m, p, _ in operations(app) if p.startswith("/v1/jobs/{job_id}")}
    assert all(link["parameters"] == {"job_id": "$response.body#/id"} for link in links.values())
    for collection in ("/v1/datasets", "/v1/files", "/v1/keys", "/v1/base-models"):
        assert paths[collection]["post"]["responses"]["201"]["links"], collection


def test_the_stream_documents_each_item(app: FastAPI) -> None:
    media = app.openapi()["paths"]["/v1/jobs/{job_id}/stream"]["get"]["responses"]["200"]["content"]
    assert list(media) == ["text/event-stream"]
    assert "schema" not in media["text/event-stream"]
    assert media["text/event-stream"]["itemSchema"]["properties"]["event"]["enum"] == ["event", "metric", "log", "end"]


def test_the_job_body_is_documented_per_job_type_and_method_and_agrees_with_the_service(
    app: FastAPI, client: TestClient, tenant: Tenant,
) -> None:
    document = app.openapi()
    body = document["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]
    members = [schemas[m["$ref"].rsplit("/", 1)[-1]] for m in body["anyOf"]]
    from_template = members.pop()
    assert from_template["required"] == ["template"]  # checked once merged with its template, by the service
    assert {m["properties"]["type"]["const"] for m in members} == set(JOB_TYPES.names())
    finetune = {m["properties"]["method"]["const"] for m in members if m["properties"]["type"]["const"] == "finetune"}
    assert finetune == set(METHODS.names())
    for member in members:
        assert member["additionalProperties"] is False
        assert {"name", "project_id", "idempotency_key"} <= set(member["properties"])
    validator = jsonschema_rs.Draft202012Validator({**body, "components": document["components"]})
    dataset = ready_dataset(client, tenant)
    good = {"base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}], "name": "documented",
            "hyperparams": {"max_steps": 2}}
    assert validator.is_valid(good)
    assert client.post("/v1/jobs", headers=tenant.headers, json=good).status_code == 201
    templated = {"template": "lora-chat", "datasets": [{"id": dataset["id"]}], "base_model": "tiny-llama",
                 "hyperparams": {"max_steps": 2}}
    assert validator.is_valid(templated)
    assert client.post("/v1/jobs", headers=tenant.headers, json=templated).status_code == 201
    assert not validator.is_valid({**templated, "template": ""})
    for bad in ({**good, "hyperparams": {"max_steps": -1}}, {**good, "colour": "red"}, {**good, "type": "nope"},
                {**good, "name": ""}, {**good, "method": "full", "hyperparams": {"lora_rank": 8}}):
        assert not validator.is_valid(bad), bad
        assert client.post("/v1/jobs", headers=tenant.headers, json=bad).status_code == 422, bad
