"""Services that guard paths and formats: file names, run-folder access, model roots, archives,
stream positions and the Prometheus text."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from tuneyard.services import runs
from tuneyard.services.base_models import allowed_model_path
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.files import check_filename
from tuneyard.services.stats import _histogram
from tuneyard.services.timeline import StreamCursor
from tuneyard.settings import Settings
from tuneyard.store.errors import NotFound


@pytest.mark.parametrize("name", ["../x.jsonl", "a/b.jsonl", "..\\x", "..", ".", "", "  ", "bad\x00.jsonl",
                                  "tab\there", "x" * 300])
def test_file_names_that_try_to_be_paths_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        check_filename(name)


@pytest.mark.parametrize("name", ["chats.jsonl", "my data (v2).csv", "..hidden.jsonl", "ünïcode.json"])
def test_ordinary_file_names_are_kept(name: str) -> None:
    assert check_filename(name) == name


def test_run_folder_access_stays_inside(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "job_1"
    (folder / "final").mkdir(parents=True)
    (folder / "final" / "w.bin").write_bytes(b"w")
    (tmp_path / "secret").write_text("s")
    (folder / "final" / "escape").symlink_to(tmp_path / "secret")
    (folder / ".tmp-step-000001").mkdir()
    (folder / ".tmp-step-000001" / "half.bin").write_bytes(b"h")
    assert runs.safe_child(folder, "final/w.bin") == (folder / "final" / "w.bin").resolve()
    for bad in ("../../secret", "final/../../../secret", "/etc/passwd", "final/escape", "final", "", "a\x00b"):
        with pytest.raises(NotFound):
            runs.safe_child(folder, bad)
    assert [a.path for a in runs.list_artifacts(folder)] == ["final/w.bin"]


def test_tar_gz_stream_holds_the_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub" / "b.bin").write_bytes(bytes(range(256)) * 2000)
    data = b"".join(runs.stream_tar_gz(tmp_path, "model"))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == ["model/a.txt", "model/sub/b.bin"]
        member = tar.extractfile("model/sub/b.bin")
        assert member is not None and member.read() == bytes(range(256)) * 2000


def test_tar_gz_stream_can_be_abandoned(tmp_path: Path) -> None:
    # Incompressible and many times a pipe's buffer: the writer is still at work after one chunk.
    (tmp_path / "big.bin").write_bytes(os.urandom(5_000_000))
    before = set(threading.enumerate())
    stream = runs.stream_tar_gz(tmp_path, "m")
    next(stream)
    (writer,) = set(threading.enumerate()) - before
    assert writer.is_alive()
    stream.close()  # the client went away: the writer thread must end, not hang
    writer.join(timeout=10)
    assert not writer.is_alive()


def test_models_register_only_under_a_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "m").mkdir(parents=True)
    (root / "m" / "config.json").write_text("{}")
    (root / "q.gguf").write_bytes(b"GGUF")
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (root / "link").symlink_to(outside)
    settings = Settings(data_dir=tmp_path, model_roots=(root,))
    assert allowed_model_path(settings, "m") == (root / "m").resolve()
    assert allowed_model_path(settings, str(root / "q.gguf")) == (root / "q.gguf").resolve()
    for bad in ("../outside", str(outside), "link", "m/../../outside", "missing", "", "q\x00"):
        with pytest.raises(InvalidRequest):
            allowed_model_path(settings, bad)
    with pytest.raises(InvalidRequest, match="no model roots"):
        allowed_model_path(Settings(data_dir=tmp_path), "m")


def test_stream_cursor_round_trips_and_refuses_garbage() -> None:
    cursor = StreamCursor(event=3, log=10, train=42, eval=40)
    assert StreamCursor.decode(cursor.encode()) == cursor
    assert StreamCursor.decode(None) == StreamCursor() == StreamCursor.decode("")
    for bad in ("1.2.3", "a.b.c.d", "1.2.3.4.5", "x"):
        with pytest.raises(InvalidRequest):
            StreamCursor.decode(bad)


def test_histogram_text() -> None:
    lines = _histogram("t_seconds", "help", {'status="x"': [0.05, 2.0, 7200.0]})
    assert 't_seconds_bucket{status="x",le="0.1"} 1' in lines
    assert 't_seconds_bucket{status="x",le="5"} 2' in lines
    assert 't_seconds_bucket{status="x",le="+Inf"} 3' in lines
    assert 't_seconds_count{status="x"} 3' in lines
