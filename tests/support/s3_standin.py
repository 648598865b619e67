"""A local S3-compatible server for run storage tests: moto's, from PyPI, in a process of its own.

`python -m moto.server` answers the S3 API on loopback with any credentials; a test creates its bucket
through pyarrow (the client tuneyard itself uses) and points TUNEYARD_RUN_STORAGE at it.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.runs import wait_for
from tests.support.service import free_port

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "tuneyard-test", "AWS_SECRET_ACCESS_KEY": "tuneyard-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
"""moto takes any; set so that the AWS SDK never goes looking for an instance's credentials."""


@dataclass(frozen=True)
class S3Standin:
    endpoint: str

    def create_bucket(self, name: str) -> str:
        """A new bucket; returns its s3:// URL."""
        from pyarrow import fs

        fs.S3FileSystem(endpoint_override=self.endpoint, allow_bucket_creation=True).create_dir(name)
        return f"s3://{name}"

    def env(self, url: str) -> dict[str, str]:
        """The variables that point a tuneyard process's run storage at `url` on this server."""
        return {**CREDENTIALS, "TUNEYARD_RUN_STORAGE": url, "TUNEYARD_RUN_STORAGE_ENDPOINT": self.endpoint}


def _up(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@contextmanager
def s3_server(log: Path) -> Iterator[S3Standin]:
    """moto's S3 server on a free loopback port, with this process's AWS credentials set for pyarrow."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or _up(endpoint), timeout=60, interval=0.2)
        assert proc.poll() is None, log.read_text()[-2000:]
        with pytest.MonkeyPatch.context() as patch:
            for name, value in CREDENTIALS.items():
                patch.setenv(name, value)
            patch.delenv("AWS_ENDPOINT_URL", raising=False)
            yield S3Standin(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
