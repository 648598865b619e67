"""`tuneyard keys`: API keys, managed in the database directly, as a server admin does.

There is no keys API on purpose: whoever can run this against the data folder (or the shared
database) already owns the service. Keys are made in the organization of the admin key in
DATA_DIR/admin.key, or of --api-key when one is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from tuneyard.cli.common import emit_json, options, stdout, table, usage_error, when
from tuneyard.settings import Settings

if TYPE_CHECKING:
    from tuneyard.store.engine import Database

# The store is imported inside the commands: only `keys` needs it, so other commands start faster.

app = typer.Typer(help="API keys (on the database directly; needs the data folder or TUNEYARD_DATABASE_URL).",
                  no_args_is_help=True)


@dataclass(frozen=True)
class KeyStore:
    db: Database
    org_id: str


@contextmanager
def _open(ctx: typer.Context) -> Iterator[KeyStore]:
    from tuneyard.services.admin import ensure_admin_key
    from tuneyard.store import tenancy
    from tuneyard.store.engine import Database, make_engine
    from tuneyard.store.migrate import migrate

    opts = options(ctx)
    settings = Settings.from_env().with_overrides(data_dir=opts.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(make_engine(settings))
    try:
        migrate(db.engine)
        key = opts.api_key or ensure_admin_key(db, settings).read_text(encoding="utf-8").strip()
        principal = tenancy.authenticate(db, key)
        if principal is None:
            usage_error("the API key is unknown or revoked in this database")
        yield KeyStore(db, principal.org_id)
    finally:
        db.dispose()


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A label for who or what uses the key.")],
    admin: Annotated[bool, typer.Option("--admin", help="An admin key of the organization.")] = False,
) -> None:
    """Make a key and print it once: it is never shown again."""
    from tuneyard.store import tenancy

    with _open(ctx) as keys:
        row, plaintext = tenancy.create_api_key(keys.db, keys.org_id, name, is_admin=admin)
    if options(ctx).json:
        emit_json({"id": row.id, "name": row.name, "prefix": row.prefix, "is_admin": row.is_admin,
                   "key": plaintext})
        return
    stdout.print(f"created {row.id} ({row.name}), prefix {row.prefix}", markup=False)
    stdout.print(plaintext, markup=False, soft_wrap=True)
    stdout.print("store it now: it is not shown again", style="dim")


@app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """The organization's keys (prefixes only; revoked ones too)."""
    from tuneyard.store import tenancy

    with _open(ctx) as keys:
        rows = tenancy.list_api_keys(keys.db, keys.org_id)
    if options(ctx).json:
        emit_json([{"id": r.id, "name": r.name, "prefix": r.prefix, "is_admin": r.is_admin,
                    "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows])
        return
    table(["ID", "NAME", "PREFIX", "ADMIN", "CREATED", "REVOKED"],
          [(r.id, r.name, r.prefix + "…", r.is_admin, when(r.created_at.isoformat()),
            when(r.revoked_at.isoformat()) if r.revoked_at else None) for r in rows])


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")]) -> None:
    """Revoke a key: it stops authenticating at once."""
    from tuneyard.store import tenancy

    with _open(ctx) as keys:
        tenancy.revoke_api_key(keys.db, keys.org_id, key_id)
    if options(ctx).json:
        emit_json({"id": key_id, "revoked": True})
        return
    stdout.print(f"revoked {key_id}", markup=False)
