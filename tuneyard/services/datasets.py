"""Datasets: named sets of uploaded files, validated once into `ready` (with stats) or `invalid`.

Small datasets are validated before the create call returns, so a client usually sees the verdict
at once; larger ones in a background thread, the dataset staying `validating` meanwhile.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneyard.services.errors import InvalidRequest
from tuneyard.store import datasets as store
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.quotas import NO_QUOTAS, Quotas
from tuneyard.store.tables import Dataset
from tuneyard.training.data.formats import Invalid
from tuneyard.training.data.reading import read_rows
from tuneyard.training.data.records import FORMATS
from tuneyard.training.data.validation import validate_file

log = logging.getLogger(__name__)

INLINE_VALIDATION_BYTES = 16 * 1024 * 1024
"""Datasets up to this size are validated inside the create request."""
MAX_PREVIEW = 100


@dataclass(frozen=True)
class DatasetCreate:
    name: str
    file_ids: list[str]
    format: str = "auto"


def create_dataset(
    db: Database, org_id: str, request: DatasetCreate, *, inline_bytes: int = INLINE_VALIDATION_BYTES,
    quotas: Quotas = NO_QUOTAS,
) -> Dataset:
    """Record the dataset as `validating` and validate it (inline when small, else in a thread).

    Raises QuotaExceeded when the organization has its quota of datasets."""
    problems = []
    if request.format not in FORMATS:
        problems.append({"field": "format", "message": f"expected one of {', '.join(FORMATS)}"})
    if not request.file_ids:
        problems.append({"field": "file_ids", "message": "give at least one file id"})
    files = []
    for i, file_id in enumerate(request.file_ids):
        try:
            files.append(store.get_file(db, org_id, file_id))
        except NotFound:
            problems.append({"field": f"file_ids.{i}", "message": f"no file {file_id}"})
    if problems:
        raise InvalidRequest(problems)
    dataset = store.create_dataset(db, org_id, request.name, request.file_ids, request.format, quotas=quotas)
    paths = [Path(f.path) for f in files]
    if sum(f.bytes for f in files) <= inline_bytes:
        validate_dataset(db, dataset.id, paths, request.format)
        return store.get_dataset(db, org_id, dataset.id)
    thread = threading.Thread(
        target=validate_dataset, args=(db, dataset.id, paths, request.format), daemon=True,
        name=f"validate-{dataset.id}",
    )
    thread.start()
    return dataset


def validate_unfinished(db: Database) -> list[str]:
    """Validate again the datasets a process left `validating` when it died mid-validation.

    Run at startup. Another live API process may be validating one of them right now; the
    verdicts are the same, so the second write changes nothing. Returns the ids validated.
    """
    done = []
    for dataset, files in store.unfinished_datasets(db):
        if len(files) < len(dataset.file_ids):
            error = {"file_index": None, "line": 0, "message": "a file of this dataset was deleted before validation"}
            store.set_dataset_validated(db, dataset.id, status="invalid", errors=[error])
        else:
            validate_dataset(db, dataset.id, [Path(f.path) for f in files], dataset.format)
        log.info("dataset %s: validated again after an interrupted validation", dataset.id)
        done.append(dataset.id)
    return done


def validate_dataset(db: Database, dataset_id: str, paths: list[Path], format: str) -> None:
    """Validate every file and record `ready` with totals, or `invalid` with line-numbered errors."""
    try:
        reports = [validate_file(path, format) for path in paths]
    except Exception as exc:  # a bug in validation must not leave the dataset validating forever
        log.exception("dataset %s: validation crashed", dataset_id)
        error = {"file": None, "line": 0, "message": f"validation failed: {type(exc).__name__}: {exc}"}
        store.set_dataset_validated(db, dataset_id, status="invalid", errors=[error])
        return
    errors = [_public_error(e, paths) for r in reports for e in r["errors"]]
    status = "invalid" if errors else "ready"
    store.set_dataset_validated(
        db, dataset_id, status=status, errors=errors,
        examples=sum(r["examples"] for r in reports),
        tokens_est=sum(r["estimated_tokens"] for r in reports),
        bytes=sum(r["bytes"] for r in reports),
    )


def _public_error(error: dict[str, Any], paths: list[Path]) -> dict[str, Any]:
    # Users know their files by index in file_ids, not by where the server keeps them.
    where = error.get("file")
    index = next((i for i, p in enumerate(paths) if str(p) == where), None)
    return {"file_index": index, "line": error.get("line", 0), "message": error.get("message", "")}


def get_dataset(db: Database, org_id: str, dataset_id: str) -> Dataset:
    return store.get_dataset(db, org_id, dataset_id)


def list_datasets(db: Database, org_id: str) -> list[Dataset]:
    return store.list_datasets(db, org_id)


def delete_dataset(db: Database, org_id: str, dataset_id: str) -> None:
    """Forget the dataset; its files stay (other datasets may use them)."""
    store.delete_dataset(db, org_id, dataset_id)


def preview_dataset(db: Database, org_id: str, dataset_id: str, limit: int = 10) -> list[dict[str, Any]]:
    """The first `limit` rows as stored (JSON objects with their file index and line number)."""
    dataset = store.get_dataset(db, org_id, dataset_id)
    limit = max(1, min(limit, MAX_PREVIEW))
    rows: list[dict[str, Any]] = []
    for index, file_id in enumerate(dataset.file_ids):
        path = Path(store.get_file(db, org_id, file_id).path)
        for line, row in read_rows(path):
            if len(rows) >= limit:
                return rows
            if not isinstance(row, Invalid):
                rows.append({"file_index": index, "line": line, "example": row})
    return rows


def dataset_of_file(db: Database, org_id: str, file_id: str, format: str, *, quotas: Quotas = NO_QUOTAS) -> Dataset:
    """The dataset of one uploaded file read as `format`, made (and validated, whatever its size) the
    first time a job names the file; APIs that train on a file id (OpenAI's training_file) use it.

    Named `file-<file id>-<format>`: the same file and format always mean the same dataset, so a
    second job on the file reuses its verdict. NotFound when the file is not the organization's.
    """
    file = store.get_file(db, org_id, file_id)
    name = f"file-{file.id}-{format}"
    try:
        return store.get_dataset_by_name(db, org_id, name)
    except NotFound:
        pass
    request = DatasetCreate(name, [file.id], format)
    try:
        return create_dataset(db, org_id, request, inline_bytes=file.bytes, quotas=quotas)
    except Conflict:  # another request made it meanwhile
        return store.get_dataset_by_name(db, org_id, name)
