"""The console in Chromium under its Content-Security-Policy: every page works with no violation in
the browser's console, an injected inline script is refused, and no page shows the server's paths."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.e2e.console_browser import browser_context, needs_browser, sign_in
from tests.support.runs import REPO
from tests.support.service import Service
from tuneyard.client import find_api_key

if TYPE_CHECKING:  # the tests skip, rather than fail to import, where playwright is missing
    from playwright.sync_api import ConsoleMessage, Page

pytestmark = [needs_browser, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

EXAMPLES = REPO / "examples" / "tiny-chat.jsonl"


def test_every_page_works_under_the_policy_and_shows_no_server_path(service: Service, tmp_path: Path) -> None:
    service.start_serve(workers=0)  # the job stays queued: pages, not training, are under test
    client = service.client()
    upload = client.upload_file(EXAMPLES)
    dataset = client.wait_dataset(client.create_dataset("csp-chats", [upload["id"]])["id"])
    job = client.create_job({"base_model": "tiny-llama", "datasets": [{"id": dataset["id"]}],
                             "hyperparams": {"max_steps": 2}})
    messages: list[str] = []
    with browser_context(tmp_path / "profile") as context:
        page = context.new_page()
        page.on("console", lambda m: messages.append(_said(m)))
        page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
        sign_in(page, service.url, find_api_key(service.data_dir))  # the sign-in form's POST is allowed
        pages = ["/jobs", "/jobs/new", f"/jobs/{job['id']}", "/datasets", f"/datasets/{dataset['id']}", "/models"]
        for path in pages:
            response = page.goto(f"{service.url}{path}")
            assert response is not None and response.status == 200, path
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["x-content-type-options"] == "nosniff"
            page.wait_for_timeout(300)  # the page's scripts start (live pages never go network-idle)
            assert str(service.data_dir) not in page.content(), path
        # The scripts ran: the job page follows the job live and drew its chart with the vendored uPlot.
        page.goto(f"{service.url}/jobs/{job['id']}")
        page.wait_for_selector('#status[data-status="queued"]')
        page.wait_for_selector(".uplot")
        assert f"tiny-chat.jsonl ({upload['id']})" in (page.locator("pre.log:not(#log)").text_content() or "")
        assert not [m for m in messages if _violation(m)], messages

        _an_injected_inline_script_is_refused(page, messages)


def _an_injected_inline_script_is_refused(page: Page, messages: list[str]) -> None:
    page.evaluate("""() => { const s = document.createElement("script");
                             s.textContent = "window.injected = true;";
                             document.body.append(s); }""")
    page.wait_for_timeout(200)
    assert page.evaluate("window.injected === undefined")
    assert [m for m in messages if _violation(m)], "the refusal is reported in the console"


def _said(message: ConsoleMessage) -> str:
    return f"{message.type}: {message.text}"


def _violation(message: str) -> bool:
    return "Content Security Policy" in message or "Refused to" in message
