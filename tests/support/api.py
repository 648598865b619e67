"""Fixtures and helpers for API tests: a real app on the test's database, tenants with keys.

Used from tests/integration (whose conftest gives `settings` and `db`, on SQLite and PostgreSQL):
a test module binds the fixtures it needs by name, e.g. `client = api.client`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tuneyard.api.app import create_app
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database

UPLOAD_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Tenant:
    org_id: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(db: Database, name: str) -> Tenant:
    org = tenancy.create_org(db, name)
    key, plaintext = tenancy.create_api_key(db, org.id, f"{name}-key")
    return Tenant(org.id, key.id, plaintext)


def chat_lines(n: int) -> bytes:
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                          {"role": "assistant", "content": f"{i + 1}."}]} for i in range(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    roots = tmp_path / "models"
    roots.mkdir()
    return settings.with_overrides(max_upload_bytes=UPLOAD_LIMIT, model_roots=(roots,))


@pytest.fixture
def app(api_settings: Settings, db: Database) -> FastAPI:
    return create_app(api_settings, db, stream_poll_seconds=0.02)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def tenant(db: Database) -> Tenant:
    return make_tenant(db, "acme")


@pytest.fixture
def other(db: Database) -> Tenant:
    return make_tenant(db, "globex")


def upload(client: TestClient, tenant: Tenant, content: bytes, filename: str = "chats.jsonl") -> dict[str, Any]:
    response = client.post("/v1/files", headers=tenant.headers, files={"file": (filename, content)})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def ready_dataset(client: TestClient, tenant: Tenant, name: str = "chats", examples: int = 8) -> dict[str, Any]:
    file = upload(client, tenant, chat_lines(examples))
    response = client.post("/v1/datasets", headers=tenant.headers, json={"name": name, "file_ids": [file["id"]]})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "ready", body
    return body


def job_body(dataset_id: str, **extra: Any) -> dict[str, Any]:
    return {"base_model": "tiny-llama", "datasets": [{"id": dataset_id}], "hyperparams": {"max_steps": 5}, **extra}


def create_job(client: TestClient, tenant: Tenant, dataset_id: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs", headers=tenant.headers, json=job_body(dataset_id, **extra))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
