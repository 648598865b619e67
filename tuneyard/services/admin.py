"""The local admin key, and how the `keys` command finds the organization it works in.

`tuneyard serve` on an empty database makes the first organization and its admin key, kept in
DATA_DIR/admin.key (mode 0600), so nobody types one on a laptop. That is the only organization
ever made implicitly: every other comes from `tuneyard orgs create`, and `tuneyard keys` only
ever works in an organization that exists.
"""

from __future__ import annotations

import os
from pathlib import Path

from tuneyard.errors import UserError
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database

ADMIN_KEY_FILE = "admin.key"
LOCAL_ORG = "local"


class NoOrganization(UserError):
    """No organization given: pass --org (see `tuneyard orgs list`), or run `tuneyard serve` once on
    this data folder to make the first organization and its admin key."""


def ensure_admin_key(db: Database, settings: Settings) -> Path | None:
    """DATA_DIR/admin.key when it holds a live admin key; else, on a database with no organization,
    the first organization and its admin key written there; else None (the database has
    organizations already, and serve never makes another one: see `tuneyard keys create --admin`).

    The file is created with mode 0600 before the key is written into it, so the key is never
    readable by others, not even for an instant.
    """
    path = settings.data_dir / ADMIN_KEY_FILE
    if _admin_in(db, path) is not None:
        return path
    org = tenancy.create_first_org(db, LOCAL_ORG)
    if org is None:
        return None
    _key, plaintext = tenancy.create_api_key(db, org.id, "local admin", is_admin=True)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(plaintext + "\n")
    os.replace(tmp, path)
    return path


def _admin_in(db: Database, path: Path) -> tenancy.Principal | None:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    principal = tenancy.authenticate(db, key) if key else None
    return principal if principal is not None and principal.is_admin else None


def org_for_keys(db: Database, settings: Settings, org: str | None, api_key: str | None) -> str:
    """The organization `tuneyard keys` works in: --org (an id or a unique name), else that of the
    given API key, else that of DATA_DIR/admin.key. Never a new one: NoOrganization instead."""
    if org is not None:
        return tenancy.find_org(db, org).id
    if api_key is None:
        path = settings.data_dir / ADMIN_KEY_FILE
        if not path.exists():
            raise NoOrganization(f"no organization given and no {path}: pass --org ORG (see `tuneyard orgs "
                                 f"list`), or run `tuneyard serve` once to make the first organization")
        api_key = path.read_text(encoding="utf-8").strip()
    principal = tenancy.authenticate(db, api_key) if api_key else None
    if principal is None:
        raise NoOrganization("the API key (--api-key, TUNEYARD_API_KEY or admin.key) is unknown or revoked in "
                             "this database: pass --org ORG (see `tuneyard orgs list`)")
    return principal.org_id
