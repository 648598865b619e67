"""`tuneyard keys`: API keys, managed in the database directly, as the server's operator does.

Whoever can run this against the data folder (or the shared database) already owns the service, so
no key is needed; an organization's admin keys can do the same over the API (/v1/keys). The
organization is --org (an id or a name), else that of --api-key, else that of DATA_DIR/admin.key;
`keys` never makes one (`tuneyard orgs create` does).
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


def checked_name(name: str) -> None:
    """The API's rule for a name (no control characters, not blank, bounded), for what the CLI stores."""
    from tuneyard.spec.text import text_problem

    problem = text_problem(name)
    if problem:
        usage_error(f"the name {name!r} {problem}")


Org = Annotated[str | None, typer.Option(
    "--org", help="The organization, by id or name (default: that of --api-key or DATA_DIR/admin.key).")]


@contextmanager
def open_database(ctx: typer.Context) -> Iterator[tuple[Database, Settings]]:
    """The database the data folder or TUNEYARD_DATABASE_URL names, migrated; disposed after."""
    from tuneyard.store.engine import Database, make_engine
    from tuneyard.store.migrate import migrate

    settings = Settings.from_env().with_overrides(data_dir=options(ctx).data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(make_engine(settings))
    try:
        migrate(db.engine)
        yield db, settings
    finally:
        db.dispose()


@contextmanager
def _open(ctx: typer.Context, org: str | None) -> Iterator[KeyStore]:
    from tuneyard.services.admin import NoOrganization, org_for_keys

    with open_database(ctx) as (db, settings):
        try:
            org_id = org_for_keys(db, settings, org, options(ctx).api_key)
        except NoOrganization as exc:
            usage_error(exc.message)
        yield KeyStore(db, org_id)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A label for who or what uses the key.")],
    org: Org = None,
    admin: Annotated[bool, typer.Option(
        "--admin", help="An admin key: manages keys and registers base models. Default: a member key (jobs, data).")
    ] = False,
) -> None:
    """Make a key and print it once: it is never shown again."""
    from tuneyard.store import tenancy

    checked_name(name)
    with _open(ctx, org) as keys:
        row, plaintext = tenancy.create_api_key(keys.db, keys.org_id, name, is_admin=admin)
    if options(ctx).json:
        emit_json({"id": row.id, "org_id": row.org_id, "name": row.name, "prefix": row.prefix,
                   "is_admin": row.is_admin, "key": plaintext})
        return
    role = "admin" if row.is_admin else "member"
    stdout.print(f"created {role} key {row.id} ({row.name}) in {row.org_id}, prefix {row.prefix}", markup=False)
    stdout.print(plaintext, markup=False, soft_wrap=True)
    stdout.print("store it now: it is not shown again", style="dim")


@app.command("list")
def list_keys(ctx: typer.Context, org: Org = None) -> None:
    """The organization's keys (prefixes only; revoked ones too)."""
    from tuneyard.store import tenancy

    with _open(ctx, org) as keys:
        rows = tenancy.list_api_keys(keys.db, keys.org_id)
    if options(ctx).json:
        emit_json([{"id": r.id, "name": r.name, "prefix": r.prefix, "is_admin": r.is_admin,
                    "created_at": r.created_at, "revoked_at": r.revoked_at} for r in rows])
        return
    table(["ID", "NAME", "PREFIX", "ADMIN", "CREATED", "REVOKED"],
          [(r.id, r.name, r.prefix + "…", r.is_admin, when(r.created_at.isoformat()),
            when(r.revoked_at.isoformat()) if r.revoked_at else None) for r in rows])


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
           org: Org = None) -> None:
    """Revoke a key: it stops authenticating at once."""
    from tuneyard.store import tenancy

    with _open(ctx, org) as keys:
        tenancy.revoke_api_key(keys.db, keys.org_id, key_id)
    if options(ctx).json:
        emit_json({"id": key_id, "revoked": True})
        return
    stdout.print(f"revoked {key_id}", markup=False)
