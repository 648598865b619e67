"""Downloading an export: the GGUF file itself, or the export folder as one archive.

Only a completed export is offered (its manifest, written last, is what says so), and only from
inside the exports folder, whatever path its row holds. A GGUF is sent as the file whose size and
sha256 the manifest recorded, so the client checks what it got against `X-Checksum-SHA256`; a
folder (safetensors) is archived as it is sent, and its manifest.json inside lists every file's sha256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from tuneyard.services.exports import exports_dir, get_export
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.training.contract import MANIFEST_FILE


@dataclass(frozen=True)
class ExportDownload:
    path: Path
    """The GGUF file, or the export folder to archive."""
    name: str
    sha256: str | None
    """The file's sha256 as the manifest recorded it (None for an archive, made as it is sent)."""
    manifest_sha256: str | None
    """sha256 of the manifest.json that lists every file's, for an archive."""

    @property
    def is_file(self) -> bool:
        return self.sha256 is not None


def export_download(db: Database, settings: Settings, org_id: str, model_id: str, export_id: str) -> ExportDownload:
    """What to send for the export; NotFound for another organization's, Conflict until it is completed
    or when its files no longer match their manifest."""
    row = get_export(db, org_id, model_id, export_id)
    if row.status != "completed" or not row.manifest:
        raise Conflict(f"export {export_id} is {row.status}: only a completed export can be downloaded",
                       status=row.status)
    folder = Path(row.path).resolve()
    if not folder.is_relative_to(exports_dir(settings).resolve()) or not folder.is_dir():
        raise NotFound("export files", export_id)
    gguf = row.manifest.get("gguf_file")
    if not isinstance(gguf, str):
        manifest = (folder / MANIFEST_FILE)
        digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
        return ExportDownload(folder, f"{model_id}-{export_id}", None, digest)
    recorded = (row.manifest.get("files") or {}).get(gguf) or {}
    file = folder / gguf
    if Path(gguf).name != gguf or not file.is_file() or file.stat().st_size != recorded.get("bytes") \
            or not isinstance(recorded.get("sha256"), str):
        raise Conflict(f"export {export_id}'s file {gguf} is not the one its manifest recorded; export again",
                       file=gguf)
    return ExportDownload(file, gguf, recorded["sha256"], None)
