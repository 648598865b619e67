"""GET /v1/models/{id}/exports/{eid}/download: a completed GGUF export's file with its manifest's sha256,
a safetensors export's folder as a .tar.gz; refused until completed, when its file changed, outside
the exports folder, and for another organization."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from fastapi.testclient import TestClient

from tests.integration.test_api_exports import completed_gguf_export
from tests.support import api
from tests.support.api import Tenant, finished_job
from tuneyard.settings import Settings
from tuneyard.store import exports as store

app, client, tenant, other, api_settings = api.app, api.client, api.tenant, api.other, api.api_settings


def url(model_id: str, export_id: str) -> str:
    return f"/v1/models/{model_id}/exports/{export_id}/download"


def test_a_gguf_export_downloads_as_its_file_with_its_checksum(client: TestClient, db, api_settings: Settings,
                                                               tenant: Tenant, other: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    export_id, gguf = completed_gguf_export(db, api_settings, tenant.org_id, done["model_id"])
    response = client.get(url(done["model_id"], export_id), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.content == gguf.read_bytes()
    assert response.headers["x-checksum-sha256"] == hashlib.sha256(response.content).hexdigest()
    assert gguf.name in response.headers["content-disposition"]

    assert client.get(url(done["model_id"], export_id), headers=other.headers).status_code == 404
    failed = client.get(url(done["model_id"], done["export_id"]), headers=tenant.headers)
    assert failed.status_code == 409 and failed.json()["error"]["code"] == "CONFLICT"
    assert "only a completed export" in failed.json()["error"]["message"]

    gguf.write_bytes(gguf.read_bytes()[:-1])  # not the file its manifest recorded
    changed = client.get(url(done["model_id"], export_id), headers=tenant.headers)
    assert changed.status_code == 409 and "export again" in changed.json()["error"]["message"]


def test_a_safetensors_export_downloads_as_an_archive(client: TestClient, db, api_settings: Settings,
                                                      tenant: Tenant) -> None:
    done = finished_job(client, db, api_settings, tenant)
    row = store.create_export(db, tenant.org_id, done["model_id"], format="safetensors", quantization=None,
                              variant="merged", exports_dir=str(api_settings.data_dir / "exports"))
    folder = Path(row.path)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights" * 50)
    files = {"model.safetensors": {"bytes": 350, "sha256": hashlib.sha256(b"weights" * 50).hexdigest()}}
    (folder / "manifest.json").write_text(json.dumps({"format": "safetensors", "files": files}))
    assert store.claim(db, row.id)
    store.finish(db, row.id, manifest={"format": "safetensors", "files": files})
    response = client.get(url(done["model_id"], row.id), headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        names = sorted(tar.getnames())
        manifest = tar.extractfile(f"{done['model_id']}-{row.id}/manifest.json")
        assert manifest is not None
        assert hashlib.sha256(manifest.read()).hexdigest() == response.headers["x-manifest-sha256"]
    assert names == [f"{done['model_id']}-{row.id}/manifest.json", f"{done['model_id']}-{row.id}/model.safetensors"]


def test_an_export_outside_the_exports_folder_is_not_sent(client: TestClient, db, api_settings: Settings,
                                                          tenant: Tenant, tmp_path: Path) -> None:
    done = finished_job(client, db, api_settings, tenant)
    row = store.create_export(db, tenant.org_id, done["model_id"], format="gguf", quantization="q8_0",
                              variant="merged", exports_dir=str(tmp_path / "elsewhere"))
    Path(row.path).mkdir(parents=True)
    (Path(row.path) / "x.gguf").write_bytes(b"GGUF")
    assert store.claim(db, row.id)
    store.finish(db, row.id, manifest={"gguf_file": "x.gguf", "files": {"x.gguf": {"bytes": 4, "sha256": "0" * 64}}})
    response = client.get(url(done["model_id"], row.id), headers=tenant.headers)
    assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"
