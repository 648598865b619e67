"""/v1/models/{id}/exports and /v1/models/{id}/ollama: requests checked whole before anything is
written, exports listed with size, format, checksum and verification, and the Ollama import against
a local stand-in (loopback only, checked before any connection)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, finished_job
from tests.support.ollama_standin import ollama_standin
from tuneyard.services import exports
from tuneyard.settings import Settings
from tuneyard.store import exports as store

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def completed_gguf_export(db: Any, settings: Settings, org_id: str, model_id: str) -> tuple[str, Path]:
    """A completed q8_0 export as the export process leaves it: a folder, its file, its manifest."""
    row = store.create_export(db, org_id, model_id, format="gguf", quantization="q8_0", variant="merged",
                              exports_dir=str(settings.data_dir / "exports"))
    folder = Path(row.path)
    folder.mkdir(parents=True)
    gguf = folder / f"{model_id}.q8_0.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 40)
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    verification = {"quantization": "q8_0", "texts": 6, "positions": 180, "tokenization_identical": True,
                    "tokenization_mismatches": [], "top1_agreement": 1.0, "max_abs_logit_delta": 0.04,
                    "bound": {"min_top1": 0.99, "max_abs_logit_delta": 1.5}, "passed": True}
    manifest = {"format": "gguf", "gguf_file": gguf.name, "verification": verification,
                "ollama": {"template": None, "stop": ["<|im_end|>"], "parameters": {"temperature": 0.7}},
                "files": {gguf.name: {"bytes": gguf.stat().st_size, "sha256": sha},
                          "x.Modelfile": {"bytes": 20, "sha256": "0" * 64}}}
    assert store.claim(db, row.id)
    store.finish(db, row.id, manifest=manifest)
    return row.id, gguf


def problems(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [p["field"] for p in response.json()["error"]["details"]["problems"]]


def test_bad_export_requests_name_their_field_and_write_nothing(client: TestClient, db, api_settings: Settings,
                                                               tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    url = f"/v1/models/{done['model_id']}/exports"
    before = client.get(url, headers=tenant.headers).json()["data"]
    assert problems(client.post(url, headers=tenant.headers, json={"format": "zip"})) == ["format"]
    assert problems(client.post(url, headers=tenant.headers,
                                json={"format": "safetensors", "quantization": "q8_0"})) == ["quantization"]
    assert problems(client.post(url, headers=tenant.headers,
                                json={"format": "gguf", "quantization": "q2"})) == ["quantization"]
    assert problems(client.post(url, headers=tenant.headers, json={"format": "gguf", "variant": "adapter"})) \
        == ["variant"]
    assert client.post(url, headers=tenant.headers, json={"format": "gguf", "quantizaton": "f16"}).status_code == 422
    assert client.get(url, headers=tenant.headers).json()["data"] == before
    assert not (api_settings.data_dir / "exports").exists() or not any((api_settings.data_dir / "exports").iterdir())


def test_exports_list_size_format_checksum_and_verification(client: TestClient, db, api_settings: Settings,
                                                           tenant: Tenant, other: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    export_id, gguf = completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    listed = client.get(f"/v1/models/{done['model_id']}/exports", headers=tenant.headers).json()["data"]
    assert [e["id"] for e in listed] == [export_id, done["export_id"]]
    view = listed[0]
    assert view["format"] == "gguf" and view["quantization"] == "q8_0" and view["status"] == "completed"
    assert view["checksum"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert view["size_bytes"] == gguf.stat().st_size + 20
    assert view["verification"]["passed"] and view["verification"]["top1_agreement"] == 1.0
    failed = client.get(f"/v1/models/{done['model_id']}/exports/{done['export_id']}", headers=tenant.headers).json()
    assert failed["status"] == "failed" and failed["error"]["message"] == "a fake export that failed"
    assert client.get(f"/v1/models/{done['model_id']}/exports/{export_id}", headers=other.headers).status_code == 404


def test_ollama_import_pushes_the_verified_gguf(client: TestClient, db, api_settings: Settings,
                                               tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    export_id, gguf = completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    with ollama_standin() as ollama:
        response = client.post(f"/v1/models/{done['model_id']}/ollama", headers=tenant.headers,
                               json={"ollama_url": ollama.url, "model_name": "tuned-tiny"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["ollama_name"] == "tuned-tiny" and body["export_id"] == export_id
        assert body["digest"] == f"sha256:{sha}"
        assert ollama.blobs == {f"sha256:{sha}": gguf.read_bytes()}
        assert ollama.created[0]["model"] == "tuned-tiny"
        assert ollama.created[0]["files"] == {gguf.name: f"sha256:{sha}"}
        assert ollama.created[0]["parameters"] == {"temperature": 0.7, "stop": ["<|im_end|>"]}


def test_ollama_import_refuses_non_loopback_urls_before_connecting(client: TestClient, db, api_settings: Settings,
                                                                  tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    with ollama_standin() as ollama:
        for url in (f"http://2130706433:{ollama.port}", f"http://[::ffff:127.0.0.1]:{ollama.port}",
                    f"http://user@127.0.0.1:{ollama.port}", "http://10.0.0.1:11434", f"http://0.0.0.0:{ollama.port}"):
            response = client.post(f"/v1/models/{done['model_id']}/ollama", headers=tenant.headers,
                                   json={"ollama_url": url})
            assert problems(response) == ["ollama_url"], url
        assert ollama.connections == 0


def test_ollama_unreachable_names_the_url(client: TestClient, db, api_settings: Settings, tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    with ollama_standin() as ollama:
        port = ollama.port  # closed once the block ends: nothing listens there
    response = client.post(f"/v1/models/{done['model_id']}/ollama", headers=tenant.headers,
                           json={"ollama_url": f"http://127.0.0.1:{port}"})
    assert problems(response) == ["ollama_url"] and "cannot reach Ollama" in response.json()["error"]["message"]


def test_an_export_whose_earlier_child_still_runs_is_waited_for_not_run_twice(
    client: TestClient, db, api_settings: Settings, tenant: Tenant,
) -> None:
    """A restart requeues a running export while the dead process's child (its own session) is still
    at work: the new runner waits on the child's lock and stores its outcome; no second child runs."""
    done = finished_job(client, db, api_settings, tenant)
    row = store.create_export(db, tenant.org_id, done["model_id"], format="gguf", quantization="f16",
                              variant="merged", exports_dir=str(api_settings.data_dir / "exports"))
    folder = Path(row.path)
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_file = folder.with_name(folder.name + exports.LOCK_FILE_SUFFIX)
    outcome_file = folder.with_name(folder.name + exports.OUTCOME_FILE_SUFFIX)
    outcome = {"status": "failed", "error": {"error_type": "platform_error", "message": "the first child's outcome",
                                             "details": {}}}
    first_child = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, json, sys, time\n"
        "lock = open(sys.argv[1], 'a+b'); fcntl.flock(lock, fcntl.LOCK_EX); print('locked', flush=True)\n"
        "time.sleep(1.5); open(sys.argv[2], 'w').write(sys.argv[3])\n"),
        str(lock_file), str(outcome_file), json.dumps(outcome)], stdout=subprocess.PIPE)
    assert first_child.stdout is not None and first_child.stdout.readline() == b"locked\n"
    exports.run_pending(db, api_settings)  # returns once the first child has let go
    assert first_child.wait(timeout=30) == 0
    first_child.stdout.close()
    stored = store.get_export(db, tenant.org_id, done["model_id"], row.id)
    assert stored.status == "failed" and stored.error["message"] == "the first child's outcome"
    assert not folder.with_name(folder.name + exports.REQUEST_FILE_SUFFIX).exists()  # no second child was started
