"""`tuneyard orgs`: organizations, made and listed in the database directly, by the server's operator.

Organizations are above any one organization's keys, so there is no API for them: whoever runs this
against the data folder (or TUNEYARD_DATABASE_URL) owns the service. A new organization has no key;
give it its first with `tuneyard keys create NAME --org ORG --admin`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tuneyard.cli.common import emit_json, options, stdout, table, when
from tuneyard.cli.keys import checked_name, open_database

app = typer.Typer(help="Organizations (on the database directly; needs the data folder or TUNEYARD_DATABASE_URL).",
                  no_args_is_help=True)


@app.command("create")
def create(ctx: typer.Context,
           name: Annotated[str, typer.Argument(help="The organization's name, unique among organizations.")]) -> None:
    """Make an organization (with no key yet: `tuneyard keys create NAME --org ORG --admin`)."""
    from tuneyard.store import tenancy

    checked_name(name)
    with open_database(ctx) as (db, _settings):
        org = tenancy.create_org(db, name, unique_name=True)
    if options(ctx).json:
        emit_json({"id": org.id, "name": org.name, "created_at": org.created_at})
        return
    stdout.print(f"created {org.id} ({org.name})", markup=False)
    stdout.print(f"give it an admin key: tuneyard keys create NAME --org {org.id} --admin", markup=False,
                 style="dim")


@app.command("list")
def list_orgs(ctx: typer.Context) -> None:
    """Every organization, oldest first, with its live keys (and how many of them are admin keys)."""
    from tuneyard.store import tenancy

    with open_database(ctx) as (db, _settings):
        rows = tenancy.list_orgs(db)
    if options(ctx).json:
        emit_json([{"id": r.id, "name": r.name, "created_at": r.created_at, "active_keys": r.active_keys,
                    "admin_keys": r.admin_keys} for r in rows])
        return
    table(["ID", "NAME", "KEYS", "ADMIN KEYS", "CREATED"],
          [(r.id, r.name, r.active_keys, r.admin_keys, when(r.created_at.isoformat())) for r in rows])
