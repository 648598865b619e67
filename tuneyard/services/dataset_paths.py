"""A dataset named by a path on the server or a hub dataset id (document 002's `dataset_path`).

The path is a file under `Settings.resolved_dataset_root` (`dataset_root`, default DATA_DIR/datasets):
a relative path resolves there, and anything that resolves outside it (`..`, an absolute path
elsewhere, a symlink out) is refused naming the field, before any byte is read or any hub is asked.
The file is copied in as an upload (`files.upload_file`: the upload limit and the organization's
quotas hold) and becomes a dataset validated like any other (`datasets.create_dataset`, named
`path-<file id>`), so the job trains on a copy that later edits to the source cannot change.

What is not a file there but has a hub dataset id's form (`owner/name[:split]`, `owner/name:config:split`;
services/hub_datasets.py) is fetched from the hub at `Settings.hub_endpoint` with the request's token,
into a temporary folder first, and its files then become a dataset the same way (`hub-<file id>`).
Nothing is stored unless every file arrived: a refusal names the field and says what was tried.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tuneyard.services import datasets, files
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.hub_datasets import HubAccess, HubDatasetError, HubDatasetRef, fetch, parse_ref
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.quotas import Quotas
from tuneyard.store.tables import Dataset, File

FIELD = "dataset_path"
HUB_FORMS = "owner/name, owner/name:split or owner/name:config:split"


def locate(settings: Settings, raw: str, field: str = FIELD) -> Path | HubDatasetRef:
    """The file `raw` names under the dataset root, or the hub dataset it names when no such file is
    there; InvalidRequest naming `field` otherwise. Asks no hub: nothing leaves this machine."""
    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest([{"field": field, "message": message}])

    if not raw.strip() or "\x00" in raw:
        raise refuse("not a path")
    root = settings.resolved_dataset_root.resolve()
    candidate = Path(raw).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise refuse(f"outside the dataset folder: give a file under {root} (relative paths resolve there)")
    if resolved.is_file():
        return resolved
    ref = parse_ref(raw)
    if ref is None:
        raise refuse(f"no file {raw!r} in the dataset folder {root}, and not a hub dataset id ({HUB_FORMS})")
    return ref


def dataset_for_path(db: Database, settings: Settings, org_id: str, raw: str, field: str = FIELD,
                     hub_token: str | None = None) -> Dataset:
    """The file at `raw`, or the hub dataset it names (read with `hub_token`), copied in and made a
    dataset (validated now; a job names it only once ready)."""
    found = locate(settings, raw, field)
    if isinstance(found, HubDatasetRef):
        return _from_hub(db, settings, org_id, raw, found, field, hub_token)
    with found.open("rb") as stream:
        file = files.upload_file(db, settings, org_id, found.name, stream)
    return _dataset(db, settings, org_id, f"path-{file.id}", [file])


def _from_hub(db: Database, settings: Settings, org_id: str, raw: str, ref: HubDatasetRef, field: str,
              token: str | None) -> Dataset:
    access = HubAccess(settings.hub_endpoint, token, settings.hub_timeout_seconds, settings.max_upload_bytes)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # Under DATA_DIR rather than /tmp: the operator sized that disk for uploads, a tmpfs may not be.
    with tempfile.TemporaryDirectory(prefix="hub-", dir=settings.data_dir) as folder:
        try:
            fetched = fetch(ref, access, Path(folder))
        except HubDatasetError as exc:
            root = settings.resolved_dataset_root.resolve()
            message = f"no file {raw!r} in the dataset folder {root}, and as a hub dataset: {exc}"
            raise InvalidRequest([{"field": field, "message": message}]) from None
        uploaded: list[File] = []
        try:
            for name, path in fetched.files:
                with path.open("rb") as stream:
                    uploaded.append(files.upload_file(db, settings, org_id, Path(name).name, stream))
            return _dataset(db, settings, org_id, f"hub-{uploaded[0].id}", uploaded)
        except InvalidRequest as exc:  # a repo file name no upload may have: the user named the repo
            _remove(db, org_id, uploaded)
            raise InvalidRequest([{**p, "field": field} for p in exc.problems]) from None
        except BaseException:
            _remove(db, org_id, uploaded)
            raise


def _remove(db: Database, org_id: str, uploaded: list[File]) -> None:
    for file in uploaded:  # all of the split or none of it
        files.delete_file(db, org_id, file.id)


def _dataset(db: Database, settings: Settings, org_id: str, name: str, made: list[File]) -> Dataset:
    # Validated inline whatever its size: the job that names it is submitted right after.
    request = datasets.DatasetCreate(name, [f.id for f in made], "auto")
    return datasets.create_dataset(db, org_id, request, inline_bytes=sum(f.bytes for f in made),
                                   quotas=Quotas.of(settings))
