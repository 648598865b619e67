"""The `tuneyard` CLI as a user runs it: a subprocess against a real `tuneyard serve`, real exit codes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.support.runs import REPO
from tests.support.service import Service

EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"
SMALL = ["--set", "max_seq_length=128", "--set", "bf16=false", "--set", "seed=3"]
TIMEOUT_S = 240

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def cli_args(service: Service, *args: str) -> list[str]:
    return [sys.executable, "-m", "tuneyard.cli.main", "--url", service.url, *args]


def cli_env(service: Service) -> dict[str, str]:
    env = service.env()
    for name in ("TUNEYARD_URL", "TUNEYARD_API_KEY"):  # the admin key in the data folder is used
        env.pop(name, None)
    return env


def cli(service: Service, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli_args(service, *args), env=cli_env(service), capture_output=True, text=True,
                          timeout=timeout, check=False)


def spawn(service: Service, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli_args(service, *args), env=cli_env(service), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result))


def upload(service: Service, name: str) -> None:
    out = ok(cli(service, "datasets", "upload", str(EXAMPLES), "--name", name))
    assert "ready: 64 examples" in out


def test_upload_train_follow_logs_and_download(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    upload(service, "chats")
    with spawn(service, "jobs", "create", "--base-model", "tiny-llama", "--dataset", "chats",
               "--set", "epochs=1", *SMALL, "--follow") as create:
        assert create.stdout is not None
        first = create.stdout.readline()
        job_id = first.split()[0]
        assert job_id.startswith("job_") and "following" in first, first
        with spawn(service, "jobs", "logs", job_id, "-f") as logs:  # live, while the job trains
            out, err = create.communicate(timeout=TIMEOUT_S)
            log_out, log_err = logs.communicate(timeout=60)
    assert create.returncode == 0, (out, err, service.log("serve.log"))
    assert re.search(r"^step (\d+)/\1  loss \d+\.\d+  \S+ tok/s  ETA 0:00$", out, re.M), out
    assert f"job {job_id} completed: model model_" in out
    assert logs.returncode == 0, log_err
    assert re.search(r"info +step 1/\d+ · loss", log_out) and "completed: ppl" in log_out, log_out

    archive = tmp_path / "model.tar.gz"
    assert f"saved {archive}" in ok(cli(service, "jobs", "download", job_id, "-o", str(archive)))
    with tarfile.open(archive) as tar:
        assert any(n.endswith("adapter_model.safetensors") for n in tar.getnames())
    [model] = as_json(cli(service, "--json", "models", "list"))
    assert model["lineage"]["job_id"] == job_id


def interrupt_once_training(service: Service, job_id: str) -> tuple[int, str]:
    """`jobs get --follow` until it shows a step, then Ctrl-C: its exit code and stderr."""
    with spawn(service, "jobs", "get", job_id, "--follow") as watcher:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            if line.startswith("step "):
                break
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=60)
    return watcher.returncode, err


def test_ctrl_c_stop_resume_cancel_and_delete(service: Service) -> None:
    service.start_serve()
    upload(service, "chats")
    job = as_json(cli(service, "--json", "jobs", "create", "--base-model", "tiny-llama", "--dataset", "chats",
                      "--set", "epochs=500", *SMALL, "--name", "long"))
    job_id = job["id"]
    # Long enough (8 steps an epoch) that it is still training when a loaded host has started the
    # watcher: at 20 epochs it once completed first, and the watcher exited 0 before its Ctrl-C.
    code, err = interrupt_once_training(service, job_id)
    assert code == 130 and f"job {job_id} keeps running" in err, err

    assert f"{job_id} stop" in ok(cli(service, "jobs", "stop", job_id))
    stopped = cli(service, "jobs", "get", job_id, "--follow")
    assert stopped.returncode == 75, (stopped.stdout, stopped.stderr)
    assert re.search(rf"job {job_id} stopped at checkpoint step [1-9]", stopped.stdout), stopped.stdout

    assert f"{job_id} queued" in ok(cli(service, "jobs", "resume", job_id))
    ok(cli(service, "jobs", "cancel", job_id))
    cancelled = cli(service, "jobs", "get", job_id, "--follow")
    assert cancelled.returncode == 1 and f"job {job_id} cancelled" in cancelled.stdout, cancelled.stdout

    assert f"deleted {job_id}" in ok(cli(service, "jobs", "delete", job_id, "--yes"))
    gone = cli(service, "jobs", "get", job_id)
    assert gone.returncode == 1 and f"error: job {job_id} not found (404 NOT_FOUND)" in gone.stderr


def test_errors_are_one_line_with_exit_codes(service: Service, tmp_path: Path) -> None:
    service.start_serve()
    malformed = tmp_path / "broken.jsonl"
    malformed.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
                         "not json\n")
    # Independent cases run side by side: each is a fresh interpreter.
    cases = {
        "bad_set": ["jobs", "create", "--base-model", "tiny-llama", "--dataset", "x", "--set", "epochs=lots"],
        "invalid": ["datasets", "upload", str(malformed)],
        "missing": ["jobs", "create", "--base-model", "no-such-model", "--dataset", "no-such-data"],
        "wrong_key": ["--api-key", "ty_wrong", "jobs", "list"],
        "new_key": ["--json", "keys", "create", "ci"],
    }
    procs = {name: spawn(service, *args) for name, args in cases.items()}
    done = {}
    for name, proc in procs.items():
        with proc:
            out, err = proc.communicate(timeout=TIMEOUT_S)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    assert done["bad_set"].returncode == 2
    assert done["bad_set"].stderr.startswith("error: --set 'epochs=lots': Input should be a valid integer")

    invalid = done["invalid"]
    assert invalid.returncode == 1 and "invalid:" in invalid.stdout
    assert re.search(r"^  broken\.jsonl line 2: ", invalid.stdout, re.M), invalid.stdout

    missing = done["missing"]
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[0].endswith("(422 INVALID_REQUEST)")
    assert "  base_model: no base model 'no-such-model'" in missing.stderr
    assert "  datasets.0: no dataset 'no-such-data'" in missing.stderr

    assert done["wrong_key"].returncode == 1
    assert done["wrong_key"].stderr == "error: the API key is unknown or revoked (401 UNAUTHORIZED)\n"

    key = as_json(done["new_key"])
    assert key["key"].startswith(key["prefix"]) and key["prefix"] in ok(cli(service, "keys", "list"))
    ok(cli(service, "keys", "revoke", key["id"]))
    revoked = cli(service, "--api-key", key["key"], "jobs", "list")
    assert revoked.returncode == 1 and "401 UNAUTHORIZED" in revoked.stderr
