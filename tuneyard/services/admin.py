"""The local admin key: made on first start, kept in DATA_DIR/admin.key, so nobody types one."""

from __future__ import annotations

import os
from pathlib import Path

from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database

ADMIN_KEY_FILE = "admin.key"
LOCAL_ORG = "local"


def ensure_admin_key(db: Database, settings: Settings) -> Path:
    """Create an organization and an admin key unless DATA_DIR/admin.key already holds a valid one.

    The file is created with mode 0600 before the key is written into it, so the key is never
    readable by others, not even for an instant.
    """
    path = settings.data_dir / ADMIN_KEY_FILE
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if key and tenancy.authenticate(db, key) is not None:
            return path
    org = tenancy.create_org(db, LOCAL_ORG)
    _key, plaintext = tenancy.create_api_key(db, org.id, "local admin", is_admin=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plaintext + "\n")
    os.replace(tmp, path)
    return path
