"""Fuzz the native API of a live `tuneyard serve` with schemathesis, every check on, seeded.

Starts `tuneyard serve --workers 0` (jobs stay queued: the fuzzer's jobs must not train) on a fresh
data folder, seeds what the documented examples name (a file and the dataset `my-chats`), and runs
`schemathesis run --checks all` over every operation of /openapi.json in all its phases (examples,
coverage, fuzzing, stateful: the document links each creation to the operations on what it made, so
stopping, cancelling, resuming and deleting run on jobs, datasets and keys the fuzzer made itself).
Prints the requests sent, their statuses and the failures; `main` returns them (tests/e2e uses it).

    .venv/bin/python -m benchmarks.api_fuzz [--max-examples 100] [--seed 17] [--workers 1]
        [--database-url URL] [--keep DIR]

Keys: a member key for the members' routes; an admin key of the same organization for the admin
routes (POST /v1/base-models, /metrics); and /v1/keys with the admin key of an organization of its
own. DELETE /v1/keys/{key_id} may revoke any key of its caller's organization (its own too, once it
has listed it), so that organization holds nothing else: a revoked key costs the key routes their
401s and leaves every other operation's key working.

What the schema cannot say: a body may name things that must exist in the store (a dataset, a
file, a base model's folder, a checkpoint) and a cursor or a stream position (Last-Event-ID) must be
one the service handed out. A
schema-valid request naming nothing that exists is a 422 there by design (every problem of the
request at once), so those operations also expect 422 in the `positive_data_acceptance` check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.service_bench import REPO, free_port
from tuneyard.client import find_api_key

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Operations whose schema-valid requests may name something that is not there (see the docstring).
# Also those whose bodies have rules a schema cannot state (a trajectory's endTime after its
# startTime, a build's until after its since, an
# enabled auto-training with a job to submit, a template's spec that must parse as a job, JSONL lines
# that must each be a chat log).
REFERENCING = (("POST", "/v1/jobs"), ("POST", "/v1/datasets"), ("POST", "/v1/base-models"),
               ("GET", "/v1/jobs"), ("POST", "/v1/jobs/{job_id}/resume"), ("GET", "/v1/jobs/{job_id}/stream"),
               ("POST", "/v1/estimate"), ("POST", "/v1/recommend"), ("POST", "/v1/templates"),
               ("POST", "/v1/models/{model_id}/ollama"), ("POST", "/v1/dataset-builds"), ("PUT", "/v1/auto-training"),
               ("POST", "/v1/trajectory-imports"), ("POST", "/v1/trajectories"),
               # a model that must exist and be activated; max_tokens and max_completion_tokens exclusive
               ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
               ("POST", "/v1/models/{model_id}/activate"))
REFERENCING_400 = (("GET", "/jobs"), ("POST", "/jobs"), ("POST", "/training/recommend"),
                   ("POST", "/felix/training-jobs"), ("POST", "/v0.5/fine-tune/jobs"),
                   ("GET", "/v1/fine_tuning/jobs"), ("POST", "/v1/fine_tuning/jobs"),
                   ("POST", "/api/training/jobs"), ("POST", "/api/training/templates"),
                   # 003's data: a trajectory's endTime after its startTime, a build that matches something,
                   # an enabled auto-training with a job to submit
                   ("POST", "/api/training/trajectories"), ("POST", "/api/training/datasets/build"),
                   ("PUT", "/api/training/auto/config"),
                   # 003's models: an ollamaUrl or providerModel that is schema-valid and still refused;
                   # 002's estimate: a dataset_path that names no file
                   ("POST", "/api/training/models/{model_id}/import-ollama"),
                   ("POST", "/api/training/models/{model_id}/activate"), ("POST", "/api/training/estimate"))
"""The same for the dialects, whose documents answer such a request 400 INVALID_REQUEST (a cursor or
`after` that names no job, a dataset, file, model or template spec field that does not exist)."""
ADMIN_OPERATIONS = (("POST", "/v1/base-models"), ("GET", "/metrics"), ("GET", "/v1/serving"))
SETTINGS = {  # what the fuzzer creates must not run into the limits a user would (they are tested elsewhere)
    "TUNEYARD_JOB_CREATE_RATE_PER_MINUTE": "100000",
    "TUNEYARD_QUOTA_ACTIVE_JOBS": "100000",
    "TUNEYARD_QUOTA_FILES": "100000",
    "TUNEYARD_QUOTA_DATASETS": "100000",
    "TUNEYARD_QUOTA_BASE_MODELS": "100000",
    "TUNEYARD_MAX_UPLOAD_BYTES": str(1024 * 1024),
}
SEED_ROWS = b'{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}\n' * 8


@dataclass
class FuzzResult:
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)  # "ST103 Undocumented status code × 2" per kind
    errors: int = 0  # test cases or operations schemathesis could not run (a network error, a bad schema)
    test_cases: int = 0
    seconds: float = 0.0
    exit_code: int = 0
    output: str = ""

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


@dataclass
class Keys:
    member: str
    admin: str
    keys_admin: str  # the only key of an organization of its own, for /v1/keys


def config_toml() -> str:
    """The schemathesis config: who calls what, and which operations may answer 422 to valid data."""
    blocks = ["[checks]\n"]
    for method, path in ADMIN_OPERATIONS:
        blocks.append(_operation(method, path, 'headers = { Authorization = "Bearer ${TUNEYARD_FUZZ_ADMIN_KEY}" }'))
    blocks.append('[[operations]]\ninclude-path-regex = "^/v1/keys"\n'
                  'headers = { Authorization = "Bearer ${TUNEYARD_FUZZ_KEYS_ADMIN_KEY}" }\n')
    accepted = '["2xx", "401", "403", "404", "409", "422", "429"]'
    for method, path in REFERENCING:
        blocks.append(_operation(method, path, f"checks.positive_data_acceptance.expected-statuses = {accepted}"))
    accepted_400 = '["2xx", "400", "401", "403", "404", "409", "429"]'
    for method, path in REFERENCING_400:
        blocks.append(_operation(method, path, f"checks.positive_data_acceptance.expected-statuses = {accepted_400}"))
    # A multipart part is bytes whatever JSON type the fuzzer meant: `file` mutated to an object
    # arrives as a file holding '{}', a good upload, so a 201 there is no failure. (An operation's
    # `enabled = false` is not read for this check in 4.32.5; its expected statuses are.) purpose's
    # refusals are tested in tests/integration/test_api_openapi.py.
    rejected = '["2xx", "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]'
    blocks.append(_operation("POST", "/v1/files", f"checks.negative_data_rejection.expected-statuses = {rejected}"))
    # A batch of trajectories bounded only by its texts' lengths can pass the body's 1 MiB: refused as
    # too large (413) before the schema's bounds are looked at, which is a refusal all the same.
    too_large = '["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]'
    for path in ("/v1/trajectories", "/api/training/trajectories"):
        blocks.append(_operation("POST", path, f"checks.negative_data_rejection.expected-statuses = {too_large}"))
    return "\n".join(blocks)


def _operation(method: str, path: str, setting: str) -> str:
    # By name ("POST /v1/jobs"): two include filters in one block would match either.
    return f'[[operations]]\ninclude-name = "{method} {path}"\n{setting}\n'


def start_serve(data_dir: Path, port: int, database_url: str | None) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {**os.environ, **SETTINGS, "PYTHONPATH": str(REPO), "TUNEYARD_DATA_DIR": str(data_dir)}
    if database_url:
        env["TUNEYARD_DATABASE_URL"] = database_url
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "serve.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tuneyard.cli.main", "serve", "--port", str(port),
                                 "--workers", "0"], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((data_dir / "serve.log").read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, env
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.terminate()
    raise TimeoutError("tuneyard serve did not answer in 60 s")


def make_keys(url: str, data_dir: Path, env: dict[str, str]) -> Keys:
    admin = find_api_key(data_dir)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30) as http:
        member = http.post("/v1/keys", json={"name": "fuzz-member"}).raise_for_status().json()["key"]
        seeded = http.post("/v1/files", headers={"Authorization": f"Bearer {member}"},
                           files={"file": ("chats.jsonl", SEED_ROWS)}).raise_for_status().json()
        http.post("/v1/datasets", headers={"Authorization": f"Bearer {member}"},
                  json={"name": "my-chats", "file_ids": [seeded["id"]]}).raise_for_status()
    cli = [sys.executable, "-m", "tuneyard.cli.main", "--json"]
    subprocess.run([*cli, "orgs", "create", "fuzz-keys"], env=env, check=True, capture_output=True)
    made = subprocess.run([*cli, "keys", "create", "fuzz-keys-admin", "--org", "fuzz-keys", "--admin"], env=env,
                          check=True, capture_output=True, text=True)
    return Keys(member=member, admin=admin, keys_admin=json.loads(made.stdout)["key"])


def fuzz(url: str, keys: Keys, work: Path, max_examples: int, seed: int, workers: int) -> FuzzResult:
    config = work / "schemathesis.toml"
    config.write_text(config_toml())
    har = work / "requests.har"
    report = work / "report.json"
    command = [str(SCHEMATHESIS), "--config-file", str(config), "run", f"{url}/openapi.json", "--checks", "all",
               "--seed", str(seed), "--max-examples", str(max_examples), "--workers", str(workers),
               "--header", f"Authorization: Bearer {keys.member}", "--request-timeout", "30", "--no-color",
               "--report", "har,json", "--report-har-path", str(har), "--report-json-path", str(report)]
    env = {**os.environ, "TUNEYARD_FUZZ_ADMIN_KEY": keys.admin, "TUNEYARD_FUZZ_KEYS_ADMIN_KEY": keys.keys_admin}
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
    result = FuzzResult(seconds=time.monotonic() - started, exit_code=done.returncode,
                        output=done.stdout + done.stderr)
    if har.exists():
        entries = json.loads(har.read_text())["log"]["entries"]
        result.requests = len(entries)
        result.statuses.update(int(e["response"]["status"]) for e in entries)
    if report.exists():
        summary = json.loads(report.read_text())
        result.test_cases = summary["test_cases"]["generated"]
        result.failures = [f"{f['code']} {f['title']} × {f['count']}" for f in summary.get("failures", [])]
        result.errors = summary["test_cases"]["errored"] + summary["operations"]["errored"]
    return result


def print_result(result: FuzzResult, seed: int, max_examples: int) -> None:
    print(f"schemathesis --checks all, seed {seed}, max examples {max_examples}: {result.requests} requests, "
          f"{result.test_cases} test cases in {result.seconds:.0f} s (exit {result.exit_code})")
    print("statuses: " + ", ".join(f"{status} × {n}" for status, n in sorted(result.statuses.items())))
    print(f"5xx: {result.server_errors}; failures: {len(result.failures)}; errors: {result.errors}")
    for failure in result.failures:
        print(f"  {failure}")


def failure_details(output: str) -> str:
    """Schemathesis's own account of each failure, with a curl line to reproduce it."""
    found = [at for at in (output.find("=== ERRORS ==="), output.find("=== FAILURES ===")) if at >= 0]
    if not found:
        return output[-4000:]
    start = min(found)
    end = output.find("=== WARNINGS ===", start)
    return output[output.rfind("\n", 0, start) + 1:end if end > 0 else None][:20000]


def main(argv: list[str] | None = None) -> FuzzResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=17)
    # One: with two, hypothesis's lambda descriptions race in CPython 3.11.7's ast.parse ("AST constructor
    # recursion depth mismatch", fixed in 3.11.8), which once ended a run's coverage phase.
    parser.add_argument("--workers", type=int, default=1, help="schemathesis's concurrent workers")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the data folder")
    parser.add_argument("--keep", type=Path, default=None, help="keep the data folder and reports here")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="tuneyard-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc, env = start_serve(work / "data", port, args.database_url)
    try:
        url = f"http://127.0.0.1:{port}"
        result = fuzz(url, make_keys(url, work / "data", env), work, args.max_examples, args.seed, args.workers)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print_result(result, args.seed, args.max_examples)
    if result.failures or result.exit_code:
        print(failure_details(result.output))
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(1 if outcome.failures or outcome.errors or outcome.server_errors or outcome.exit_code else 0)
