"""The Python client of the native API: one method per route, typed errors, live streams.

The CLI and the end-to-end tests drive tuneyard through it, so everything they do goes over HTTP
exactly as a user's code would. Responses are the API's JSON objects, as dicts.

    with TuneyardClient("http://127.0.0.1:8000", data_dir=Path("tuneyard-data")) as ty:
        file = ty.upload_file(Path("chats.jsonl"))
        ty.create_dataset("chats", [file["id"]])
        job = ty.create_job(base_model="tiny-llama", datasets=[{"name": "chats"}])
        for item in ty.stream(job["id"]):
            ...
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol, cast

import httpx

from tuneyard.client_sse import PAST_EVERY_ITEM, StreamItem, StreamUnavailable, read_timeout, sse_items

__all__ = ["NoApiKey", "StreamItem", "StreamUnavailable", "TuneyardAPIError", "TuneyardClient", "find_api_key"]

ADMIN_KEY_FILE = "admin.key"
RESTING = frozenset({"completed", "failed", "cancelled", "stopped"})
"""Statuses a job stays in until someone acts: `wait` and `stream` return on them."""


class TuneyardAPIError(Exception):
    """An error answer from the API, with its envelope {"error": {code, message, details}}."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any],
                 headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers: Mapping[str, str] = headers or {}
        super().__init__(f"{status} {code}: {message}")

    @property
    def retry_after_s(self) -> int | None:
        value = self.headers.get("Retry-After")
        return int(value) if value and value.isdigit() else None


class HTTPClient(Protocol):
    """What the client needs of an HTTP client: httpx.Client's request, stream and close."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...

    def stream(self, method: str, url: str, **kwargs: Any) -> AbstractContextManager[Any]: ...

    def close(self) -> None: ...


class NoApiKey(ValueError):
    """No API key was given and none was found in the data folder."""


def find_api_key(data_dir: Path) -> str:
    """The local admin key `tuneyard serve` wrote to DATA_DIR/admin.key."""
    path = data_dir / ADMIN_KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        raise NoApiKey(f"no API key given and none at {path}; start `tuneyard serve` or pass one") from None
    if not key:
        raise NoApiKey(f"{path} is empty")
    return key


class TuneyardClient:
    """A client of one tuneyard server, authenticated by one API key."""

    def __init__(
        self, base_url: str, api_key: str | None = None, *, data_dir: Path | None = None,
        timeout: float = 30.0, http: HTTPClient | None = None,
    ) -> None:
        """`api_key` or else DATA_DIR/admin.key.

        `http` replaces the HTTP client: anything shaped like httpx.Client already pointing at the
        server (tests pass Starlette's TestClient); `base_url` is then only a label.
        """
        if api_key is None:
            if data_dir is None:
                raise NoApiKey("give an api_key, or the data_dir whose admin.key to use")
            api_key = find_api_key(data_dir)
        self.base_url = base_url
        # httpx.Client fits HTTPClient at run time; its precise keyword signatures do not match
        # the protocol's **kwargs for mypy, hence the cast.
        self._http = http if http is not None else cast(HTTPClient, httpx.Client(base_url=base_url, timeout=timeout))
        self._headers = {"Authorization": f"Bearer {api_key}"}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TuneyardClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = {**self._headers, **kwargs.pop("headers", {})}
        response = self._http.request(method, url, headers=headers, **kwargs)
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._request(method, url, **kwargs).json()

    def _data(self, url: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json("GET", url, params=_clean(params))["data"]
        return items

    # -- base models, files, datasets --------------------------------------------------------

    def list_base_models(self) -> list[dict[str, Any]]:
        return self._data("/v1/base-models")

    def get_base_model(self, model_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/base-models/{model_id}"))

    def register_base_model(self, source: str, *, kind: str = "auto", name: str | None = None,
                            description: str | None = None) -> dict[str, Any]:
        body = _clean({"source": source, "kind": kind, "name": name, "description": description})
        return dict(self._json("POST", "/v1/base-models", json=body))

    def upload_file(self, file: Path | bytes | BinaryIO, *, filename: str | None = None,
                    purpose: str = "fine-tune") -> dict[str, Any]:
        """Upload a path, bytes or an open binary file (streamed)."""
        if isinstance(file, Path):
            with file.open("rb") as handle:
                return self.upload_file(handle, filename=filename or file.name, purpose=purpose)
        name = filename or Path(str(getattr(file, "name", "") or "upload.jsonl")).name
        files = {"file": (name, file)}
        return dict(self._json("POST", "/v1/files", files=files, data={"purpose": purpose}))

    def list_files(self) -> list[dict[str, Any]]:
        return self._data("/v1/files")

    def get_file(self, file_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/files/{file_id}"))

    def create_dataset(self, name: str, file_ids: list[str], *, format: str = "auto") -> dict[str, Any]:
        body = {"name": name, "file_ids": file_ids, "format": format}
        return dict(self._json("POST", "/v1/datasets", json=body))

    def list_datasets(self) -> list[dict[str, Any]]:
        return self._data("/v1/datasets")

    def get_dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/datasets/{dataset_id}"))

    def preview_dataset(self, dataset_id: str, limit: int = 10) -> list[dict[str, Any]]:
        return self._data(f"/v1/datasets/{dataset_id}/preview", limit=limit)

    def delete_dataset(self, dataset_id: str) -> None:
        self._request("DELETE", f"/v1/datasets/{dataset_id}")

    def wait_dataset(self, dataset_id: str, timeout: float = 600.0, poll: float = 0.5) -> dict[str, Any]:
        """The dataset once it is `ready` or `invalid`."""
        deadline = time.monotonic() + timeout
        while (dataset := self.get_dataset(dataset_id))["status"] == "validating":
            if time.monotonic() > deadline:
                raise TimeoutError(f"dataset {dataset_id} still validating after {timeout} s")
            time.sleep(poll)
        return dataset

    # -- jobs ------------------------------------------------------------------------------

    def create_job(self, spec: dict[str, Any] | None = None, *, idempotency_key: str | None = None,
                   **fields: Any) -> dict[str, Any]:
        """Submit `spec` (merged with keyword fields: base_model=, datasets=, hyperparams=, name=...)."""
        body = {**(spec or {}), **fields}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return dict(self._json("POST", "/v1/jobs", json=body, headers=headers))

    def list_jobs(self, *, status: str | None = None, type: str | None = None, project_id: str | None = None,
                  limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
        """One page, newest first: {"data": [...], "next_cursor": ..., "has_more": ...}."""
        params = _clean({"status": status, "type": type, "project_id": project_id, "limit": limit, "cursor": cursor})
        return dict(self._json("GET", "/v1/jobs", params=params))

    def iter_jobs(self, **filters: Any) -> Iterator[dict[str, Any]]:
        """Every matching job, newest first, following the cursor."""
        cursor = None
        while True:
            page = self.list_jobs(cursor=cursor, **filters)
            yield from page["data"]
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def get_job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/jobs/{job_id}"))

    def stop_job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{job_id}/stop"))

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{job_id}/cancel"))

    def resume_job(self, job_id: str, checkpoint: str | None = None) -> dict[str, Any]:
        return dict(self._json("POST", f"/v1/jobs/{job_id}/resume", json=_clean({"checkpoint": checkpoint})))

    def delete_job(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{job_id}")

    def events(self, job_id: str, since: int = 0) -> list[dict[str, Any]]:
        return self._data(f"/v1/jobs/{job_id}/events", since=since)

    def metrics(self, job_id: str, since_step: int = -1, kind: str | None = None) -> list[dict[str, Any]]:
        return self._data(f"/v1/jobs/{job_id}/metrics", since_step=since_step, kind=kind)

    def logs(self, job_id: str, since: int = 0, tail: int | None = None) -> list[dict[str, Any]]:
        return self._data(f"/v1/jobs/{job_id}/logs", since=since, tail=tail)

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        return self._data(f"/v1/jobs/{job_id}/checkpoints")

    def result(self, job_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/jobs/{job_id}/result"))

    def artifacts(self, job_id: str) -> list[dict[str, Any]]:
        return self._data(f"/v1/jobs/{job_id}/artifacts")

    def get_artifact(self, job_id: str, path: str) -> bytes:
        return self._request("GET", f"/v1/jobs/{job_id}/artifacts/{path}").content

    def download(self, job_id: str, dest: Path) -> Path:
        """Save the trained model archive (.tar.gz) to `dest` (a folder or a file path); returns the file."""
        with self._http.stream("GET", f"/v1/jobs/{job_id}/download", headers=self._headers) as response:
            if response.status_code >= 400:
                response.read()
                raise _error_from(response)
            target = dest / f"{job_id}.tar.gz" if dest.is_dir() else dest
            with target.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
        return target

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 1.0, *,
             stream: bool = True) -> dict[str, Any]:
        """The job once it rests (completed, failed, cancelled or stopped).

        Followed on the job's stream (one connection; the server says when it ends), from past
        every item so none is sent; where the stream cannot be read (a server or proxy without it),
        or with `stream=False`, by reading the job every `poll` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if stream:
            try:
                for _item in self.stream(job_id, PAST_EVERY_ITEM, deadline=deadline):
                    pass
                return self.get_job(job_id)
            except (StreamUnavailable, TuneyardAPIError, httpx.TransportError):
                pass  # the reads below answer the job, or the error that explains it
        while (job := self.get_job(job_id))["status"] not in RESTING:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout} s")
            time.sleep(poll)
        return job

    def stream(self, job_id: str, last_event_id: str | None = None, *, reconnects: int = 5,
               deadline: float | None = None) -> Iterator[StreamItem]:
        """Events, metrics and logs as they happen, ending with the `end` item once the job rests.

        A dropped connection is resumed from the last item seen (no gaps, no repeats). Raises
        StreamUnavailable when the answer is not a stream, TimeoutError past `deadline` (monotonic).
        """
        failures = 0
        while True:
            headers = {**self._headers, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
            try:
                # A plain (connect, read, write, pool) tuple rather than an httpx.Timeout: an injected
                # client need not be httpx's own (Starlette's TestClient now builds on httpx2).
                timeouts = (30.0, read_timeout(deadline), 30.0, 30.0)
                with self._http.stream("GET", f"/v1/jobs/{job_id}/stream", headers=headers,
                                       timeout=timeouts) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise _error_from(response)
                    for item in sse_items(response, deadline):
                        failures = 0
                        last_event_id = item.id or last_event_id
                        yield item
                        if item.event == "end":
                            return
                failures += 1  # closed before its `end` (a proxy cutting it, say): resumed like a drop
                if failures > reconnects:
                    raise StreamUnavailable(f"the stream of job {job_id} kept closing before its end")
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
                failures += 1
                if failures > reconnects:
                    raise
                time.sleep(min(5.0, 0.2 * 2**failures))

    follow = stream

    # -- models and the service --------------------------------------------------------------

    def list_models(self, *, include_base: bool = False) -> list[dict[str, Any]]:
        """Trained models; with `include_base`, the base models too, as /v1/models lists them for
        OpenAI clients (`kind: base`)."""
        listed = self._data("/v1/models")
        return listed if include_base else [m for m in listed if m.get("kind") != "base"]

    def get_model(self, model_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/models/{model_id}"))

    def delete_model(self, model_id: str) -> None:
        self._request("DELETE", f"/v1/models/{model_id}")

    def evaluate_model(self, model_id: str, *, dataset: str | None = None, max_examples: int | None = None,
                       samples: int | None = None, max_new_tokens: int | None = None) -> dict[str, Any]:
        """Queue an evaluation of the model beside its base (an evaluate job; its id is the job's)."""
        body = _clean({"dataset": dataset, "max_examples": max_examples, "samples": samples,
                       "max_new_tokens": max_new_tokens})
        return dict(self._json("POST", f"/v1/models/{model_id}/evaluations", json=body))

    def list_evaluations(self, model_id: str) -> list[dict[str, Any]]:
        return self._data(f"/v1/models/{model_id}/evaluations")

    def get_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/evaluations/{evaluation_id}"))

    def stats(self) -> dict[str, Any]:
        return dict(self._json("GET", "/v1/stats"))

    def list_templates(self) -> list[dict[str, Any]]:
        return self._data("/v1/templates")

    def create_template(self, name: str, spec: dict[str, Any], description: str = "") -> dict[str, Any]:
        body = {"name": name, "description": description, "spec": spec}
        return dict(self._json("POST", "/v1/templates", json=body))

    def estimate(self, body: dict[str, Any], *, device: str | None = None) -> dict[str, Any]:
        """Memory, time and cost of the job `body` would submit (POST /v1/estimate); nothing is queued."""
        return dict(self._json("POST", "/v1/estimate", json=body, params=_clean({"device": device})))

    # -- trajectories and the datasets built from them -------------------------------------------

    def ingest_trajectories(self, trajectories: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._json("POST", "/v1/trajectories", json={"trajectories": trajectories}))

    def import_trajectories(self, lines: bytes, *, source: str = "import", task: str | None = None) -> dict[str, Any]:
        """OpenAI-style chat logs (JSONL); a 422 names every bad line as `lines.N`."""
        return dict(self._json("POST", "/v1/trajectory-imports", content=lines,
                               params=_clean({"source": source, "task": task}),
                               headers={"Content-Type": "application/x-ndjson"}))

    def list_trajectories(self, *, limit: int = 100, offset: int = 0, task: str | None = None,
                          status: str | None = None, source: str | None = None) -> dict[str, Any]:
        params = _clean({"limit": limit, "offset": offset, "task": task, "status": status, "source": source})
        return dict(self._json("GET", "/v1/trajectories", params=params))

    def get_trajectory(self, trajectory_id: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/v1/trajectories/{trajectory_id}"))

    def build_dataset(self, **filters: Any) -> dict[str, Any]:
        """POST /v1/dataset-builds with document 003's filter names (minLlmCallsPerTrajectory, ...)."""
        return dict(self._json("POST", "/v1/dataset-builds", json=_clean(filters)))

    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/healthz"))

    def prometheus_metrics(self) -> str:
        return self._request("GET", "/metrics").text


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _error_from(response: Any) -> TuneyardAPIError:
    try:
        error = response.json()["error"]
        return TuneyardAPIError(response.status_code, error["code"], error["message"], error.get("details") or {},
                                response.headers)
    except (ValueError, KeyError, TypeError):
        return TuneyardAPIError(response.status_code, "INTERNAL_ERROR", response.text[:500] or response.reason_phrase,
                                {}, response.headers)
