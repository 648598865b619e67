"""A dataset named by a path on the server (document 002's `dataset_path`), kept inside one folder.

The path is a file under `Settings.resolved_dataset_root` (`dataset_root`, default DATA_DIR/datasets):
a relative path resolves there, and anything that resolves outside it (`..`, an absolute path
elsewhere, a symlink out) is refused naming the field, before any byte is read. The file is copied
in as an upload (`files.upload_file`: the upload limit and the organization's quotas hold) and
becomes a dataset validated like any other (`datasets.create_dataset`, named `path-<file id>`), so the job trains on a
copy that later edits to the source cannot change.
"""

from __future__ import annotations

from pathlib import Path

from tuneyard.services import datasets, files
from tuneyard.services.errors import InvalidRequest
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.quotas import Quotas
from tuneyard.store.tables import Dataset

FIELD = "dataset_path"


def resolve(settings: Settings, raw: str, field: str = FIELD) -> Path:
    """The file `raw` names under the dataset root; InvalidRequest naming `field` otherwise."""
    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest([{"field": field, "message": message}])

    if not raw.strip() or "\x00" in raw:
        raise refuse("not a path")
    root = settings.resolved_dataset_root.resolve()
    candidate = Path(raw).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise refuse(f"outside the dataset folder: give a file under {root} (relative paths resolve there)")
    if not resolved.is_file():
        raise refuse("no such file in the dataset folder")
    return resolved


def dataset_for_path(db: Database, settings: Settings, org_id: str, raw: str, field: str = FIELD) -> Dataset:
    """The file at `raw` copied in and made a dataset (validated now; a job names it only once ready)."""
    path = resolve(settings, raw, field)
    with path.open("rb") as stream:
        file = files.upload_file(db, settings, org_id, path.name, stream)
    # Validated inline whatever its size: the job that names it is submitted right after.
    request = datasets.DatasetCreate(f"path-{file.id}", [file.id], "auto")
    return datasets.create_dataset(db, org_id, request, inline_bytes=file.bytes, quotas=Quotas.of(settings))
