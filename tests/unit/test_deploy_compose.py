"""deploy/compose.yaml, the one docs/deploy.md describes, parses and holds the services and settings
the guide names. docker is not run here (CI has none): this checks the file, not the containers."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_compose_file_parses_with_the_services_the_guide_describes() -> None:
    compose = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"postgres", "api", "worker"}
    guide = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert all(f"`{name}`" in guide for name in services) and "deploy/compose.yaml" in guide

    # The API serves without embedded workers; the workers train; both on the one database and data folder.
    assert services["api"]["command"][:1] == ["serve"] and "--api-processes" in services["api"]["command"]
    assert services["worker"]["command"][:1] == ["worker"]
    for name in ("api", "worker"):
        env = services[name]["environment"]
        assert env["TUNEYARD_DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:5432/" in env[
            "TUNEYARD_DATABASE_URL"]
        assert env["TUNEYARD_DATA_DIR"] == "/data" and "data:/data" in services[name]["volumes"]
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (REPO / "deploy" / "Dockerfile").exists()
