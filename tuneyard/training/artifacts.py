"""Complete-or-absent artifact folders: written aside, fsynced, renamed; the manifest last.

A folder under checkpoints/ or final/ exists under its real name only once every file in
it is on disk, and its manifest.json (written last, inside the temporary folder, before
the rename) lists each file with its size and sha256. A crash at any moment leaves either
the previous state or the complete new folder, plus at most a `.tmp-*` folder to clean.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tuneyard.training.contract import MANIFEST_FILE

TMP_PREFIX = ".tmp-"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@contextmanager
def atomic_folder(target: Path, manifest: dict[str, Any]) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it becomes `target`, manifest last.

    An existing `target` is replaced (moved aside first, removed after the rename).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{TMP_PREFIX}{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        _seal(tmp, manifest)
        _replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _seal(folder: Path, manifest: dict[str, Any]) -> None:
    files = {}
    for path in _files_under(folder):
        _fsync_path(path)
        files[str(path.relative_to(folder))] = {"bytes": path.stat().st_size, "sha256": sha256_of(path)}
    for sub in sorted({p.parent for p in _files_under(folder)}):
        _fsync_path(sub)
    body = {**manifest, "files": files, "sealed_at": time.time()}
    manifest_path = folder / MANIFEST_FILE
    with open(manifest_path, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=2, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_path(folder)


def _replace(tmp: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f"{TMP_PREFIX}old-{target.name}-{os.getpid()}"
        os.replace(target, old)
    os.replace(tmp, target)
    _fsync_path(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace `path` with `data` as JSON in one rename: a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None if the folder is incomplete or the manifest unreadable."""
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "files" in data else None


def verify_folder(folder: Path, hashing: bool = True) -> bool:
    """True when every file the manifest lists is there with its size (and hash)."""
    manifest = read_manifest(folder)
    if manifest is None:
        return False
    for name, meta in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != meta["bytes"]:
            return False
        if hashing and sha256_of(path) != meta["sha256"]:
            return False
    return True


def remove_stale_temporaries(parent: Path) -> list[Path]:
    """Delete `.tmp-*` folders left by crashed writers; returns what was removed.

    Safe because one run folder has one runner at a time (the worker's lease sees to it).
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for child in parent.iterdir():
        if child.name.startswith(TMP_PREFIX) and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
    return removed
