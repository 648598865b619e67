"""What the CLI prints and its exit codes, against a stub client (no server)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tuneyard.cli import common
from tuneyard.cli.main import app
from tuneyard.client import NoApiKey, StreamItem, TuneyardAPIError

NOW = "2026-01-02T03:04:05+00:00"


def job(status: str = "queued", **extra: Any) -> dict[str, Any]:
    return {"id": "job_1", "type": "finetune", "name": None, "status": status, "project_id": None, "retries": 0,
            "max_retries": 3, "attempt": 1, "last_checkpoint_step": None, "output_model_id": None,
            "created_at": NOW, "started_at": None, "finished_at": None, "loss": None, "error": None,
            "progress": {"step": None, "total_steps": None, "percent": None, "eta_s": None},
            "spec": {"base_model": "tiny-llama", "datasets": [{"name": "chats"}]}, **extra}


def metric(step: int, total: int = 4) -> StreamItem:
    values = {"loss": 2.5 - step / 10, "tokens_per_s": 1500.0, "eta_s": 4.0 * (total - step), "total_steps": total}
    return StreamItem("metric", None, {"step": step, "kind": "train", "values": values})


class StubClient:
    """The client methods the CLI calls, answering from fixed data and recording calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.final = job("completed", output_model_id="model_1")
        self.items: list[StreamItem] = [StreamItem("event", None, {"type": "running", "message": "runner started"}),
                                        *(metric(s) for s in range(1, 5)), StreamItem("end", None, {})]
        self.dataset = {"id": "ds_1", "name": "chats", "status": "ready", "format": "chat", "examples": 64,
                        "tokens_est": 1135, "bytes": 10_500, "file_ids": ["file_1"], "errors": [],
                        "created_at": NOW}
        self.error: Exception | None = None

    def __enter__(self) -> StubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _call(self, name: str, arg: Any = None) -> None:
        self.calls.append((name, arg))
        if self.error is not None:
            raise self.error

    def list_jobs(self, **filters: Any) -> dict[str, Any]:
        self._call("list_jobs", filters)
        running = job("running", loss=1.25, progress={"step": 3, "total_steps": 12, "percent": 25.0})
        return {"data": [running], "next_cursor": None, "has_more": False}

    def create_job(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        self._call("create_job", (body, idempotency_key))
        return job()

    def get_job(self, job_id: str) -> dict[str, Any]:
        self._call("get_job", job_id)
        return self.final

    def stream(self, job_id: str, reconnects: int = 5) -> Iterator[StreamItem]:
        self._call("stream", job_id)
        yield from self.items

    def upload_file(self, path: Path) -> dict[str, Any]:
        self._call("upload_file", path)
        return {"id": "file_1", "bytes": 10_500}

    def create_dataset(self, name: str, file_ids: list[str], format: str = "auto") -> dict[str, Any]:
        self._call("create_dataset", (name, file_ids, format))
        return {**self.dataset, "status": "validating"}

    def wait_dataset(self, dataset_id: str) -> dict[str, Any]:
        return self.dataset


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> StubClient:
    client = StubClient()
    monkeypatch.setattr(common, "connect", lambda options: client)
    return client


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["--url", "http://stub", "--api-key", "ty_x", *args])


def test_jobs_list_is_a_table_and_json_is_the_api_objects(stub: StubClient) -> None:
    result = run("jobs", "list", "--status", "running", "--limit", "5")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "STATUS", "BASE", "MODEL", "PROGRESS", "LOSS", "CREATED"]
    assert row.split()[:6] == ["job_1", "-", "running", "tiny-llama", "3/12", "(25%)"]
    assert stub.calls == [("list_jobs", {"status": "running", "type": None, "limit": 5})]
    as_json = run("--json", "jobs", "list")
    assert json.loads(as_json.stdout)[0]["id"] == "job_1"


def test_follow_prints_progress_and_exits_0_on_completion(stub: StubClient) -> None:
    result = run("jobs", "create", "--base-model", "tiny-llama", "--dataset", "chats", "--set", "epochs=1",
                 "--follow")
    assert result.exit_code == 0, result.output
    body, _ = stub.calls[0][1]
    assert body == {"base_model": "tiny-llama", "datasets": [{"name": "chats"}], "hyperparams": {"epochs": 1}}
    assert "· runner started" in result.stdout
    assert "step 4/4  loss 2.1000  1.5k tok/s  ETA 0:00" in result.stdout  # the last step is always shown
    assert "job job_1 completed: model model_1" in result.stdout


@pytest.mark.parametrize(("final", "code", "says"), [
    (job("stopped", last_checkpoint_step=2), 75, "stopped at checkpoint step 2"),
    (job("failed", error={"error_type": "user_error", "message": "no such file"}), 1,
     "job job_1 failed (user_error): no such file"),
    (job("cancelled"), 1, "job job_1 cancelled"),
])
def test_follow_exits_with_the_outcome(stub: StubClient, final: dict[str, Any], code: int, says: str) -> None:
    stub.final = final
    result = run("jobs", "get", "job_1", "--follow")
    assert result.exit_code == code and says in result.stdout, result.output


def test_ctrl_c_while_following_exits_130_and_says_the_job_keeps_running(stub: StubClient) -> None:
    def interrupted(job_id: str, reconnects: int = 5) -> Iterator[StreamItem]:
        yield metric(1)
        raise KeyboardInterrupt

    stub.stream = interrupted  # type: ignore[method-assign]
    result = run("jobs", "get", "job_1", "--follow")
    assert result.exit_code == 130
    assert "job job_1 keeps running" in result.stderr


def test_a_422_prints_each_problem_on_its_own_line(stub: StubClient) -> None:
    problems = [{"field": "base_model", "message": "no base model 'x'"},
                {"field": "datasets.0", "message": "no dataset"}]
    stub.error = TuneyardAPIError(422, "INVALID_REQUEST", "the job request has 2 problem(s): base_model: ...",
                                  {"problems": problems})
    result = run("jobs", "create", "--base-model", "x", "--dataset", "y")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: the job request has 2 problem(s) (422 INVALID_REQUEST)",
                                          "  base_model: no base model 'x'", "  datasets.0: no dataset"]
    assert result.stdout == ""


@pytest.mark.parametrize(("error", "code", "says"), [
    (TuneyardAPIError(401, "UNAUTHORIZED", "the API key is unknown or revoked", {}), 1,
     "error: the API key is unknown or revoked (401 UNAUTHORIZED)"),
    (TuneyardAPIError(429, "RATE_LIMITED", "too many jobs", {}, {"Retry-After": "7"}), 1, "retry after 7 s"),
    (httpx.ConnectError("Connection refused"), 1, "error: cannot reach tuneyard at http://stub: Connection refused"),
    (NoApiKey("no API key given and none at d/admin.key"), 2, "none at d/admin.key"),
])
def test_errors_are_one_line_and_an_exit_code(stub: StubClient, error: Exception, code: int, says: str) -> None:
    stub.error = error
    result = run("jobs", "list")
    assert result.exit_code == code and says in result.stderr, result.output
    assert "Traceback" not in result.output


def test_a_bad_set_exits_2_without_calling_the_server(stub: StubClient) -> None:
    result = run("jobs", "create", "--base-model", "tiny-llama", "--dataset", "d", "--set", "epochs=lots")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --set 'epochs=lots': Input should be a valid integer")
    assert stub.calls == []


def test_an_invalid_dataset_prints_numbered_lines_and_exits_1(stub: StubClient, tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("{}\n")
    stub.dataset = {**stub.dataset, "status": "invalid", "examples": 0, "errors": [
        {"file_index": 0, "line": 1, "message": "no messages"}, {"file_index": 0, "line": 7, "message": "bad JSON"}]}
    result = run("datasets", "upload", str(data), "--format", "chat")
    assert result.exit_code == 1
    assert stub.calls[1] == ("create_dataset", ("chats", ["file_1"], "chat"))
    assert "  chats.jsonl line 1: no messages\n  chats.jsonl line 7: bad JSON" in result.stdout


def test_a_ready_dataset_prints_its_counts(stub: StubClient, tmp_path: Path) -> None:
    data = tmp_path / "chats.jsonl"
    data.write_text("{}\n")
    result = run("datasets", "upload", str(data), "--name", "mine")
    assert result.exit_code == 0
    assert "ready: 64 examples, ~1,135 tokens, format chat" in result.stdout
