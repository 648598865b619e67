"""`tuneyard orgs` and `tuneyard keys` on the database directly, and the one organization `serve` makes.

Each test runs the real commands in-process (typer's runner) against its own SQLite file or
PostgreSQL schema; no server is needed, as an operator needs none.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from tuneyard.cli.main import app
from tuneyard.services.admin import ADMIN_KEY_FILE, ensure_admin_key
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database


def run(database_url: str, data_dir: Path, *args: str) -> Result:
    env = {"TUNEYARD_DATABASE_URL": database_url, "TUNEYARD_API_KEY": None, "TUNEYARD_URL": None}
    return CliRunner().invoke(app, ["--data-dir", str(data_dir), *args], env=env)


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def test_keys_on_a_database_without_the_organization_refuse_and_mint_nothing(
    database_url: str, tmp_path: Path, db: Database
) -> None:
    empty = tmp_path / "empty"
    for args in (["keys", "create", "bob"], ["keys", "list"], ["keys", "create", "bob", "--admin"]):
        result = run(database_url, empty, *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert "no organization given" in result.stderr and "--org" in result.stderr
        assert "Traceback" not in result.stderr
    missing = run(database_url, empty, "keys", "create", "bob", "--org", "acme")
    assert missing.exit_code == 1 and "organization acme not found" in missing.stderr
    assert tenancy.list_orgs(db) == []
    assert not (empty / ADMIN_KEY_FILE).exists()


def test_orgs_create_and_list_then_keys_in_them(database_url: str, tmp_path: Path, db: Database) -> None:
    acme = ok_json(run(database_url, tmp_path, "--json", "orgs", "create", "acme"))
    assert acme["id"].startswith("org_") and acme["name"] == "acme"
    again = run(database_url, tmp_path, "orgs", "create", "acme")
    assert again.exit_code == 1 and "already exists" in again.stderr
    globex = ok_json(run(database_url, tmp_path, "--json", "orgs", "create", "globex"))
    for bad in ("", " ", "a\x1b[2Jb"):
        refused = run(database_url, tmp_path, "orgs", "create", bad)
        assert refused.exit_code == 2 and ("control characters" in refused.stderr or "blank" in refused.stderr)
        assert run(database_url, tmp_path, "keys", "create", bad, "--org", "acme").exit_code == 2

    admin = ok_json(run(database_url, tmp_path, "--json", "keys", "create", "ops", "--org", "acme", "--admin"))
    member = ok_json(run(database_url, tmp_path, "--json", "keys", "create", "bob", "--org", globex["id"]))
    assert (admin["org_id"], admin["is_admin"]) == (acme["id"], True)
    assert (member["org_id"], member["is_admin"]) == (globex["id"], False)
    assert tenancy.authenticate(db, admin["key"]) == tenancy.Principal(acme["id"], admin["id"], True)
    assert tenancy.authenticate(db, member["key"]) == tenancy.Principal(globex["id"], member["id"], False)

    listed = ok_json(run(database_url, tmp_path, "--json", "orgs", "list"))
    assert [(o["name"], o["active_keys"], o["admin_keys"]) for o in listed] == [("acme", 1, 1), ("globex", 1, 0)]
    text = run(database_url, tmp_path, "orgs", "list")
    assert text.exit_code == 0 and acme["id"] in text.stdout and "globex" in text.stdout

    keys = ok_json(run(database_url, tmp_path, "--json", "keys", "list", "--org", "acme"))
    assert [k["id"] for k in keys] == [admin["id"]]
    # A key of another organization is not found from this one, and stays live.
    foreign = run(database_url, tmp_path, "keys", "revoke", member["id"], "--org", "acme")
    assert foreign.exit_code == 1 and "not found" in foreign.stderr
    assert run(database_url, tmp_path, "keys", "revoke", member["id"], "--org", "globex").exit_code == 0
    assert tenancy.authenticate(db, member["key"]) is None


def test_keys_default_to_the_organization_of_the_given_key(database_url: str, tmp_path: Path, db: Database) -> None:
    org = tenancy.create_org(db, "acme")
    _row, key = tenancy.create_api_key(db, org.id, "ops", is_admin=True)
    made = ok_json(run(database_url, tmp_path, "--api-key", key, "--json", "keys", "create", "bob"))
    assert made["org_id"] == org.id and made["is_admin"] is False
    unknown = run(database_url, tmp_path, "--api-key", "ty_nope", "keys", "list")
    assert unknown.exit_code == 2 and "unknown or revoked" in unknown.stderr
    assert [o.id for o in tenancy.list_orgs(db)] == [org.id]


def test_serve_makes_the_first_organization_only(database_url: str, tmp_path: Path, db: Database) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=database_url)
    path = ensure_admin_key(db, settings)
    assert path == settings.data_dir / ADMIN_KEY_FILE and stat.S_IMODE(path.stat().st_mode) == 0o600
    principal = tenancy.authenticate(db, path.read_text().strip())
    assert principal is not None and principal.is_admin
    assert ensure_admin_key(db, settings) == path  # a live key in the file: nothing new
    # The laptop flow: `keys` without --org works in the organization serve made.
    made = ok_json(run(database_url, settings.data_dir, "--json", "keys", "create", "bob"))
    assert made["org_id"] == principal.org_id

    path.unlink()  # a database with organizations: serve makes no other one, and writes no key
    assert ensure_admin_key(db, settings) is None and not path.exists()
    elsewhere = Settings(data_dir=tmp_path / "elsewhere", database_url=database_url)
    assert ensure_admin_key(db, elsewhere) is None
    assert [o.id for o in tenancy.list_orgs(db)] == [principal.org_id]
