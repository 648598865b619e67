"""Every operation of the OpenAPI document × six callers → the status each must get, and no foreign bytes.

Organization A owns a finished job (run folder, artifacts, checkpoint, model), a dataset over a file
of its own bytes, a registered base model and a spare key; their ids fill the path parameters. The
callers are A's member and admin keys, B's member and admin keys, no key and a bad key:

* no key or a bad key: 401 on every operation but the public ones;
* A's own keys: the status `test_api_roles.ROLES` decides for the operation's role (403 FORBIDDEN
  for a member key on an admin operation);
* B's keys: 404 on every operation naming A's objects (never 403: that would say they exist, and a
  404 reads byte for byte as one for an id nobody has), the role's 403 first for a member key on an
  admin operation, and for operations naming no object what `FOREIGN` says B gets for itself.

No answer to B or to an unauthenticated caller carries anything of A's it was not sent: ids, names,
key prefixes or plaintexts, the file's or the artifacts' bytes. An operation the app gains later
fails `test_every_operation_is_in_the_matrix` until it is in `ROLES` (and `FOREIGN` when it names
no object), and the matrix test itself checks it exercised every operation for every caller.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import httpx

from tests.integration.test_api_roles import ADMIN, BODIES, PUBLIC, ROLES, Op, operations
from tests.support import api
from tests.support.api import Tenant, chat_lines, fill, finished_job, upload
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database

Response = httpx.Response  # whichever httpx the TestClient speaks

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings

OWN_MEMBER, OWN_ADMIN, OTHER_MEMBER, OTHER_ADMIN, NO_KEY, BAD_KEY = (
    "own-member", "own-admin", "other-member", "other-admin", "no-key", "bad-key")
CALLERS = (OWN_MEMBER, OWN_ADMIN, OTHER_MEMBER, OTHER_ADMIN, NO_KEY, BAD_KEY)
STRANGERS = (OTHER_MEMBER, OTHER_ADMIN, NO_KEY, BAD_KEY)

# What organization B gets from an operation that names no object of A's: its own lists, its own
# creations, and a refusal where the body points at A's file or dataset (as if it did not exist).
FOREIGN: dict[Op, int] = {
    ("GET", "/healthz"): 200,
    ("GET", "/metrics"): 200,
    ("GET", "/v1/stats"): 200,
    ("GET", "/v1/keys"): 200,
    ("POST", "/v1/keys"): 201,
    ("GET", "/v1/base-models"): 200,
    ("POST", "/v1/base-models"): 201,
    ("GET", "/v1/models"): 200,
    ("POST", "/v1/chat/completions"): 404,  # A's model id, named in the body: no such model for B
    ("POST", "/v1/completions"): 404,
    ("GET", "/v1/serving"): 200,  # the serving process and only B's own loaded models
    ("GET", "/v1/files"): 200,
    ("POST", "/v1/files"): 201,
    ("GET", "/v1/datasets"): 200,
    ("POST", "/v1/datasets"): 422,  # A's file id: "no file"
    ("GET", "/v1/jobs"): 200,
    ("POST", "/v1/jobs"): 422,  # A's dataset id: "no dataset"
    ("POST", "/v1/estimate"): 422,  # A's dataset id: "no dataset", as a submission
    ("POST", "/v1/recommend"): 422,  # A's dataset id: "no dataset"
    ("GET", "/v1/templates"): 200,  # the built-ins and B's own
    ("POST", "/v1/templates"): 201,
    ("POST", "/v1/trajectories"): 201,
    ("POST", "/v1/trajectory-imports"): 201,
    ("GET", "/v1/trajectories"): 200,
    ("POST", "/v1/dataset-builds"): 422,  # B's own chat trajectories (BODIES) failed: none to build from
    ("GET", "/v1/dataset-builds"): 200,
    ("GET", "/v1/auto-training"): 200,
    ("PUT", "/v1/auto-training"): 200,
    ("GET", "/v1/auto-training/runs"): 200,
    ("GET", "/jobs"): 200,
    ("POST", "/jobs"): 400,  # A's dataset id: "no dataset" (Fusion's 400)
    ("POST", "/training/recommend"): 400,  # A's dataset id: "no dataset"
    ("GET", "/base-models"): 200,
    ("GET", "/models"): 200,
    ("GET", "/datasets"): 200,
    ("GET", "/api/training/jobs"): 200,
    ("POST", "/api/training/jobs"): 400,  # the body's dataset_path names no file
    ("GET", "/api/training/templates"): 200,
    ("POST", "/api/training/templates"): 201,
    ("GET", "/api/training/stats"): 200,
    ("GET", "/api/training/status"): 200,
    ("GET", "/api/training/trajectories"): 200,
    ("POST", "/api/training/trajectories"): 201,
    ("GET", "/api/training/datasets"): 200,
    ("POST", "/api/training/datasets/build"): 400,  # B's own trajectories (BODIES) failed: none to build from
    ("GET", "/api/training/auto/config"): 200,
    ("PUT", "/api/training/auto/config"): 200,
    ("GET", "/api/training/models"): 200,  # B's own models only
    ("POST", "/api/training/estimate"): 400,  # the body's dataset_path names no file
    ("GET", "/felix/training-jobs"): 200,
    ("POST", "/felix/training-jobs"): 400,  # a dataset name nobody has
    ("GET", "/felix/trained-models"): 200,
    ("GET", "/v0.5/fine-tune/jobs"): 200,
    ("POST", "/v0.5/fine-tune/jobs"): 400,  # A's file id: "no file"
    ("GET", "/v1/fine_tuning/jobs"): 200,
    ("POST", "/v1/fine_tuning/jobs"): 400,  # A's file id as training_file: "no file"
}
ID_PARAMS = ("job_id", "dataset_id", "file_id", "checkpoint_id", "model_id", "base_model_id", "key_id",
             "export_id", "trajectory_id", "build_id", "evaluation_id")


def names_an_object(path: str) -> bool:
    return "{" in path


def expected(op: Op, caller: str) -> int:
    role, allowed = ROLES[op]
    if role == PUBLIC:
        return allowed
    if caller in (NO_KEY, BAD_KEY):
        return 401
    if role == ADMIN and caller.endswith("member"):
        return 403  # decided by the key alone, before any id is looked at: it says nothing about A
    if caller.startswith("own"):
        return allowed
    return 404 if names_an_object(op[1]) else FOREIGN[op]


def objects_of_a(client: TestClient, db: Database, settings: Settings, tenant: Tenant, label: str) -> dict[str, Any]:
    """A's finished job and the rest, each carrying a marker of its own in its name or bytes."""
    marker = f"secret-{label}-{uuid.uuid4().hex[:12]}"
    objects = finished_job(client, db, settings, tenant)
    final = run_dir(settings, objects["job_id"]) / "final"
    (final / "adapter_config.json").write_text(f'{{"r": 8, "note": "{marker}-artifact"}}')
    rows = chat_lines(3).decode().replace("plus 1", f"plus 1 ({marker}-row)").encode()
    file = upload(client, tenant, rows, filename=f"{marker}.jsonl")
    dataset = client.post("/v1/datasets", headers=tenant.headers,
                          json={"name": f"{marker}-ds", "file_ids": [file["id"]]})
    assert dataset.status_code == 201, dataset.text
    base = client.post("/v1/base-models", headers=tenant.admin_headers,
                       json={"source": f"acme/{marker}-base", "kind": "hub"})
    assert base.status_code == 201, base.text
    spare, plaintext = tenancy.create_api_key(db, tenant.org_id, f"{marker}-key")
    return {**objects, "file_id": file["id"], "dataset_id": dataset.json()["id"], "base_model_id": base.json()["id"],
            "key_id": spare.id, "marker": marker, "key_plaintext": plaintext, "role": label,
            "file": "adapter_config.json"}


def foreign_strings(tenant: Tenant, *sets: dict[str, Any]) -> set[str]:
    found = {tenant.key, tenant.admin_key, tenant.key[:12], tenant.admin_key[:12], tenant.key_id}
    for objects in sets:
        found |= {str(objects[name]) for name in ID_PARAMS if objects.get(name)}
        found |= {objects["marker"], objects["key_plaintext"], objects["key_plaintext"][:12]}
    return found


def headers_of(caller: str, tenant: Tenant, other: Tenant) -> dict[str, str]:
    return {OWN_MEMBER: tenant.headers, OWN_ADMIN: tenant.admin_headers, OTHER_MEMBER: other.headers,
            OTHER_ADMIN: other.admin_headers, NO_KEY: {},
            BAD_KEY: {"Authorization": f"Bearer ty_{uuid.uuid4().hex}"}}[caller]


def leaked(response: Response, sent: str, foreign: set[str]) -> list[str]:
    """A's strings in the answer (body and headers) that the caller did not send itself."""
    answer = response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return sorted(s for s in foreign if s in answer and s not in sent)


def nobodys(objects: dict[str, Any]) -> dict[str, Any]:
    """The same objects' ids with every random part zeroed: ids of the right shape that nobody has."""
    return {k: re.sub(r"(?<=_)[0-9a-f]+$", lambda m: "0" * len(m.group()), v) if k in ID_PARAMS else v
            for k, v in objects.items()}


def test_every_operation_is_in_the_matrix(app: FastAPI) -> None:
    found = set(operations(app))
    assert not found - set(ROLES), f"decide each new operation's role in test_api_roles.ROLES: {found - set(ROLES)}"
    plain = {op for op in found if not names_an_object(op[1])}
    assert not plain - set(FOREIGN), f"say what another organization gets in FOREIGN: {sorted(plain - set(FOREIGN))}"
    assert not set(FOREIGN) - plain, f"FOREIGN names operations the app lacks: {sorted(set(FOREIGN) - plain)}"


def test_every_operation_for_every_caller(app: FastAPI, client: TestClient, db: Database, api_settings: Settings,
                                          tenant: Tenant, other: Tenant) -> None:
    shared = objects_of_a(client, db, api_settings, tenant, "a1")
    admins = objects_of_a(client, db, api_settings, tenant, "a2")  # A's admin deletes its own set
    foreign = foreign_strings(tenant, shared, admins)
    ops = sorted(operations(app), key=lambda op: op[0] == "DELETE")  # deletes last: the rest find their objects
    failures: list[str] = []
    exercised: dict[str, set[Op]] = {caller: set() for caller in CALLERS}

    def call(caller: str, op: Op, objects: dict[str, Any]) -> tuple[Response, str]:
        url = fill(op[1], objects)
        body: Callable[[dict[str, Any]], dict[str, Any]] | None = BODIES.get(op)
        kwargs = body(objects) if body is not None else {}
        response = client.request(op[0], url, headers=headers_of(caller, tenant, other), **kwargs)
        exercised[caller].add(op)
        return response, url + repr(kwargs)

    # Strangers first: nothing they do may change what A's own keys find afterwards.
    for caller in STRANGERS:
        for op in ops:
            response, sent = call(caller, op, shared)
            want = expected(op, caller)
            if response.status_code != want:
                failures.append(f"{caller} {op}: {response.status_code}, expected {want}: {response.text[:160]}")
            if leak := leaked(response, sent, foreign):
                failures.append(f"{caller} {op} carries A's {leak}: {response.text[:160]}")
            if want == 404 and caller == OTHER_ADMIN:
                failures.extend(_reads_as_nobodys(call, caller, op, shared, response))
    for caller, objects in ((OWN_MEMBER, shared), (OWN_ADMIN, admins)):
        for op in ops:
            response, _sent = call(caller, op, objects)
            if response.status_code != expected(op, caller):
                failures.append(f"{caller} {op}: {response.status_code}, expected {expected(op, caller)}: "
                                f"{response.text[:160]}")
    assert not failures, f"{len(failures)} of {len(ops) * len(CALLERS)} calls:\n" + "\n".join(failures)
    for caller in CALLERS:
        assert exercised[caller] == set(ops), (caller, sorted(set(ops) - exercised[caller]))
    assert len(ops) >= 35


def _reads_as_nobodys(call: Callable[[str, Op, dict[str, Any]], tuple[Response, str]], caller: str, op: Op,
                      objects: dict[str, Any], response: Response) -> list[str]:
    """A's object answers B exactly as an id nobody has does: same status, same bytes."""
    fake = nobodys(objects)
    twin, _sent = call(caller, op, fake)
    text = response.text
    for name in ID_PARAMS:
        if objects.get(name):
            text = text.replace(str(objects[name]), str(fake[name]))
    if twin.status_code != response.status_code or twin.text != text:
        return [f"{caller} {op}: A's object answers {response.status_code} {response.text[:120]}, "
                f"nobody's {twin.status_code} {twin.text[:120]}"]
    return []
