"""Run folders on an S3-compatible server (moto's, in a process of its own): the commit rule holds
there as on disk, a folder whose upload never reached its manifest is never trusted, a committed one
comes back bit for bit, old checkpoints are pruned, and bad settings fail at start in the user's words."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("pyarrow.fs", reason="run storage on S3 needs pyarrow (tuneyard's s3 extra)")
pytest.importorskip("moto.server", reason="the S3 stand-in is moto's server (moto[server])")

from tests.support.runs import REPO
from tests.support.s3_standin import S3Standin, s3_server
from tests.support.service import free_port
from tuneyard.errors import RunStorageError, SettingsError
from tuneyard.settings import Settings
from tuneyard.training import artifacts, contract
from tuneyard.training.run_storage import ObjectStore, RemoteRun, RunStorage, open_store
from tuneyard.worker.loop import Worker


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Standin]:
    with s3_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def bucket(s3: S3Standin) -> str:
    return s3.create_bucket(f"runs-{uuid.uuid4().hex[:12]}")


def storage(s3: S3Standin, bucket: str) -> RunStorage:
    return RunStorage.open(f"{bucket}/prefix", s3.endpoint)


def sealed(run_dir: Path, step: int, size: int = 1000) -> Path:
    """A sealed checkpoint folder, as checkpoint.save leaves one: random bytes, one file nested."""
    target = run_dir / contract.CHECKPOINTS_DIR / contract.checkpoint_dir_name(step)
    with artifacts.atomic_folder(target, {"kind": "checkpoint", "step": step}) as tmp:
        (tmp / "model").mkdir()
        (tmp / "model" / "adapter_model.safetensors").write_bytes(os.urandom(size))
        (tmp / "optimizer.pt").write_bytes(os.urandom(size // 3 + 1))
        (tmp / "trainer_state.json").write_text(f'{{"step": {step}}}', encoding="utf-8")
    return target


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class DiesBeforeManifest:
    """The real store, whose process "dies" (raises) when it comes to upload a manifest: what a runner
    SIGKILLed mid-upload leaves behind is exactly the files uploaded before it."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    def put(self, key: str, source: Path) -> None:
        if key.endswith("/" + contract.MANIFEST_FILE):
            raise RunStorageError("killed before the manifest")
        self.store.put(key, source)


def test_a_committed_checkpoint_round_trips_bitwise(s3: S3Standin, bucket: str, tmp_path: Path) -> None:
    runs = storage(s3, bucket)
    # 9 MiB: more than one of the backend's copy blocks.
    folder = sealed(tmp_path / "a", 4, size=9 * 1024 * 1024 + 7)
    runs.run("job-1").commit_folder(tmp_path / "a", folder)
    remote = runs.run("job-1")
    assert isinstance(remote, RemoteRun) and remote.committed_checkpoints() == [4]

    elsewhere = tmp_path / "b"
    remote.restore(elsewhere, None)
    fetched = elsewhere / "checkpoints" / "step-000004"
    assert files_of(fetched) == files_of(folder)
    assert artifacts.verify_folder(fetched, hashing=True)
    assert not [p for p in (elsewhere / "checkpoints").iterdir() if p.name.startswith(".")]


def test_an_upload_stopped_before_its_manifest_is_never_trusted(s3: S3Standin, bucket: str, tmp_path: Path) -> None:
    runs = storage(s3, bucket)
    remote = runs.run("job-2")
    assert isinstance(remote, RemoteRun)
    remote.commit_folder(tmp_path, sealed(tmp_path, 2))
    dying = RemoteRun(DiesBeforeManifest(remote.store))  # type: ignore[arg-type]
    with pytest.raises(RunStorageError):
        dying.commit_folder(tmp_path, sealed(tmp_path, 4))
    assert any(key.startswith("step-000004/") for key in remote.store.sizes("checkpoints"))  # its files are there
    assert remote.committed_checkpoints() == [2]
    with pytest.raises(RunStorageError, match="not a committed folder"):
        remote.fetch_folder("checkpoints/step-000004", tmp_path / "elsewhere")
    remote.restore(tmp_path / "b", "checkpoints/step-000004")  # the user's choice, not committed: the newest that is
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["step-000002"]

    # Committing again uncommits first: interrupted, the folder is trusted neither as it was nor half replaced.
    with pytest.raises(RunStorageError):
        dying.commit_folder(tmp_path, sealed(tmp_path, 2))
    assert remote.committed_checkpoints() == []
    remote.commit_folder(tmp_path, tmp_path / "checkpoints" / "step-000002")
    assert remote.committed_checkpoints() == [2]


def test_a_file_short_of_its_manifest_is_not_trusted(s3: S3Standin, bucket: str, tmp_path: Path) -> None:
    remote = storage(s3, bucket).run("job-3")
    assert isinstance(remote, RemoteRun)
    folder = sealed(tmp_path, 6)
    remote.commit_folder(tmp_path, folder)
    short = tmp_path / "short"
    short.write_bytes((folder / "optimizer.pt").read_bytes()[:-1])
    remote.store.put("checkpoints/step-000006/optimizer.pt", short)
    assert remote.committed_checkpoints() == []
    assert not remote.committed("checkpoints/step-000006")


def test_old_checkpoints_and_abandoned_uploads_are_pruned(s3: S3Standin, bucket: str, tmp_path: Path) -> None:
    remote = storage(s3, bucket).run("job-4")
    assert isinstance(remote, RemoteRun)
    for step in (2, 4):
        remote.commit_folder(tmp_path, sealed(tmp_path, step))
    with pytest.raises(RunStorageError):
        RemoteRun(DiesBeforeManifest(remote.store)).commit_folder(tmp_path, sealed(tmp_path, 3))  # type: ignore[arg-type]
    remote.commit_folder(tmp_path, sealed(tmp_path, 6))
    assert remote.prune(keep=2) == [2]
    assert remote.committed_checkpoints() == [4, 6]
    assert sorted({key.split("/")[0] for key in remote.store.sizes("checkpoints")}) == ["step-000004", "step-000006"]
    assert remote.prune(keep=0) == [4]  # the newest is never deleted
    assert remote.committed_checkpoints() == [6]


def test_the_worker_fetches_what_its_disk_lacks(s3: S3Standin, bucket: str, tmp_path: Path) -> None:
    remote = storage(s3, bucket).run("job-5")
    assert isinstance(remote, RemoteRun)
    first = tmp_path / "first"
    sealed(first, 2)
    (first / "spec.json").write_text('{"type": "finetune"}', encoding="utf-8")
    (first / "telemetry.jsonl").write_text('{"kind": "log"}\n' * 3, encoding="utf-8")
    remote.push_files(first)
    remote.commit_folder(first, first / "checkpoints" / "step-000002")
    second = tmp_path / "second"
    second.mkdir()
    (second / "telemetry.jsonl").write_text('{"kind": "log"}\n', encoding="utf-8")  # an older attempt's, shorter
    remote.restore(second, None)
    assert (second / "spec.json").read_bytes() == (first / "spec.json").read_bytes()
    assert (second / "telemetry.jsonl").read_bytes() == (first / "telemetry.jsonl").read_bytes()
    assert files_of(second / "checkpoints") == files_of(first / "checkpoints")


def test_the_worker_fetches_the_checkpoint_the_user_chose(s3: S3Standin, bucket: str, tmp_path: Path) -> None:
    remote = storage(s3, bucket).run("job-6")
    for step in (2, 4):
        remote.commit_folder(tmp_path, sealed(tmp_path, step))
    elsewhere = tmp_path / "elsewhere"
    remote.restore(elsewhere, "checkpoints/step-000002")
    assert sorted(p.name for p in (elsewhere / "checkpoints").iterdir()) == ["step-000002"]
    chosen = Path("checkpoints", "step-000002")
    assert files_of(elsewhere / chosen) == files_of(tmp_path / chosen)


# ---- bad settings: every one fails when the worker starts, saying what to change -------------------


@pytest.mark.parametrize("url", ["bucket/prefix", "s3://", "s3:///prefix", "s3://bucket?versionId=1"])
def test_a_url_that_is_not_one_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match=r"TUNEYARD_RUN_STORAGE: .* is not a storage URL"):
        Settings(run_storage=url)


def test_an_endpoint_that_is_not_a_url_is_refused() -> None:
    expected = "TUNEYARD_RUN_STORAGE_ENDPOINT: '127.0.0.1:9000' is not an http"
    with pytest.raises(SettingsError, match=re.escape(expected)):
        Settings(run_storage="s3://bucket", run_storage_endpoint="127.0.0.1:9000")


def test_the_endpoint_comes_from_the_aws_variable_when_tuneyard_names_none() -> None:
    env = {"TUNEYARD_RUN_STORAGE": "s3://b", "AWS_ENDPOINT_URL": "http://minio:9000"}
    assert Settings.from_env(env).run_storage_endpoint == "http://minio:9000"
    env["TUNEYARD_RUN_STORAGE_ENDPOINT"] = "https://s3.internal"
    assert Settings.from_env(env).run_storage_endpoint == "https://s3.internal"


def test_a_scheme_without_a_backend_is_refused() -> None:
    with pytest.raises(SettingsError, match="tuneyard keeps run folders on s3://, not gs://"):
        RunStorage.open("gs://bucket/runs", None)


def test_a_missing_bucket_is_refused_at_worker_start(s3: S3Standin, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, run_storage="s3://no-such-bucket/runs", run_storage_endpoint=s3.endpoint)
    with pytest.raises(SettingsError, match=f"there is no bucket 'no-such-bucket' at {s3.endpoint}; create it"):
        Worker(None, settings, {})  # type: ignore[arg-type]  # refused before it touches its database


def test_an_unreachable_endpoint_is_refused_within_seconds() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(SettingsError, match=f"cannot reach the S3 endpoint at {endpoint}"):
        RunStorage.open("s3://bucket/runs", endpoint)
    assert time.monotonic() - started < 30


def test_without_pyarrow_the_error_says_which_extra_to_install() -> None:
    # A fresh interpreter where importing pyarrow fails as it does where it is not installed.
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from tuneyard.training.run_storage import open_store\n"
            "open_store('s3://bucket', None)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode != 0
    assert "TUNEYARD_RUN_STORAGE: 's3://bucket' needs the pyarrow package, which is not installed: " \
           "pip install 'tuneyard[s3]'" in done.stderr, done.stderr


def test_the_default_path_imports_no_pyarrow() -> None:
    code = ("import sys\nfrom tuneyard.worker.loop import Worker\n"
            "from tuneyard.training.run_storage import RunStorage\n"
            "RunStorage.open(None, None)\nassert 'pyarrow' not in sys.modules, 'pyarrow imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr


def test_store_urls_name_the_job(s3: S3Standin, bucket: str) -> None:
    runs = storage(s3, bucket)
    assert runs.url_of("job-9") == f"{bucket}/prefix/job-9"
    assert RunStorage().url_of("job-9") is None
    assert open_store(f"{bucket}/prefix/", s3.endpoint).url == f"{bucket}/prefix"


def test_tuneyard_worker_refuses_to_start_on_a_missing_bucket(s3: S3Standin, tmp_path: Path) -> None:
    env = {**os.environ, **s3.env("s3://no-such-bucket/runs"), "PYTHONPATH": str(REPO),
           "TUNEYARD_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "tuneyard.cli.main", "worker"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode != 0
    assert "TUNEYARD_RUN_STORAGE: s3://no-such-bucket/runs: there is no bucket 'no-such-bucket'" in done.stderr, \
        done.stderr
