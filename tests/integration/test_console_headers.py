"""The console's pages and assets carry its security headers, and its templates hold no inline code
that the Content-Security-Policy would block (scripts and styles come from /static only)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.support import api
from tests.support.api import Tenant, finished_job
from tuneyard.console.views import HERE, SECURITY_HEADERS, STATIC_DIR

app, client, tenant, api_settings = api.app, api.client, api.tenant, api.api_settings

INLINE = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)


def assert_secured(response, what: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (what, name, response.headers.get(name))


def test_the_policy_allows_only_the_consoles_own_files() -> None:
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
        assert directive in policy


def test_templates_have_no_inline_scripts_styles_or_handlers() -> None:
    for template in sorted((HERE / "templates").glob("*.html")):
        found = INLINE.findall(template.read_text())
        assert not found, f"{template.name}: move {found} into a file under static/"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # pages, not SQL, are under test
def test_every_page_and_asset_carries_the_headers(client: TestClient, db, api_settings, tenant: Tenant) -> None:
    assert_secured(client.get("/sign-in"), "/sign-in")
    refused = client.post("/sign-in", data={"api_key": "ty_nope"}, headers={"Origin": "http://testserver"})
    assert refused.status_code == 401
    assert_secured(refused, "refused sign-in")
    for asset in sorted(p for p in STATIC_DIR.rglob("*") if p.is_file()):
        response = client.get(f"/static/{asset.relative_to(STATIC_DIR).as_posix()}")
        assert response.status_code == 200
        assert_secured(response, asset.name)
    objects = finished_job(client, db, api_settings, tenant)
    signed_in = client.post("/sign-in", data={"api_key": tenant.key, "next": "/jobs"},
                            headers={"Origin": "http://testserver"})
    assert signed_in.status_code == 200, signed_in.text  # followed the redirect to /jobs
    pages = ["/jobs", "/jobs/new", f"/jobs/{objects['job_id']}", "/datasets", f"/datasets/{objects['dataset_id']}",
             "/models", "/jobs/job_000000000000000000000000"]
    for path in pages:
        response = client.get(path)
        assert response.status_code in (200, 404) and response.headers["content-type"].startswith("text/html")
        assert_secured(response, path)
