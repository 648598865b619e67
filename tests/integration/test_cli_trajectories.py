"""`tuneyard trajectories list|show|import|build` against a live server, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from typer.testing import CliRunner, Result

from tests.support import api
from tests.support.api import Tenant, live_server
from tuneyard.cli.main import app as cli

app, tenant, api_settings = api.app, api.tenant, api.api_settings


def run(base_url: str, tenant: Tenant, tmp_path: Path, *args: str) -> Result:
    env = {"TUNEYARD_URL": base_url, "TUNEYARD_API_KEY": tenant.key}
    return CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "cli"), *args], env=env)


def chat(question: str, answer: str, **extra: Any) -> str:
    return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                       **extra})


def test_import_list_show_and_build(app: FastAPI, tenant: Tenant, tmp_path: Path) -> None:
    logs = tmp_path / "chats.jsonl"
    logs.write_text("\n".join([chat("What is 1 plus 1?", "2.", id="one", task="math"),
                               chat("What is 2 plus 2?", "4.", id="two", task="math"),
                               chat("Hello?", "Hi.", id="three")]) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(chat("fine", "ok") + "\n{oops\n" + json.dumps({"messages": []}) + "\n")
    with live_server(app) as base_url:
        imported = run(base_url, tenant, tmp_path, "trajectories", "import", str(logs), "--source", "support-bot")
        assert imported.exit_code == 0 and "imported 3 trajectories" in imported.stdout, imported.output
        refused = run(base_url, tenant, tmp_path, "trajectories", "import", str(bad))
        assert refused.exit_code == 1 and "lines.2" in refused.stderr and "lines.3" in refused.stderr
        listed = run(base_url, tenant, tmp_path, "--json", "trajectories", "list", "--task", "math")
        assert listed.exit_code == 0 and [t["id"] for t in json.loads(listed.stdout)["trajectories"]] == ["two", "one"]
        shown = run(base_url, tenant, tmp_path, "trajectories", "show", "one")
        assert shown.exit_code == 0 and "user: What is 1 plus 1?" in shown.stdout and "assistant: 2." in shown.stdout
        counted = run(base_url, tenant, tmp_path, "trajectories", "build", "--task", "math", "--dry-run")
        assert counted.exit_code == 0 and "2 trajectories, 2 examples" in counted.stdout, counted.output
        built = run(base_url, tenant, tmp_path, "--json", "trajectories", "build", "--task", "math", "--name", "math")
        assert built.exit_code == 0, built.output
        assert json.loads(built.stdout)["trajectoryIds"] == ["one", "two"]
        total = json.loads(run(base_url, tenant, tmp_path, "--json", "trajectories", "list").stdout)["total"]
        assert total == 3  # the refused file stored nothing
