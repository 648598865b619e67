"""Uploaded files: streamed to DATA_DIR/files/ under a name of our making, hashed and size-capped."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import BinaryIO, Literal, get_args

from tuneyard.services import lookup
from tuneyard.services.errors import InvalidRequest, PayloadTooLarge
from tuneyard.settings import Settings
from tuneyard.spec.text import NAME_MAX, text_problem
from tuneyard.store import datasets as store
from tuneyard.store.engine import Database
from tuneyard.store.ids import new_id
from tuneyard.store.quotas import Quotas, file_bytes_left, storage_refusal
from tuneyard.store.tables import File

CHUNK = 1024 * 1024
MAX_FILENAME = NAME_MAX
# The stored name keeps the extension because the data reader picks CSV / Parquet / JSON by it.
_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
Purpose = Literal["fine-tune", "eval", "model"]
PURPOSES: tuple[str, ...] = get_args(Purpose)


def files_dir(settings: Settings) -> Path:
    return settings.data_dir / "files"


def check_filename(filename: str | None) -> str:
    """The user's file name as given, or InvalidRequest when it is empty or tries to be a path."""
    name = filename or ""
    if not name.strip():
        problem: str | None = "a file name is required"
    elif "/" in name or "\\" in name or name in (".", ".."):
        problem = "a file name may not contain a path (no '/', '\\' or '..')"
    else:
        problem = text_problem(name, max_length=MAX_FILENAME)
    if problem:
        raise InvalidRequest([{"field": "file.filename", "message": problem}])
    return name


def upload_file(
    db: Database, settings: Settings, org_id: str, filename: str | None, stream: BinaryIO,
    purpose: str = "fine-tune",
) -> File:
    """Copy `stream` to DATA_DIR/files/<file_id><ext>, refusing it past Settings.max_upload_bytes or
    past the organization's quotas (files, file_bytes)."""
    name = check_filename(filename)
    if purpose not in PURPOSES:
        raise InvalidRequest([{"field": "purpose", "message": f"expected one of {', '.join(PURPOSES)}"}])
    file_id = new_id("file")
    suffix = Path(name).suffix.lower()
    target = files_dir(settings) / (file_id + (suffix if _SAFE_SUFFIX.match(suffix) else ""))
    target.parent.mkdir(parents=True, exist_ok=True)
    quotas = Quotas.of(settings)
    limit = settings.max_upload_bytes
    refusal: Exception = PayloadTooLarge(limit, f"the file is larger than the upload limit of {limit} bytes")
    room = file_bytes_left(db, org_id, quotas)
    if room is not None and room < limit:  # stop copying once over the quota, not at the end
        limit, refusal = room, storage_refusal(quotas.file_bytes, quotas.file_bytes - room)
    try:
        size, digest = _copy_capped(stream, target, limit, refusal)
        new = store.NewFile(org_id, name, size, digest, str(target), purpose)
        return store.create_file(db, new, file_id=file_id, quotas=quotas)
    except BaseException:
        target.unlink(missing_ok=True)  # nothing is kept from a refused or failed upload
        raise


def _copy_capped(stream: BinaryIO, target: Path, limit: int, refusal: Exception) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    # O_EXCL: a fresh random id never exists, so an existing file means something is wrong.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise refusal
            digest.update(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


def get_file(db: Database, org_id: str, file_id: str) -> File:
    """The organization's file by its native id or UUID."""
    return store.get_file(db, org_id, lookup.native_id(db, org_id, "file", file_id))


def list_files(db: Database, org_id: str, purpose: str | None = None) -> list[File]:
    return store.list_files(db, org_id, purpose)


def file_content(db: Database, org_id: str, file_id: str) -> tuple[File, Path]:
    """The file's row and where its bytes are, for a download of exactly what was uploaded."""
    row = get_file(db, org_id, file_id)
    return row, Path(row.path)


def delete_file(db: Database, org_id: str, file_id: str) -> File:
    """Forget the file and remove its bytes; Conflict (naming them) while a dataset lists it or a job
    that may still run reads it, because those read the upload itself and would lose their data."""
    row = store.delete_unused_file(db, org_id, lookup.native_id(db, org_id, "file", file_id))
    # The row goes first: a blob left by a crash here is unreachable garbage, never a row without bytes.
    Path(row.path).unlink(missing_ok=True)
    return row
