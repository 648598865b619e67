"""Document 002's `dataset_path` as a hub dataset id, on both databases, against a stand-in hub speaking
huggingface_hub's protocol (tests/support/hub_standin.py) at `hub_endpoint`: the split's rows become the
job's dataset; a gated repo needs the request's hf_token, which reaches the hub and nothing else; an
unknown repo, a split over the upload limit, a hub that is down or a path climbing out is a 400 naming
`dataset_path` with nothing made; a hub that never answers is given up on after `hub_timeout_seconds`."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support import api
from tests.support.api import Tenant, chat_lines
from tests.support.hub_standin import HubRepo, HubStandIn, running_hub
from tuneyard.api.app import create_app
from tuneyard.services.hub_datasets import HubAccess, HubDatasetError, HubDatasetRef, fetch
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.tables import Dataset, File, Job

app, client, tenant = api.app, api.client, api.tenant

TOKEN = "hf_gatedStandInToken0123456789abcdef"


def parquet(rows: list[dict[str, str]]) -> bytes:
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out.getvalue()


def pairs(n: int, split: str) -> list[dict[str, str]]:
    return [{"prompt": f"{split} {i} plus 1 is", "completion": f" {i + 1}"} for i in range(n)]


REPOS = {
    # The layout the hub gives a dataset pushed with `datasets`: Parquet shards named by split.
    "acme/sums": HubRepo({"README.md": b"# sums\n", "data/train-00000-of-00001.parquet": parquet(pairs(12, "train")),
                          "data/test-00000-of-00001.parquet": parquet(pairs(3, "test"))}),
    # A README's YAML configs, which the hub answers as cardData: the split is what they say, not the file names.
    "acme/configured": HubRepo({"a.jsonl": chat_lines(5), "b.jsonl": chat_lines(6)}, card_data={"configs": [
        {"config_name": "default", "data_files": [{"split": "train", "path": "a.jsonl"}]},
        {"config_name": "more", "data_files": [{"split": "train", "path": "a.jsonl"},
                                               {"split": "eval", "path": "b*"}]}]}),
    "acme/gated-chats": HubRepo({"chats.jsonl": chat_lines(7)}, gated=True),
    "acme/huge": HubRepo({"train.jsonl": chat_lines(2000)}),  # past the tests' upload limit
    "acme/junk": HubRepo({"train.jsonl": b'{"colour": "blue"}\n' * 4}),  # rows of no format
}
PRINTED = {"base_model": "tiny-llama", "method": "lora", "num_epochs": 1, "batch_size": 4}


@pytest.fixture
def hub() -> Iterator[HubStandIn]:
    with running_hub(REPOS, granted={TOKEN}) as hub:
        yield hub


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path, hub: HubStandIn) -> Settings:
    assert len(REPOS["acme/huge"].files["train.jsonl"]) > api.UPLOAD_LIMIT
    return settings.with_overrides(max_upload_bytes=api.UPLOAD_LIMIT, hub_endpoint=hub.url, hub_timeout_seconds=5.0,
                                   job_create_rate_per_minute=3)


def made(db: Database, org_id: str) -> list[Any]:
    """Every job, file and dataset row of the organization."""
    with db.read() as session:
        return [row for table in (Job, File, Dataset)
                for row in session.scalars(select(table).where(table.org_id == org_id)).all()]


def the_dataset(db: Database, org_id: str, job_id: str) -> Dataset:
    """The dataset the job trains on (the copy its dataset_path was made into)."""
    with db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        dataset = session.get(Dataset, job.spec["dataset_id"])  # the spec as submitted, in 002's words
        assert dataset is not None
        return dataset


def test_a_hub_id_is_a_job_on_the_splits_rows(client: TestClient, db: Database, tenant: Tenant, hub: HubStandIn,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_theServersOwnLogin")  # huggingface_hub would send it, unless told not to
    response = client.post("/api/training/jobs", headers=tenant.headers, json={**PRINTED, "dataset_path": "acme/sums"})
    assert response.status_code == 201, response.text
    assert response.json()["config"]["dataset_path"] == "acme/sums"
    dataset = the_dataset(db, tenant.org_id, response.json()["job_id"])
    assert dataset.status == "ready" and dataset.examples == 12  # the train split's rows, not the test split's
    job = client.get(f"/v1/jobs/{response.json()['job_id']}", headers=tenant.headers).json()
    assert job["config"]["datasets"][0]["path"].startswith("train-00000-of-00001.parquet")
    for dataset_path, examples in (("acme/configured", 5), ("acme/configured:more:eval", 6)):
        response = client.post("/api/training/jobs", headers=tenant.headers,
                               json={**PRINTED, "dataset_path": dataset_path})
        assert response.status_code == 201, response.text
        assert the_dataset(db, tenant.org_id, response.json()["job_id"]).examples == examples, dataset_path
    kept = made(db, tenant.org_id)
    limited = client.post("/api/training/jobs", headers=tenant.headers, json={**PRINTED, "dataset_path": "acme/sums"})
    assert limited.status_code == 429, limited.text  # past the rate: refused after the fetch, and its copy gone
    assert [row.id for row in made(db, tenant.org_id)] == [row.id for row in kept]
    paths = {r.path.split("?")[0] for r in hub.requests}
    assert "/datasets/acme/sums/resolve/" + REPOS["acme/sums"].sha + "/data/test-00000-of-00001.parquet" not in paths
    assert hub.requests and all(r.authorization is None for r in hub.requests)  # none given: none sent


def test_a_gated_repo_takes_the_requests_token_and_keeps_it_nowhere(client: TestClient, db: Database, tenant: Tenant,
                                                                   hub: HubStandIn) -> None:
    body = {**PRINTED, "dataset_path": "acme/gated-chats"}
    refused = client.post("/api/training/jobs", headers=tenant.headers, json=body)
    assert refused.status_code == 400, refused.text
    [problem] = refused.json()["error"]["details"]["problems"]
    assert problem["field"] == "dataset_path" and "is gated: give hf_token" in problem["message"]
    assert made(db, tenant.org_id) == []
    wrong = client.post("/api/training/jobs", headers=tenant.headers, json={**body, "hf_token": "hf_notKnownHere"})
    assert wrong.status_code == 400 and "refused hf_token" in wrong.text and "hf_notKnownHere" not in wrong.text
    assert made(db, tenant.org_id) == []

    hub.requests.clear()
    answers = [client.post("/api/training/jobs", headers=tenant.headers, json={**body, "hf_token": TOKEN})]
    assert answers[0].status_code == 201, answers[0].text
    job_id = answers[0].json()["job_id"]
    assert {r.authorization for r in hub.requests} == {f"Bearer {TOKEN}"}
    assert the_dataset(db, tenant.org_id, job_id).examples == 7
    answers += [client.get(path, headers=tenant.headers) for path in (
        f"/api/training/jobs/{job_id}", f"/v1/jobs/{job_id}", "/v1/datasets", "/v1/files", f"/v1/jobs/{job_id}/events")]
    assert all(a.status_code in (200, 201) and TOKEN not in a.text for a in answers)
    rows = made(db, tenant.org_id)
    assert len(rows) == 3 and all(TOKEN not in json.dumps(vars(r), default=str) for r in rows)


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


REFUSED = [
    # (dataset_path, what the 400 says, what was asked of the hub: nothing, its info, or files too)
    ("acme/missing", "has no dataset acme/missing (or it is private: give hf_token)", "info"),
    ("acme/sums:validation", "has no split 'validation'; it has train, test", "info"),
    ("acme/huge", "over this server's upload limit of 65536 bytes", "info"),
    ("acme/junk", "", "files"),  # fetched and copied, then refused as data: the copy goes too
    ("acme/sums/../../../x", "outside the dataset folder", "nothing"),
    ("../acme/sums", "outside the dataset folder", "nothing"),
    ("sums.jsonl", "not a hub dataset id", "nothing"),
]


def test_what_the_hub_cannot_give_is_a_400_naming_dataset_path(client: TestClient, db: Database, tenant: Tenant,
                                                               hub: HubStandIn) -> None:
    for dataset_path, said, asked in REFUSED:  # one app per database for all: CI time is scarce
        hub.requests.clear()
        response = client.post("/api/training/jobs", headers=tenant.headers,
                               json={**PRINTED, "dataset_path": dataset_path})
        assert response.status_code == 400, response.text
        [problem] = response.json()["error"]["details"]["problems"]
        assert problem["field"] == "dataset_path" and said in problem["message"], problem
        if asked != "files":
            assert "the dataset folder" in problem["message"]  # what was tried first, always said
        assert made(db, tenant.org_id) == [], dataset_path
        downloads = [r for r in hub.requests if r.method == "GET" and "/resolve/" in r.path]
        assert (bool(hub.requests), bool(downloads)) == (asked != "nothing", asked == "files"), dataset_path


def test_a_hub_that_is_down_is_a_400_saying_both_tries(api_settings: Settings, db: Database, tenant: Tenant) -> None:
    down = api_settings.with_overrides(hub_endpoint=_closed_port())
    with TestClient(create_app(down, db)) as client:
        response = client.post("/api/training/jobs", headers=tenant.headers,
                               json={**PRINTED, "dataset_path": "acme/sums"})
    assert response.status_code == 400, response.text
    [problem] = response.json()["error"]["details"]["problems"]
    assert problem["field"] == "dataset_path", problem
    assert "no file 'acme/sums' in the dataset folder" in problem["message"]
    assert f"the hub at {down.hub_endpoint} could not be reached" in problem["message"]
    assert made(db, tenant.org_id) == []


def test_a_hub_that_never_answers_is_given_up_on_after_the_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # listens, so the connection is made, and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(HubDatasetError, match=f"the hub at {endpoint} could not be reached"):
            fetch(HubDatasetRef("acme/sums"), HubAccess(endpoint, None, 0.3, api.UPLOAD_LIMIT), tmp_path)
        assert time.monotonic() - started < 3
