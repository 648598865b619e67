"""`tuneyard serve --auth none`: single-user mode for a laptop. Refused, with a clear message and a
non-zero exit, unless the server binds only to loopback; when it does, a request without a key
acts as the local admin of the default organization, and a wrong key is still refused."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from tests.support.service import Service


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "localhost.evil.invalid"])
def test_single_user_mode_is_refused_off_loopback(service: Service, host: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tuneyard.cli.main", "serve", "--auth", "none", "--host", host,
                           "--port", str(service.port), "--workers", "0"],
                          env=service.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "loopback" in done.stderr and repr(host) in done.stderr and "Traceback" not in done.stderr
    assert not (service.data_dir / "admin.key").exists()  # refused before anything was made


def test_an_unknown_auth_mode_is_refused(service: Service) -> None:
    done = subprocess.run([sys.executable, "-m", "tuneyard.cli.main", "serve", "--auth", "nobody", "--workers", "0",
                           "--port", str(service.port)], env=service.env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "'nobody' is not one of key, none" in done.stderr


def test_a_request_without_a_key_acts_as_the_local_admin(service: Service) -> None:
    service.start_serve(workers=1, TUNEYARD_AUTH="none")
    keyless = httpx.get(f"{service.url}/v1/jobs", timeout=10)
    assert keyless.status_code == 200, keyless.text
    keys = httpx.get(f"{service.url}/v1/keys", timeout=10)  # an admin route
    assert keys.status_code == 200, keys.text
    assert [k["name"] for k in keys.json()["data"]] == ["local admin"]
    wrong = httpx.get(f"{service.url}/v1/jobs", headers={"Authorization": "Bearer ty_not-a-key"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "UNAUTHORIZED"
    assert "single-user mode" in service.log("serve.log")


def test_without_single_user_mode_a_keyless_request_is_refused(service: Service) -> None:
    service.start_serve(workers=1)
    refused = httpx.get(f"{service.url}/v1/jobs", timeout=10)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "UNAUTHORIZED"
