"""Run storage on S3 or an S3-compatible store (MinIO, Ceph, moto), through pyarrow.fs.

Imported only when TUNEYARD_RUN_STORAGE names an s3:// URL (tuneyard.training.run_storage.BACKENDS):
pyarrow is the `s3` extra. Credentials and region come from the AWS SDK's own chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_DEFAULT_REGION, ~/.aws); the endpoint is the setting's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from pyarrow import fs

from tuneyard.errors import RunStorageError, SettingsError
from tuneyard.training.run_storage import SETTING

CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 60.0
ATTEMPTS = 3
"""Per request: an unreachable endpoint fails within seconds, not after the SDK's long default retries."""
COPY_BUFFER_BYTES = 8 * 1024 * 1024


def open_store(url: str, endpoint: str | None) -> S3Store:
    """The store at `s3://bucket/prefix`; `endpoint` an http(s) URL, or None for AWS itself."""
    root = url.removeprefix("s3://").strip("/")
    client = fs.S3FileSystem(
        endpoint_override=endpoint, connect_timeout=CONNECT_TIMEOUT_SECONDS, request_timeout=REQUEST_TIMEOUT_SECONDS,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=ATTEMPTS),
    )  # fmt: skip
    return S3Store(client, root, endpoint)


class S3Store:
    """Objects under `root` ("bucket/prefix") of one S3 endpoint."""

    def __init__(self, client: fs.S3FileSystem, root: str, endpoint: str | None) -> None:
        self.client, self.root, self.endpoint = client, root, endpoint

    @property
    def url(self) -> str:
        return f"s3://{self.root}"

    def child(self, name: str) -> S3Store:
        return S3Store(self.client, f"{self.root}/{name.strip('/')}", self.endpoint)

    def check(self) -> None:
        bucket = self.root.split("/", 1)[0]
        where = f"at {self.endpoint}" if self.endpoint else "on AWS (no TUNEYARD_RUN_STORAGE_ENDPOINT)"
        try:
            info = self.client.get_file_info(bucket)
        except OSError as exc:
            raise SettingsError(SETTING, f"{self.url}: cannot reach the S3 endpoint {where}: {_reason(exc)}") from None
        if info.type == fs.FileType.NotFound:
            raise SettingsError(SETTING, f"{self.url}: there is no bucket {bucket!r} {where}; create it first")

    def put(self, key: str, source: Path) -> None:
        with _failing("upload", self._path(key)), open(source, "rb") as src, \
                self.client.open_output_stream(self._path(key)) as out:
            while block := src.read(COPY_BUFFER_BYTES):
                out.write(block)

    def get(self, key: str, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _failing("download", self._path(key)), self.client.open_input_stream(self._path(key)) as src, \
                open(target, "wb") as out:
            while block := src.read(COPY_BUFFER_BYTES):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())

    def read(self, key: str) -> bytes | None:
        path = self._path(key)
        with _failing("read", path):
            if self.client.get_file_info(path).type != fs.FileType.File:
                return None
            with self.client.open_input_stream(path) as src:
                data: bytes = src.read()
                return data

    def sizes(self, prefix: str) -> dict[str, int]:
        base = self._path(prefix)
        with _failing("list", base):
            infos = self.client.get_file_info(fs.FileSelector(base, allow_not_found=True, recursive=True))
        return {info.path[len(base) + 1:]: int(info.size) for info in infos if info.type == fs.FileType.File}

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            with _failing("delete", path), suppress(FileNotFoundError):  # already gone: what was wanted
                self.client.delete_file(path)

    def _path(self, key: str) -> str:
        key = key.strip("/")
        return f"{self.root}/{key}" if key else self.root


@contextmanager
def _failing(doing: str, path: str) -> Iterator[None]:
    """Turn the client's OSError into a RunStorageError that says what was being done, and where."""
    try:
        yield
    except OSError as exc:
        raise RunStorageError(f"run storage: {doing} of s3://{path} failed: {_reason(exc)}") from exc


def _reason(exc: OSError) -> str:
    """The SDK's message, whose first line says what went wrong (the rest repeats the request)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
